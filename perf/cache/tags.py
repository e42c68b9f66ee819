"""Invalidation after commit: the one way services drop what their writes made stale."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from perf.cache.base import normalize_tags

if TYPE_CHECKING:
    from perf.cache.redis import RedisTaggedCache


def tagged_cache() -> RedisTaggedCache:
    """The default cache, which is always the tagged backend; a clear error if settings say otherwise."""
    from perf.cache.redis import RedisTaggedCache

    backend = caches["default"]
    if not isinstance(backend, RedisTaggedCache):
        raise ImproperlyConfigured(
            f"CACHES['default'] must use perf.cache.RedisTaggedCache, not {type(backend).__module__}."
            f"{type(backend).__name__}"
        )
    return backend


def invalidate_on_commit(tags: Iterable[str], *, using: str | None = None) -> None:
    """Drop every cached value carrying one of `tags` once the current transaction commits.

    After commit, not before: a reader between the write and the commit would otherwise
    cache the old rows again under the fresh stamp. Outside a transaction it runs now.
    """
    tag_list = normalize_tags(tags)
    if tag_list:
        transaction.on_commit(lambda: tagged_cache().invalidate_tags(tag_list), using=using)
