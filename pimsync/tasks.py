"""django-q2 task entry points. Names are stable: queued tasks refer to them by dotted path.

Tasks carry no data: what to do is read from our own rows when a task runs, so a lost, repeated
or late task can never lose or double work (STYLE habit 4).
"""

from __future__ import annotations

import logging
import time
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

log = logging.getLogger(__name__)

DRAIN = "pimsync.tasks.drain"


def uses_orm_broker() -> bool:
    return "orm" in settings.Q_CLUSTER


@cache
def broker() -> Broker:
    """One broker per process: for Redis, `get_broker()` would open a new connection pool per call."""
    return get_broker()


# Margin between "a drain promised to poll until P" and this request's commit.
COMMIT_MARGIN_SECONDS = 1.0
# How long a web process trusts its last read of that promise (it only ever moves forward).
PROMISE_CACHE_SECONDS = 0.5
_promise = {"read_at": -1e9, "until": None}


def drain_will_poll() -> bool:
    """Will a running drain look for new events after this request commits?

    Each running drain promises to run one more candidate check at or after the time it keeps in
    the `drain` heartbeat row, and moves it forward while it works (pimsync.worker). When that time
    is comfortably ahead, this request needs no wake-up of its own: the per-request broker insert
    was the most expensive step of the webhook. If the drain is SIGKILLed, the sweeper wakes a
    worker within a minute.
    """
    now = time.monotonic()
    if now - _promise["read_at"] > PROMISE_CACHE_SECONDS:
        from pimsync.models import Heartbeat

        _promise["until"] = Heartbeat.objects.filter(name="drain").values_list("at", flat=True).first()
        _promise["read_at"] = now
    until = _promise["until"]
    return until is not None and (until - timezone.now()).total_seconds() > COMMIT_MARGIN_SECONDS


def enqueue_drain() -> None:
    """Queue one drain task; errors propagate (inside the webhook's transaction they must)."""
    # save=False: a drain's result is in our rows; django-q2 still records failures.
    async_task(DRAIN, task_name="drain", group="drain", broker=broker(), save=False)


def wake(times: int = 1) -> int:
    """Ask for `times` drain tasks; return how many reached the broker.

    A failure here loses nothing: the sweeper wakes a worker for any due event every minute.
    """
    sent = 0
    for _ in range(times):
        try:
            # A savepoint: with the ORM broker a failed insert must not break the caller's
            # transaction (it would silently roll back the events it just stored).
            with transaction.atomic():
                enqueue_drain()
            sent += 1
        except Exception:  # any broker failure; the sweeper covers it
            log.warning("could not enqueue a wake-up; the sweeper will", exc_info=True)
            break
    return sent


def drain() -> str:
    """Enrich due events, many assets at once, until none are left."""
    from pimsync.worker import drain as run

    return run()


def sweep() -> str:
    """Revive events whose worker died, wake workers for due retries and lost wake-ups, and
    queue again background jobs whose worker died."""
    from pimsync.jobs import requeue_stale
    from pimsync.pipeline import sweep as run

    summary = run()
    requeued = requeue_stale()
    return f"{summary}; re-queued {requeued} job(s)" if requeued else summary


RUN_JOB = "pimsync.tasks.run_job"


def queue_job(job_id: int) -> int:
    """Queue one run of a background job; return 1, or 0 when the broker failed (the sweeper
    queues it again). With Redis the task is sent after the caller's commit, so that the worker
    finds the job's row; the ORM broker stores it in the same transaction."""

    def send() -> int:
        try:
            with transaction.atomic():  # a savepoint, as in wake()
                async_task(RUN_JOB, job_id, task_name=f"job {job_id}", group="jobs", broker=broker(), save=False)
            return 1
        except Exception:  # any broker failure; the sweeper covers it
            log.warning("could not queue job %s; the sweeper will", job_id, exc_info=True)
            return 0

    if uses_orm_broker() or not transaction.get_connection().in_atomic_block:
        return send()
    transaction.on_commit(send)
    return 1


def run_job(job_id: int) -> str:
    """Work on one background job (a large retry) for a time slice; it queues its own continuation."""
    from pimsync.jobs import run

    return run(job_id)


def purge() -> str:
    """Delete events and history past their retention, within django-q2's task timeout."""
    from pimsync.retention import purge as run

    # Half the timeout: a purge stopped by its budget ends cleanly and the next day's run
    # continues, whereas one killed by django-q2 would be recorded as a failure.
    return run(budget_seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2).summary()
