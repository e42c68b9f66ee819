"""Queue tasks of the users app (run by `manage.py procrastinate worker`).

- `run_bulk_action`: a bulk action over more users than a request may touch
  (USERS_BULK_INLINE_MAX): the same action, the same service, in a worker.
"""

from __future__ import annotations

from typing import Any

from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app

from users import bulk


@app.task(
    name="users.run_bulk_action",
    queue="users",
    pass_context=True,
    # A worker killed mid-write rolls the transaction back; the retry runs it again, and
    # an attempt after a commit finds the job's audit entry and does nothing twice.
    retry=RetryStrategy(max_attempts=3, wait=5),
)
def run_bulk_action(context: JobContext, **arguments: Any) -> str:
    job_id = context.job.id
    if job_id is None:
        raise RuntimeError("a bulk action runs as a queued job")
    return bulk.bulk_run_queued(job_id=job_id, **arguments)


# The GIN indexes that search reads (trigram on username and e-mail, full text); a large
# create leaves its rows in their pending lists (users.services.LARGE_BATCH).
SEARCH_INDEXES = ("vpnuser_username_trgm", "vpnuser_email_trgm", "vpnuser_search_vector")


@app.task(name="users.clean_search_indexes", queue="users", queueing_lock="users.clean_search_indexes")
def clean_search_indexes() -> int:
    """Merge the search indexes' pending lists into their main structure; returns pages cleaned.

    Searches read a pending list entry by entry, so it is merged soon after a large create
    rather than by the next small write (in a request) or by autovacuum much later.
    """
    from django.db import connection

    cleaned = 0
    with connection.cursor() as cursor:
        for name in SEARCH_INDEXES:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
            cleaned += int(cursor.fetchone()[0])
    return cleaned
