"""Background jobs run in time slices (`run_in_slices`: retries here, mapping checks in
`pimsync.resync`), and retries of thousands of events with visible progress.

A retry small enough for one request is done in it (`retry_now`) and recorded as a finished job, so
the job history lists every retry and each job's page shows where its events are now (`progress`,
the one source of the counts every job page and the history show).

A larger one creates a `Job` row (what to retry, who asked, how many) and queues one django-q2 task;
the task retries the selected events in id order, `BATCH_SIZE` per transaction, through the one
retry code path (`EventQuerySet.retry`, as the Retry button). Each batch and the job's new
position commit together, so a worker that dies mid-batch leaves the batch undone and the position
where it was: a re-run goes on from there and never retries an event twice. A task runs for at
most `SLICE_SECONDS` and then queues its continuation, well inside django-q2's task timeout. The
sweeper calls `requeue_stale` every minute: an active job whose heartbeat is older than the task
timeout lost its worker (or its task: Redis has no delivery receipts) and is queued again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from pimsync import selection
from pimsync.models import Event, Job
from pimsync.wakeups import queue_job, start_job, wake

log = logging.getLogger(__name__)

# Events retried per transaction: each batch holds its rows' locks for well under a second.
BATCH_SIZE = 500
# Seconds one task works before it queues its continuation (django-q2 kills a task at its timeout,
# PIMSYNC_TASK_TIMEOUT_SECONDS; a slice is at most a quarter of it).
SLICE_SECONDS = 20.0
# Explicit id lists are for page selections; anything larger is selected by its filter instead.
MAX_IDS = 10_000


def selected_events(job: Job) -> QuerySet[Event]:
    """The events a job works on: its selection, without events stored after it was created."""
    events = Event.objects.filter(pk__in=job.ids) if job.ids is not None else selection.select(job.query)
    if job.only_status:
        events = events.filter(status=job.only_status)
    return events.filter(pk__lte=job.upto_id)


def start_retry(user, *, query: str = "", only_status: str = "", ids: list[int] | None = None) -> Job:
    """Create a queued retry job for a selection (a list query string or ids) and queue its task.

    Raises `selection.SelectionError` for a query string the event list does not understand."""
    if ids is not None:
        if len(ids) > MAX_IDS:
            raise selection.SelectionError(f"more than {MAX_IDS} ids: select by a filter instead")
        upto = max(ids, default=0)
    else:
        selection.check(query)
        upto = Event.objects.aggregate(last=Max("pk"))["last"] or 0
    job = Job(kind=Job.Kind.RETRY, created_by=user, query=query, only_status=only_status, ids=ids, upto_id=upto)
    job.total = selected_events(job).count()
    job.description = describe(job)
    start_job(job)
    log.info("job %s queued: %s", job.pk, job.description)
    return job


def retry_now(
    user, events: list[Event], *, query: str = "", only_status: str = "", ids: list[int] | None = None
) -> Job:
    """Retry a few events in this request (the Retry button, a small selection) and record it as a
    finished job; the events remember the job, whose page shows where they are now."""
    now = timezone.now()
    job = Job(
        kind=Job.Kind.RETRY,
        status=Job.State.FINISHED,
        created_by=user,
        query=query if ids is None else "",
        only_status=only_status,
        ids=ids,
        upto_id=max((event.pk for event in events), default=0),
        started_at=now,
        heartbeat_at=now,
        finished_at=now,
        total=len(events),
        done=len(events),
    )
    job.description = describe(job) if ids is None or len(ids) != 1 else f"retry event {ids[0]}"
    with transaction.atomic():
        job.save()
        job.succeeded = Event.objects.filter(pk__in=[event.pk for event in events]).retry(job=job)
        job.skipped = job.total - job.succeeded
        job.save(update_fields=["succeeded", "skipped"])
    if job.succeeded:
        wake()
    log.info("job %s: %s, done at once: %s retried", job.pk, job.description, job.succeeded)
    return job


@dataclass
class Progress:
    """A job's progress as every page shows it: the header, the history and the polled JSON."""

    done: int
    total: int
    succeeded: int
    unchanged: int
    failed: int
    skipped: int
    eta_seconds: float | None
    # A retry's events by their status now (`Job.retried_now`).
    now: dict[str, int] = field(default_factory=dict)

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)


def progress(job: Job, *, events_now: bool = True) -> Progress:
    """The one count of a job's progress. An active re-sync is counted from its events now (its row
    holds the counts of its last step, or of the moment it ended); a retry adds where its events
    are now (unless `events_now` is False: the history needs no such count per row); an estimate
    of the time left comes from the pace so far."""
    if job.kind == Job.Kind.RESYNC and job.is_active:
        job.recount()
    eta = None
    if job.is_active and job.started_at and job.done:
        elapsed = (timezone.now() - job.started_at).total_seconds()
        eta = max(0.0, (job.total - job.done) * elapsed / job.done)
    elif job.is_active and job.kind == Job.Kind.RESYNC:
        eta = job.total / settings.PIMSYNC_RESYNC_RATE
    now = job.retried_now() if events_now and job.kind == Job.Kind.RETRY else {}
    return Progress(job.done, job.total, job.succeeded, job.unchanged, job.failed, job.skipped, eta, now)


