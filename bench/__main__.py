"""`python -m bench [SUITE ...]`: run benchmark suites, print and write their rows.

Each suite is a package `bench/<name>/` with `suite.py` defining `run() -> list[Row]`.
Suites run against their own PostgreSQL database (vpnadmin_bench) and Redis key prefix.
"""

from __future__ import annotations

import importlib
import os
import sys

from bench.harness import REPO, ensure_database, print_rows, write_rows

BENCH_DATABASE = "vpnadmin_bench"


def _prepare_environment() -> None:
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}")
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{BENCH_DATABASE}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ["CACHE_KEY_PREFIX"] = "vpnadmin-bench"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vpnadmin.settings")
    os.environ.setdefault("WHITENOISE_USE_FINDERS", "1")
    os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
    ensure_database(BENCH_DATABASE)


def available_suites() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "bench").glob("*/suite.py"))


def main(argv: list[str]) -> int:
    _prepare_environment()
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    suites = argv or available_suites()
    unknown = sorted(set(suites) - set(available_suites()))
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; available: {', '.join(available_suites())}", file=sys.stderr)
        return 2
    missed = 0
    for suite in suites:
        module = importlib.import_module(f"bench.{suite}.suite")
        rows = module.run()
        print_rows(suite, rows)
        path = write_rows(suite, rows)
        print(f"   -> {path.relative_to(REPO)}")
        missed += sum(not row.ok for row in rows)
    if missed:
        print(f"\n{missed} row(s) missed their target (reported, not a failure: see the closing notes).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
