"""The drain loop a django-q2 worker runs: many assets at once on a thread pool.

Enrichment waits on the network (PIM, AEM, each call tens of milliseconds), so one worker process
keeps up to PIMSYNC_WORKER_THREADS assets in flight, and as many reads sent ahead (`read_ahead`:
AEM's metadata asked for while the PIM answers; PIMSYNC_READ_AHEAD). Exclusivity stays per
asset, through the lease in `pipeline.process_asset`; several processes draining at once skip
each other's leased assets.

A drain with more due assets than its threads can take asks for one more drain,
so that idle worker processes, of this machine or another, join a burst at once. Deliveries queue
few wake-ups (a running drain's promise covers them), and a busy cluster's django-q2 pusher takes
tasks from the broker ahead of its free processes, so without that the first cluster to wake could
hold a whole burst's wake-ups while the others idled until the sweeper's next minute.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Exists, OuterRef
from django.utils import timezone

from pimsync import pipeline, postgresql, read_ahead
from pimsync.models import PENDING, Asset, Event
from pimsync.wakeups import DrainPromise, wake, wake_unless_one_waits

log = logging.getLogger(__name__)

# How often a drain that has more due assets than threads may ask for another drain. It asks only
# while no drain task waits in the broker. A task a cluster's pusher has taken no longer waits
# there, so a busy cluster can hold a few: one per worker process running, django-q2's queue_limit
# (the number of worker processes squared, unless set) in its queue, and one in the pusher's
# hands. However long a burst lasts, the tasks asked for stay within that per cluster, plus one in
# the broker; each that finds nothing due ends at once or after one linger.
HELP_EVERY_SECONDS = 1.0


def threads() -> int:
    """Assets one worker process enriches at once; 0 enriches in the drain's own thread."""
    return max(0, settings.PIMSYNC_WORKER_THREADS)


class Threads:
    """Enrich on a thread pool, one per worker process, created after django-q2 forked it; its
    threads keep their database connections and HTTP sessions between tasks."""

    _pool: ThreadPoolExecutor | None = None
    _lock = threading.Lock()

    def __init__(self, width: int) -> None:
        self.width = width
        with self._lock:
            if Threads._pool is None:
                Threads._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="pimsync-enrich")
        if settings.PIMSYNC_READ_AHEAD:
            # A read ahead per enrichment: as many read-ahead threads as enrichment threads (a
            # read that has not started when its answer is wanted is sent by the enrichment).
            read_ahead.enable(width)

    def submit(self, asset_id: str) -> Future:
        """Enrich the asset on a free thread."""
        return self._pool.submit(_run_one, asset_id)


class Inline:
    """Enrich in the calling thread, one asset after the other (PIMSYNC_WORKER_THREADS=0: the
    tests, a debugging session). Errors propagate, and the caller's connection stays open."""

    width = 10  # assets fetched per candidate query

    def submit(self, asset_id: str) -> Future:
        """Enrich the asset now; the future returned is already done."""
        future = Future()
        future.set_result(pipeline.process_asset(asset_id))
        return future


def _run_one(asset_id: str) -> str:
    try:
        # These threads run nothing but enrichments, whose statements are all on keys: their
        # connections may keep PostgreSQL's generic plans (pimsync/postgresql/base.py). Inside
        # the try: a connection this fails on is closed below like any other.
        postgresql.reuse_plans()
        return pipeline.process_asset(asset_id)
    finally:
        close_old_connections()


def candidates(limit: int, busy: set[str]) -> list[str]:
    """Assets with due events that nobody holds: those of live events (from Adobe) first, then
    those a re-sync scheduled, so a long re-sync never delays an upload. Within each, a random
    order, so that processes draining at the same time mostly pick different assets."""
    now = timezone.now()
    # Looked up by primary key for each due event (lease_until has no index: Asset.lease_until).
    leased = Asset.objects.filter(asset_id=OuterRef("asset_id"), lease_until__gt=now)
    # One query per pending status, each reading the event_due_priority index in its order and
    # stopping at the limit: one query for both statuses sorted every due event first, on each
    # call of a drain (350 ms with 500,000 events due, as during a large re-sync).
    due = sorted(
        row
        for status in PENDING
        for row in Event.objects.due(now)
        .filter(status=status)
        .exclude(Exists(leased))
        .order_by("priority", "next_attempt_at")
        .values_list("priority", "next_attempt_at", "asset_id")[: limit * 4]
    )
    rows = [(asset_id, priority) for priority, _, asset_id in due[: limit * 4]]
    chosen: list[str] = []
    for priority in sorted({priority for _, priority in rows}):
        unique = [a for a in dict.fromkeys(a for a, p in rows if p == priority) if a not in busy and a not in chosen]
        chosen += random.sample(unique, min(limit - len(chosen), len(unique)))
    return chosen


