"""django-q2 task entry points. Names are stable: queued tasks refer to them by dotted path.

Tasks carry no data: what to do is read from our own rows when a task runs, so a lost, repeated
or late task can never lose or double work (STYLE habit 4).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

log = logging.getLogger(__name__)

DRAIN = "pimsync.tasks.drain"


def uses_orm_broker() -> bool:
    return "orm" in settings.Q_CLUSTER


def wake(times: int = 1) -> int:
    """Ask for `times` drain tasks; return how many reached the broker.

    With the ORM broker, call it inside the transaction that stored the work: the wake-up then
    commits or rolls back with it. A failure here loses nothing: the sweeper wakes a worker for
    any due event every minute.
    """
    sent = 0
    for _ in range(times):
        try:
            # A savepoint: with the ORM broker a failed insert must not break the caller's
            # transaction (it would silently roll back the events it just stored).
            with transaction.atomic():
                async_task(DRAIN, task_name="drain", group="drain")
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
    """Revive events whose worker died and wake workers for due retries and lost wake-ups."""
    from pimsync.pipeline import sweep as run

    return run()
