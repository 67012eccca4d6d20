"""Wake-up calls: the django-q2 tasks pimsync sends, and when a stored event needs one.

Tasks carry no data: what to do is read from our own rows when a task runs, so a lost, repeated
or late task can never lose or double work. A wake-up that never arrives is covered by the
sweeper, which wakes a worker for every due event each minute (see docs/architecture.md).

A running drain promises to look for new events once more at or after a time it keeps in the
`drain` heartbeat row (`DrainPromise`); a webhook that can rely on that promise sends no wake-up
of its own, which spares it its most expensive step. A webhook that does queue a wake-up writes
a promise too (the `drain queued` row, in the same transaction as the task): the drain that task
starts keeps looking until that time (a linger ahead), so for that long the other requests need
none either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

from pimsync.models import Heartbeat, Job

log = logging.getLogger(__name__)

# Dotted paths of the entry points in pimsync.tasks; queued tasks and schedules store them.
DRAIN = "pimsync.tasks.drain"
RUN_JOB = "pimsync.tasks.run_job"
PIM_NOTIFICATIONS = "pimsync.tasks.pim_notifications"


def uses_orm_broker() -> bool:
    """Whether django-q2 keeps its queue in our database (else in Redis)."""
    return "orm" in settings.Q_CLUSTER


@cache
def broker() -> Broker:
    """One broker per process: for Redis, `get_broker()` would open a new connection pool per call."""
    return get_broker()


def enqueue_drain() -> None:
    """Queue one drain task; errors propagate (inside the webhook's transaction they must)."""
    # save=False: a drain's result is in our rows; django-q2 still records failures.
    async_task(DRAIN, task_name="drain", group="drain", broker=broker(), save=False)


def wake(times: int = 1) -> int:
    """Ask for `times` drain tasks; return how many reached the broker (a failure loses nothing)."""
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


def wake_unless_one_waits() -> None:
    """Ask for one drain task unless one already waits in the broker (a free process takes that
    one): a busy drain asking for help."""
    try:
        waiting = broker().queue_size()
    except Exception:  # the broker unreachable: the caller goes on alone, the sweeper wakes others
        log.warning("could not read the broker's queue to ask for another drain", exc_info=True)
        return
    if not waiting:
        wake()


def with_the_commit(send: Callable[[], object]) -> None:
    """Send a task so that the worker finds what the caller's transaction is writing: with the ORM
    broker inside that transaction (both or neither), with Redis after its commit (a wake-up lost
    then is covered by the sweeper or a schedule); at once outside a transaction."""
    if uses_orm_broker() or not transaction.get_connection().in_atomic_block:
        send()
    else:
        transaction.on_commit(send)


def wake_for_new_events() -> None:
    """Make sure a worker sees the events the caller's transaction is storing.

    Nothing to send while a running drain promises to look again after this commit. With the ORM
    broker the task is stored in the same transaction: both or neither (then the webhook answers
    503 and Adobe delivers again), so an acknowledged event always reaches a worker. With Redis
    the task is sent after the commit, so the worker finds the rows; a wake-up lost then (broker
    down, process killed) is covered by the sweeper.
    """
    if DrainPromise.covers_new_events():
        return
    # Before the task: whichever drain it starts reads this promise and keeps it (see DrainPromise).
    promised = DrainPromise.promise_queued()
    if uses_orm_broker():
        # A failure must fail the caller's transaction (the webhook answers 503): the task is
        # enqueued bare, not through wake()'s savepoint, and the promise rolls back with it.
        with_the_commit(enqueue_drain)
        return

    def send() -> None:
        # Redis down: no drain will keep the promise, so other requests must not trust it.
        if not wake() and promised is not None:
            DrainPromise.withdraw(promised)

    with_the_commit(send)


def queue_job(job_id: int) -> int:
    """Queue one run of a background job with the caller's commit (`with_the_commit`); return 1,
    or 0 when the broker failed at once (the sweeper queues it again)."""
    sent = []

    def send() -> None:
        try:
            with transaction.atomic():  # a savepoint, as in wake()
                async_task(RUN_JOB, job_id, task_name=f"job {job_id}", group="jobs", broker=broker(), save=False)
        except Exception:  # any broker failure; the sweeper covers it
            log.warning("could not queue job %s; the sweeper will", job_id, exc_info=True)
            sent.append(0)

    with_the_commit(send)
    return 0 if sent else 1


def queue_pim_notifications() -> None:
    """Ask for the stored PIM notifications to be handled (the poll's schedule covers a lost request).
    With the ORM broker the task is stored in the caller's transaction, with Redis sent after it."""

    def send() -> None:
        try:
            with transaction.atomic():  # a savepoint, as in wake()
                async_task(PIM_NOTIFICATIONS, task_name="pim notifications", group="pim", broker=broker(), save=False)
        except Exception:  # any broker failure; the poll's schedule handles them within minutes
            log.warning("could not queue the PIM notifications; the poll will handle them", exc_info=True)

    with_the_commit(send)


def start_job(job: Job) -> Job:
    """Save a new background job and queue its first run, together: with the ORM broker both or
    neither, with Redis the run is sent after the commit (and the sweeper covers a lost one)."""
    job.created_at = job.heartbeat_at = timezone.now()
    with transaction.atomic():
        job.save()
        queue_job(job.pk)
    return job


class DrainPromise:
    """A promise that some drain will look for new events once more at or after a time.

    Two heartbeat rows hold it; each time only ever moves forward. `drain`: a running drain writes
    it while it works (`keep_polling_until`); several drains share it. `drain queued`: a web
    process that queues a wake-up writes it in the same transaction as the task
    (`promise_queued`), so the drain that task starts, whenever that is, reads it, and keeps
    polling until it has passed before it stops (`queued_until`). A web process reads both
    (`covers_new_events`) to decide whether its request needs a wake-up of its own. If a drain
    is SIGKILLed or a task lost, the sweeper wakes a worker within a minute.
    """

    ROW = Heartbeat.DRAIN
    QUEUED_ROW = Heartbeat.DRAIN_QUEUED
    # The promised time must be at least this far ahead of now to cover a commit about to happen.
    MARGIN = timedelta(seconds=1)
    # How long a web process trusts its last read (the promise only ever moves forward).
    CACHE_SECONDS = 0.5
    # A drain writes the row at most about twice a second.
    WRITE_EVERY_SECONDS = 0.5

    _read = {"at": -1e9, "until": None}  # this process's last read: monotonic time, promised time

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # never promise past the task's own deadline (monotonic seconds)
        self.written = -1e9

    def keep_polling_until(self, monotonic_until: float) -> None:
        """Promise to check for new events again at or after `monotonic_until`."""
        until = min(monotonic_until, self.deadline)
        if until - self.written < self.WRITE_EVERY_SECONDS:
            return
        self.written = until
        self._move(self.ROW, timezone.now() + timedelta(seconds=until - time.monotonic()))

    @staticmethod
    def _move(row: str, at) -> None:
        if not Heartbeat.objects.filter(name=row, at__lt=at).update(at=at):
            Heartbeat.objects.get_or_create(name=row, defaults={"at": at})

    @classmethod
    def holds(cls) -> bool:
        """Will a running drain look for new events after a commit made now?"""
        until = Heartbeat.objects.filter(name=cls.ROW).values_list("at", flat=True).first()
        return until is not None and until - timezone.now() > cls.MARGIN

    @classmethod
    def covers_new_events(cls) -> bool:
        """Will some drain, running or queued, look for new events after a commit made now?
        Trusts this process's read for CACHE_SECONDS: the webhook asks on every request."""
        now = time.monotonic()
        if now - cls._read["at"] > cls.CACHE_SECONDS:
            rows = Heartbeat.objects.filter(name__in=[cls.ROW, cls.QUEUED_ROW]).values_list("at", flat=True)
            cls._read["until"] = max(rows, default=None)
            cls._read["at"] = now
        until = cls._read["until"]
        return until is not None and until - timezone.now() > cls.MARGIN

    @classmethod
    def queued_ahead(cls) -> timedelta:
        """How far ahead a queued wake-up promises: as long as a drain lingers after its last work
        (PIMSYNC_DRAIN_LINGER_SECONDS), so the drain it starts polls no longer than it would
        anyway, and requests in that time less MARGIN queue none of their own."""
        return timedelta(seconds=settings.PIMSYNC_DRAIN_LINGER_SECONDS)

    @classmethod
    def promise_queued(cls):
        """Promise, in the caller's transaction, that the wake-up it queues covers `queued_ahead()`;
        the promised time (None: nothing to promise when that is within MARGIN, as no request
        could rely on it)."""
        if cls.queued_ahead() <= cls.MARGIN:
            return None
        at = timezone.now() + cls.queued_ahead()
        cls._move(cls.QUEUED_ROW, at)
        # This process trusts it once it is committed: rolled back, its task is gone with it.
        transaction.on_commit(lambda: cls._read.update(at=time.monotonic(), until=at))
        return at

    @classmethod
    def withdraw(cls, at) -> None:
        """Take back the promise made for `at` (unless a later one replaced it): its wake-up was lost."""
        Heartbeat.objects.filter(name=cls.QUEUED_ROW, at=at).update(at=timezone.now())
        cls.forget()

    @classmethod
    def queued_until(cls):
        """The time a queued wake-up promised to look until (None: never written)."""
        return Heartbeat.objects.filter(name=cls.QUEUED_ROW).values_list("at", flat=True).first()

    @classmethod
    def forget(cls) -> None:
        """Drop this process's cached read (tests)."""
        cls._read.update(at=-1e9, until=None)