def describe(job: Job) -> str:
    """What the job works on, in words."""
    what = "failed events" if job.only_status == "failed" else "selected events"
    if job.ids is not None:
        return f"retry {len(job.ids)} selected events"
    return f"retry {what} matching {job.query}"[:255] if job.query else f"retry all {what}"


def run(job_id: int, *, slice_seconds: float | None = None) -> str:
    """Work on one retry job until it ends or its time slice is used up (then queue the rest)."""
    return run_in_slices(job_id, lambda: _batch(job_id), slice_seconds=slice_seconds)


def run_in_slices(job_id: int, batch: Callable[[], str], *, slice_seconds: float | None = None) -> str:
    """Work on a background job batch by batch until it ends or its time slice is used up, then
    queue its continuation. `batch()` does one batch in one transaction, under the job row's
    lock, and returns the job's status (a Cancel between batches is seen there)."""
    if slice_seconds is None:  # a slice always ends well before django-q2 would kill the task
        slice_seconds = min(SLICE_SECONDS, settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 4)
    now = timezone.now()
    if not Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).update(status=Job.State.RUNNING, heartbeat_at=now):
        return f"job {job_id}: not active, nothing to do"
    Job.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    deadline = time.monotonic() + slice_seconds
    try:
        while True:
            status = batch()
            if status != Job.State.RUNNING:
                return f"job {job_id} {status}"
            if time.monotonic() >= deadline:
                queue_job(job_id)
                return f"job {job_id}: continues in a new task"
    except OperationalError:
        # The database went away for a moment (a restart, a deadlock): the job stays running and
        # the sweeper queues it again once its heartbeat is stale; its batches are all-or-nothing.
        log.warning("job %s interrupted by a database error; the sweeper resumes it", job_id, exc_info=True)
        return f"job {job_id}: interrupted, to be resumed"
    except Exception as exc:  # the job says why it stopped; the dashboard shows it
        log.exception("job %s failed", job_id)
        Job.objects.filter(pk=job_id, status=Job.State.RUNNING).update(
            status=Job.State.FAILED, error=f"{type(exc).__name__}: {exc}"[:1000], finished_at=timezone.now()
        )
        return f"job {job_id} failed"


def _batch(job_id: int) -> str:
    """Retry the next batch and record the progress in one transaction; return the job's status."""
    with transaction.atomic():
        # The row lock makes a second runner (a task queued again while the first still ran)
        # wait, then see the position the first one reached.
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.State.RUNNING:  # cancelled between batches
            return job.status
        position = job.position
        batch = list(selected_events(job).filter(pk__gt=position).defer("payload").order_by("pk")[:BATCH_SIZE])
        now = timezone.now()
        if batch:
            retried = Event.objects.filter(pk__in=[event.pk for event in batch]).retry(job=job)
            if retried:
                wake()
            job.position = batch[-1].pk
            job.done += len(batch)
            job.succeeded += retried
            job.skipped += len(batch) - retried
            job.total = max(job.total, job.done)  # an event may enter the selection while the job runs
        else:
            # Events that left the selection before the job reached them (someone retried them,
            # or they are no longer in the chosen status) were skipped.
            job.skipped += job.total - job.done
            job.done = job.total
            job.status, job.finished_at = Job.State.FINISHED, now
            log.info("job %s finished: %s retried, %s skipped", job.pk, job.succeeded, job.skipped)
        job.heartbeat_at = now
        progress = ["position", "done", "succeeded", "skipped", "total", "status", "finished_at", "heartbeat_at"]
        # Conditional on `running`: where the row lock is a no-op (SQLite) a Cancel may have come
        # in since the read; then this batch is undone rather than recorded behind its back.
        if not Job.objects.filter(pk=job.pk, position=position, status=Job.State.RUNNING).update(
            **{name: getattr(job, name) for name in progress}
        ):
            transaction.set_rollback(True)
            return Job.objects.values_list("status", flat=True).get(pk=job.pk)
        return job.status


def requeue_stale() -> int:
    """Queue a run for every active job whose worker died or whose task was lost; return how many."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
    requeued = 0
    for job_id in Job.objects.filter(status__in=Job.ACTIVE, heartbeat_at__lt=stale).values_list("pk", flat=True)[:100]:
        # Moving the heartbeat on means the next sweep leaves the job alone while the new task waits.
        if Job.objects.filter(pk=job_id, status__in=Job.ACTIVE, heartbeat_at__lt=stale).update(heartbeat_at=now):
            requeued += queue_job(job_id)
    return requeued
