"""The stats collector: samples every running server in a thread pool, keeps the latest in the cache.

The engine answers a one-shot stats read at once but leaves the previous CPU reading
empty, so CPU % comes from this collector's own consecutive samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from containers.models import ObservedState, Outcome, VpnServer
from containers.services import servers_stats_batch, servers_sync
from containers.stats import build_panel, store_panel


@dataclass
class CollectPass:
    sampled: int = 0
    not_running: int = 0
    failed: int = 0
    synced: bool = False


class StatsCollector:
    def __init__(self, *, sync_every: int = 6) -> None:
        # Samples outlive a pass or two, then vanish: a stopped collector shows as such.
        self.sample_timeout = max(settings.CONTAINERS_STATS_INTERVAL * 3, 15)
        self.previous: dict[int, dict[str, Any]] = {}
        self.sync_every = max(sync_every, 1)
        self.passes = 0

    def collect_once(self) -> CollectPass:
        report = CollectPass()
        if self.passes % self.sync_every == 0:
            # What runs changes behind the app's back: reconcile now and then.
            servers_sync()
            report.synced = True
        self.passes += 1
        servers = VpnServer.objects.filter(host__enabled=True, observed_state=ObservedState.RUNNING).select_related(
            "host"
        )
        servers = list(servers)
        results = servers_stats_batch(servers=servers, one_shot=True, previous=self.previous, store=True)
        samples = {result.server_id: result.stats for result in results}
        store_panel(
            build_panel((s.pk, s.name, s.host_id, s.host.name, samples.get(s.pk)) for s in servers),
            timeout=self.sample_timeout,
        )
        fresh: dict[int, dict[str, Any]] = {}
        for result in results:
            if result.stats is not None:
                fresh[result.server_id] = result.stats
                report.sampled += 1
            elif result.outcome == Outcome.UNCHANGED:
                report.not_running += 1
            else:
                report.failed += 1
        self.previous = fresh
        return report
