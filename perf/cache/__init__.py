"""The tagged cache: django-redis extended with tags, its metrics, the cache page, warmcache.

Modules: `base` (tag names, single-flight get_or_set), `redis` (the backend), `client`
(tags mixed into whatever django-redis client is configured), `scripts` (Lua),
`breaker` (failure handling), `metrics` (shared counters), `tags` (invalidation after
commit), then `selectors`, `services`, `views`, `urls`, `forms` for the page. The
`{% tagged_cache %}` tag lives in perf/templatetags (where Django finds tag libraries),
`warmcache` in perf/management/commands.
"""

from __future__ import annotations

from perf.cache.base import normalize_tags
from perf.cache.redis import RedisTaggedCache, TaggedValueError
from perf.cache.tags import invalidate_on_commit, tagged_cache

__all__ = ["RedisTaggedCache", "TaggedValueError", "invalidate_on_commit", "normalize_tags", "tagged_cache"]