def drain() -> str:
    """Process due assets until none are left (after lingering briefly) or half the task timeout
    has passed."""
    deadline = time.monotonic() + settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2
    linger = settings.PIMSYNC_DRAIN_LINGER_SECONDS
    if not candidates(1, set()) and DrainPromise.holds():
        # Nothing to do and a running drain already covers what arrives next: end at once, so
        # surplus wake-ups do not hold worker processes (and the sweeper) for a linger each.
        return "nothing due; another drain is polling"
    promise = DrainPromise(deadline)
    runner = Threads(threads()) if threads() else Inline()
    running: dict[Future, str] = {}
    backlog: list[str] = []  # candidates fetched in one query, handed out as threads free up
    done = 0
    idle_until = time.monotonic() + linger
    asked = -HELP_EVERY_SECONDS
    while True:
        # Promise before looking: whatever commits from now on is seen by a later check.
        promise.keep_polling_until(idle_until)
        # Threads freed first, then filled: a drain is idle only when a look found nothing to start
        # for free threads (the other way round, it could end with assets left in its backlog).
        done += _collect(running)
        started = _start(runner, running, backlog, deadline)
        now = time.monotonic()
        if backlog and isinstance(runner, Threads) and now - asked >= HELP_EVERY_SECONDS and now < deadline:
            # Every thread busy and due assets left over: room for another worker process. (Past
            # the deadline the drain hands over with a wake-up of its own when its threads end.)
            asked = now
            wake_unless_one_waits()
        if running or started:
            idle_until = time.monotonic() + linger
            continue
        # Run dry: this check came after the promised time, so the promise is kept.
        if time.monotonic() >= min(idle_until, deadline):
            # Unless a web process has promised, with the wake-up it queued, that a drain looks
            # until later: requests meanwhile trusted that and queued none of their own.
            queued = DrainPromise.queued_until()
            ahead = (queued - timezone.now()).total_seconds() if queued else 0
            if ahead <= 0 or time.monotonic() >= deadline:
                break
            idle_until = time.monotonic() + ahead
        time.sleep(0.2)
    if time.monotonic() >= deadline:
        # Hand over to a fresh task rather than run into django-q2's timeout. Unconditionally:
        # webhooks may have skipped their wake-up trusting this drain's promise.
        wake()
    return f"drained {done} asset(s)"


def _start(runner: Threads | Inline, running: dict[Future, str], backlog: list[str], deadline: float) -> int:
    """Hand due assets to free threads, before the deadline; return how many were started."""
    free = runner.width - len(running)
    if free <= 0 or time.monotonic() >= deadline:
        return 0
    if not backlog:
        backlog.extend(candidates(runner.width * 2, set(running.values())))
        # The new assets' rows in one INSERT, so taking each one's lease is one UPDATE rather
        # than an UPDATE that finds no row and then an INSERT.
        Asset.create_missing(backlog)
    started = 0
    while backlog and started < free:
        asset_id = backlog.pop()
        if asset_id not in running.values():
            running[runner.submit(asset_id)] = asset_id
            started += 1
    return started


def _collect(running: dict[Future, str]) -> int:
    """Wait up to half a second for enrichments to end; return how many did."""
    if not running:
        return 0
    finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
    for future in finished:
        _log_failure(future, running.pop(future))
    return len(finished)


def _log_failure(future: Future, asset_id: str) -> None:
    error = future.exception()
    if error is not None:
        # Its events stay `processing`; the sweeper hands them out again after the lease.
        log.error("enrichment of %s crashed", asset_id, exc_info=error, extra={"asset_id": asset_id})
