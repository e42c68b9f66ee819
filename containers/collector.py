"""One stats pass: sample every running server, keep the samples and the panel in the cache.

Run by the periodic queue task (containers.tasks.collect_stats) in whichever worker
picks it up, so it keeps no state of its own: the engine's one-shot read leaves the
previous CPU reading empty, and CPU % comes from the previous pass's samples, which are
in the cache anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from containers.models import ObservedState, Outcome, VpnServer
from containers.stats import build_panel, read_samples, store_panel


@dataclass
class CollectPass:
    sampled: int = 0
    not_running: int = 0
    failed: int = 0


def sample_timeout() -> float:
    # Samples outlive a pass or two, then vanish: a collector that stopped shows as such.
    return max(settings.CONTAINERS_STATS_INTERVAL * 3, 15)


def collect_stats_once() -> CollectPass:
    from containers.services import servers_stats_batch

    servers = list(
        VpnServer.objects.filter(host__enabled=True, observed_state=ObservedState.RUNNING).select_related("host")
    )
    previous = read_samples(s.pk for s in servers)
    results = servers_stats_batch(servers=servers, one_shot=True, previous=previous, store=True)
    samples = {result.server_id: result.stats for result in results}
    store_panel(
        build_panel((s.pk, s.name, s.host_id, s.host.name, samples.get(s.pk)) for s in servers),
        timeout=sample_timeout(),
    )
    report = CollectPass()
    for result in results:
        if result.stats is not None:
            report.sampled += 1
        elif result.outcome == Outcome.UNCHANGED:
            report.not_running += 1
        else:
            report.failed += 1
    return report
