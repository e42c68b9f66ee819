"""The batch runner: one action over many servers on many engines, one result each.

Engine calls run in per-host thread pools under one overall bound; the threads touch
no database. Results come back to the calling thread as they finish (`on_item`), where
the caller records them: a request writes them all at the end, a queue job writes each
one as it lands so that a retried job resumes after the last recorded item.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import docker
from django.db.models import QuerySet
from django.utils import timezone

from containers.actions import ACTIONS, DESIRED, Observed, Refused, Target
from containers.engine import client_for, describe_engine_error, fan_out, is_unreachable, ping_host
from containers.models import BatchJob, DockerHost, Outcome, VpnServer


@dataclass(frozen=True)
class ItemResult:
    """What happened to one server in a batch."""

    server_id: int
    server_name: str
    host_name: str
    outcome: str
    message: str = ""
    stats: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != Outcome.FAILED


@dataclass
class BatchOutcome:
    """The results of one batch, or the queued job that will produce them."""

    action: str
    results: list[ItemResult] = field(default_factory=list)
    job: BatchJob | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def done(self) -> int:
        return self.count(Outcome.DONE)

    @property
    def unchanged(self) -> int:
        return self.count(Outcome.UNCHANGED)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    def summary(self) -> str:
        if self.job is not None:
            return f"{self.action}: {self.job.total} servers, running in the background"
        return f"{self.action}: {self.done} done, {self.unchanged} unchanged, {self.failed} failed"


@dataclass
class Item:
    result: ItemResult
    obs: Observed
    # Not run: the caller asked to stop before its turn (a queue worker shutting down).
    skipped: bool = False


Work = Callable[[docker.APIClient, Target, Observed], tuple[str, str, dict[str, Any] | None]]
OnItem = Callable[[Target, Item], None]


def targets_of(servers: Iterable[VpnServer] | QuerySet[VpnServer]) -> list[Target]:
    if isinstance(servers, QuerySet):
        servers = servers.select_related("host")
    return [Target(server=s, host=s.host) for s in servers]


def _ping_hosts(hosts: list[DockerHost]) -> dict[int, str]:
    """Ping every host at once; the error message of each one that does not answer."""
    return {host.pk: answer.error for host, answer in fan_out(hosts, ping_host).items() if not answer.ok}


def run(
    targets: list[Target],
    work: Work,
    *,
    per_host_limit: Callable[[DockerHost], int],
    on_item: OnItem | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[tuple[Target, Item]], dict[int, str]]:
    """Run `work` for every target in per-host pools under one overall bound.

    Returns every (target, item) in the order given, and the hosts found down. Once
    `should_stop()` is true, items not yet started come back `skipped` (those running
    finish and are reported as usual).
    """
    from django.conf import settings

    hosts = {t.host.pk: t.host for t in targets}
    disabled = {pk for pk, host in hosts.items() if not host.enabled}
    down = _ping_hosts([host for pk, host in hosts.items() if pk not in disabled])
    overall = threading.BoundedSemaphore(settings.DOCKER_MAX_CONCURRENT)
    lock = threading.Lock()

    def one(target: Target) -> Item:
        host = target.host
        obs = Observed()

        def failed(message: str) -> Item:
            return Item(ItemResult(target.server.pk, target.server.name, host.name, Outcome.FAILED, message), obs)

        if should_stop is not None and should_stop():
            return Item(ItemResult(target.server.pk, target.server.name, host.name, "skipped"), obs, skipped=True)
        if host.pk in disabled:
            return failed(f"host {host.name} is disabled")
        with lock:
            host_error = down.get(host.pk)
        if host_error:
            return failed(f"host {host.name}: {host_error}")
        with overall:
            try:
                outcome, message, sample = work(client_for(host), target, obs)
            except Refused as exc:
                return failed(str(exc))
            except Exception as exc:  # each item's failure is its own result, never the batch's
                if is_unreachable(exc):
                    with lock:
                        down.setdefault(host.pk, describe_engine_error(exc))
                return failed(describe_engine_error(exc))
        return Item(ItemResult(target.server.pk, target.server.name, host.name, outcome, message, sample), obs)

    by_host: dict[int, list[Target]] = defaultdict(list)
    for target in targets:
        by_host[target.host.pk].append(target)
    pools = {
        pk: ThreadPoolExecutor(
            max_workers=max(1, min(per_host_limit(hosts[pk]), len(items))), thread_name_prefix=f"engine-{pk}"
        )
        for pk, items in by_host.items()
    }
    futures: dict[Future[Item], Target] = {}
    finished: list[tuple[Target, Item]] = []
    try:
        for pk, items in by_host.items():
            for target in items:
                futures[pools[pk].submit(one, target)] = target
        for future in as_completed(futures):
            item = future.result()
            finished.append((futures[future], item))
            if on_item is not None:
                on_item(futures[future], item)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
    order = {id(t): i for i, t in enumerate(targets)}
    finished.sort(key=lambda pair: order[id(pair[0])])
    return finished, down


def action_work(action: str) -> Work:
    do = ACTIONS[action]

    def work(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str, None]:
        outcome, message = do(api, target, obs)
        return outcome, message, None

    return work


# --- recording what happened ---------------------------------------------------------------


def server_updates(action: str, item: Item) -> dict[str, Any]:
    updates: dict[str, Any] = {"last_error": "" if item.result.ok else item.result.message[:255]}
    if item.obs.state is not None:
        updates.update(observed_state=item.obs.state, observed_at=timezone.now())
    if item.obs.container_id is not None:
        updates["container_id"] = item.obs.container_id
    if action in DESIRED:
        updates["desired_state"] = DESIRED[action]
    return updates


def write_server(action: str, target: Target, item: Item) -> None:
    VpnServer.objects.filter(pk=target.server.pk).update(**server_updates(action, item))


def record_hosts(hosts: Iterable[DockerHost], down: dict[int, str]) -> None:
    """Keep each host's reachability as this batch found it (only rows that changed)."""
    now = timezone.now()
    for host in hosts:
        reachable = host.pk not in down
        if host.enabled and (host.reachable != reachable or host.last_error != down.get(host.pk, "")):
            host.reachable, host.last_error, host.last_checked_at = reachable, down.get(host.pk, "")[:255], now
            DockerHost.objects.filter(pk=host.pk).update(
                reachable=reachable, last_error=host.last_error, last_checked_at=now
            )
