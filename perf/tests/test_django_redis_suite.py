"""django-redis 7.0.0's own test suite against RedisTaggedCache, beside the stock backend.

The suite's `tests/` come from the PyPI sdist (fetched once with pip into
var/django-redis-suite/). Each settings variant runs in its own process (Django reads
settings once per process, so one process would run every variant with the first one's
settings), once with the stock `django_redis.cache.RedisCache` and once with
`perf.cache.RedisTaggedCache` as BACKEND, everything else as the suite wrote it. Each
backend gets a private redis-server on a free 127.0.0.1 port: the suite FLUSHes the
databases it uses, which must not touch the shared Redis other test runs use.

The tagged backend must give exactly the stock result, test by test, in the same run (a
test whose outcomes differ is run once more, alone, for both, before they are compared).
Not run, for either backend: the Sentinel variants (they need Redis Sentinel) and the
unix-socket variant (a server at a fixed socket path).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from conftest import REPO

VERSION = "7.0.0"
CACHE_DIR = REPO / "var" / "django-redis-suite"
VARIANTS = (
    "sqlite",
    "sqlite_gzip",
    "sqlite_herd",
    "sqlite_json",
    "sqlite_lz4",
    "sqlite_msgpack",
    "sqlite_sharding",
    "sqlite_zlib",
    "sqlite_zstd",
)
BACKENDS = {"stock": "django_redis.cache.RedisCache", "tagged": "perf.cache.RedisTaggedCache"}
# Fewer results than this in a variant means the suite did not really run (an import
# error, a missing plugin): two identical failures must not pass as "the same result".
MIN_RESULTS = 150
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet"]
REDIS_ARGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
# The suite's own options (coverage, xdist) are left out; the project's pytest settings
# and plugins (pytest-django) must not apply to it either.
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:django", "-c", os.devnull]
PYTEST += ["-o", "pythonpath=tests", "-o", "addopts=", "-q"]


def _sdist() -> Path:
    """The suite's sdist, downloaded once by pip (`pip download`, no build)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    archive = CACHE_DIR / f"django_redis-{VERSION}.tar.gz"
    if not archive.exists():
        result = subprocess.run(
            [*PIP_DOWNLOAD, "-d", str(CACHE_DIR), f"django-redis=={VERSION}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0 or not archive.exists():
            pytest.fail(f"could not fetch the django-redis {VERSION} sdist with pip:\n{result.stderr[-2000:]}")
    return archive


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), *REDIS_ARGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                server.terminate()
                raise RuntimeError(f"redis-server on port {port} did not start") from None
            time.sleep(0.05)
    probe.close()
    return server


def _prepare(archive: Path, target: Path, backend: str, port: int) -> Path:
    """The suite's tests/ under `target`, its settings pointed at `backend` and `port`, its
    variant list cut to the one named by SUITE_VARIANT."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"django_redis-{VERSION}/tests/")]
        tar.extractall(target, members=members, filter="data")
    tests = target / f"django_redis-{VERSION}" / "tests"
    for settings_file in (tests / "settings").glob("*.py"):
        text = settings_file.read_text()
        text = text.replace('"django_redis.cache.RedisCache"', f'"{backend}"')
        text = text.replace("127.0.0.1:6379", f"127.0.0.1:{port}")
        settings_file.write_text(text)
    conftest = tests / "conftest.py"
    one_variant = 'settings = [__import__("os").environ["SUITE_VARIANT"]]'
    text, count = re.subn(r"settings = \[.*?\]", one_variant, conftest.read_text(), flags=re.S)
    assert count == 1, "the suite's conftest no longer lists its variants the way this harness expects"
    conftest.write_text(text)
    return tests.parent


def _run_variant(root: Path, variant: str, report: Path, tests: Iterable[str] = ("tests",)) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(SUITE_VARIANT=variant, PYTHONPATH=str(REPO))
    report.unlink(missing_ok=True)
    subprocess.run(
        [*PYTEST, "--rootdir", str(root), f"--junitxml={report}", *tests],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
    )
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own report
            outcome = "passed"
            for child in case:
                if child.tag in {"failure", "error", "skipped"}:
                    outcome = child.tag
            outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], dict[str, str]]]:
    archive = _sdist()
    servers = []
    roots = {}
    try:
        for name, backend in BACKENDS.items():
            port = _free_port()
            servers.append(_start_redis(port))
            roots[name] = _prepare(archive, tmp_path_factory.mktemp(f"suite-{name}"), backend, port)
        jobs = [(name, variant) for variant in VARIANTS for name in BACKENDS]
        # Mostly waiting (the suite sleeps through its timeout tests): all at once.
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {
                job: pool.submit(_run_variant, roots[job[0]], job[1], roots[job[0]] / f"{job[1]}.xml") for job in jobs
            }
            results = {job: future.result() for job, future in futures.items()}
        for variant in VARIANTS:
            _rerun_differences(roots, variant, results)
        _write_summary(results)
        yield results
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)


def _differences(results: dict[tuple[str, str], dict[str, str]], variant: str) -> dict[str, tuple[str, str]]:
    stock, tagged = results["stock", variant], results["tagged", variant]
    return {
        test: (stock.get(test, "absent"), tagged.get(test, "absent"))
        for test in sorted(set(stock) | set(tagged))
        if stock.get(test) != tagged.get(test)
    }


def _node_id(root: Path, test: str) -> str:
    """`tests.test_x.TestY::test_z[v]` (JUnit's classname::name) as a pytest node id."""
    classname, name = test.split("::", 1)
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        if (root / Path(*parts[:cut])).with_suffix(".py").exists():
            return "::".join([str(Path(*parts[:cut]).with_suffix(".py")), *parts[cut:], name])
    return test


def _rerun_differences(roots: dict[str, Path], variant: str, results: dict[tuple[str, str], dict[str, str]]) -> None:
    """Run the tests whose outcomes differ once more, alone, for both backends.

    Twenty processes at once on two cores make the suite's own timing tests wobble now
    and then; a difference that is the backend's shows again, one that was the load does
    not.
    """
    differing = _differences(results, variant)
    if not differing:
        return
    for name, root in roots.items():
        again = _run_variant(root, variant, root / f"{variant}-again.xml", [_node_id(root, t) for t in differing])
        results[name, variant].update(again)


def _write_summary(results: dict[tuple[str, str], dict[str, str]]) -> None:
    lines = [f"django-redis {VERSION} suite, stock vs tagged backend, same run"]
    for name in BACKENDS:
        total: Counter[str] = Counter()
        for variant in VARIANTS:
            total.update(results[name, variant].values())
        lines.append(f"{name}: " + ", ".join(f"{total[k]} {k}" for k in ("passed", "failure", "error", "skipped")))
    for variant in VARIANTS:
        counts = {name: Counter(results[name, variant].values()) for name in BACKENDS}
        lines.append(
            f"  {variant}: "
            + "; ".join(f"{name} {c['passed']} passed {c['failure'] + c['error']} failed" for name, c in counts.items())
        )
    (CACHE_DIR / "last-run.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_tagged_backend_gives_the_stock_result_in_django_redis_suite(
    suite_results: dict[tuple[str, str], dict[str, str]], variant: str
) -> None:
    stock = suite_results["stock", variant]
    assert len(stock) >= MIN_RESULTS, f"the stock run of {variant} reported only {len(stock)} results"
    differences = _differences(suite_results, variant)
    assert not differences, f"{variant}: (stock, tagged) differ for " + "; ".join(
        f"{test}: {pair}" for test, pair in differences.items()
    )
