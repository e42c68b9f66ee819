"""Writes to the cache an operator asks for: invalidate a tag or a pattern, warm the hot reads.

Each leaves one audit entry. The cache itself is not transactional, so the cache work is
done first and the entry records what actually happened (how many keys, which warmers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from perf.cache.base import normalize_tags
from perf.cache.tags import tagged_cache
from vpnadmin.audit import audit_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class CacheActionError(Exception):
    """The cache cannot do what was asked (no tag support, Redis unreachable): a message for the user."""


@dataclass
class WarmReport:
    entries: int = 0
    warmed: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        text = (
            f"Warmed {self.entries} cache entr{'y' if self.entries == 1 else 'ies'} from {len(self.warmed)} warmer(s)"
        )
        if self.failed:
            text += "; failed: " + "; ".join(f"{path}: {reason}" for path, reason in self.failed)
        return text + "."


def cache_invalidate_tag(*, actor: User | None, tag: str) -> int:
    """Invalidate one tag: every value carrying it becomes a miss. Returns the tags invalidated (0 or 1)."""
    (tag,) = normalize_tags([tag])
    invalidated = int(tagged_cache().invalidate_tags([tag]))
    if not invalidated:
        raise CacheActionError("the cache did not answer; nothing was invalidated")
    with transaction.atomic():
        audit_record(actor=actor, action="cache_invalidate_tag", target="cache", count=1, detail={"tag": tag})
    return invalidated


def cache_count_pattern(*, pattern: str) -> int:
    """How many keys a pattern matches now (for the confirmation before deleting them)."""
    try:
        return int(tagged_cache().count_pattern(pattern))
    except (ValueError, CacheActionError):
        raise
    except Exception as error:  # Redis unreachable or hanging: say so instead of "0 keys"
        raise CacheActionError(f"the cache did not answer ({type(error).__name__}); nothing was deleted") from None


def cache_invalidate_pattern(*, actor: User | None, pattern: str) -> int:
    """Delete the keys matching a glob; returns how many were deleted."""
    deleted = int(tagged_cache().invalidate_pattern(pattern))
    with transaction.atomic():
        audit_record(
            actor=actor, action="cache_invalidate_pattern", target="cache", count=deleted, detail={"pattern": pattern}
        )
    return deleted


def _load_warmer(path: str) -> Callable[[Callable[[str], None]], int]:
    try:
        warmer = import_string(path)
    except ImportError as error:
        raise CacheActionError(f"cannot import {path} ({error})") from None
    if not callable(warmer):
        raise CacheActionError(f"{path} is not callable")
    return warmer


def cache_warm(*, actor: User | None, progress: Callable[[str], None] = lambda message: None) -> WarmReport:
    """Run every warmer in settings.CACHE_WARMERS; one failing warmer does not stop the others."""
    report = WarmReport()
    for path in settings.CACHE_WARMERS:
        progress(f"{path}: warming")
        try:
            count = int(_load_warmer(path)(progress))
        except CacheActionError as error:
            report.failed.append((path, str(error)))
            progress(f"{path}: skipped, {error}")
            continue
        except Exception as error:  # a warmer's own failure is reported, the rest still run
            reason = f"{type(error).__name__}: {error}"[:300]
            report.failed.append((path, reason))
            progress(f"{path}: failed, {reason}")
            continue
        report.warmed.append((path, count))
        report.entries += count
        progress(f"{path}: {count} entries")
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="cache_warm",
            target="cache",
            count=report.entries,
            detail={"warmed": dict(report.warmed), "failed": dict(report.failed)},
        )
    return report
