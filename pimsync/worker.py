"""The drain loop a django-q2 worker runs: many assets at once on a thread pool.

Enrichment waits on the network (PIM, AEM, each call tens of milliseconds), so one worker process
keeps up to PIMSYNC_WORKER_THREADS assets in flight. Exclusivity stays per asset, through the lease
in `pipeline.process_asset`; several processes draining at once skip each other's leased assets.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pimsync import pipeline
from pimsync.models import PENDING, AssetState, Event, Heartbeat
from pimsync.tasks import wake

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def threads() -> int:
    return max(0, settings.PIMSYNC_WORKER_THREADS)


def _executor() -> ThreadPoolExecutor:
    """One pool per worker process, created after django-q2 forked it; its threads keep their
    database connections and HTTP sessions between tasks."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="pimsync-enrich")
        return _pool


def candidates(limit: int, busy: set[str]) -> list[str]:
    """Assets with due events that nobody holds, in a random order so that processes draining at
    the same time mostly pick different assets."""
    now = timezone.now()
    leased = AssetState.objects.filter(lease_until__gt=now).values("asset_id")
    rows = (
        Event.objects.filter(status__in=PENDING, next_attempt_at__lte=now)
        .exclude(asset_id__in=leased)
        .order_by("next_attempt_at")
        .values_list("asset_id", flat=True)[: limit * 4]
    )
    unique = [asset for asset in dict.fromkeys(rows) if asset not in busy]
    return random.sample(unique, min(limit, len(unique)))


def _run_one(asset_id: str) -> str:
    try:
        return pipeline.process_asset(asset_id)
    finally:
        close_old_connections()


class Promise:
    """This drain's promise to look for new events once more at or after a time (see
    `tasks.drain_will_poll`); kept in the `drain` heartbeat row, which only moves forward."""

    def __init__(self, limit: float) -> None:
        self.limit = limit  # never promise past the task's own deadline (monotonic seconds)
        self.written = -1e9

    def keep_polling_until(self, monotonic_until: float) -> None:
        until = min(monotonic_until, self.limit)
        if until - self.written < 0.5:  # at most about two writes a second
            return
        self.written = until
        at = timezone.now() + timedelta(seconds=until - time.monotonic())
        if not Heartbeat.objects.filter(name="drain", at__lt=at).update(at=at):
            Heartbeat.objects.get_or_create(name="drain", defaults={"at": at})


def _another_drain_promises() -> bool:
    at = Heartbeat.objects.filter(name="drain").values_list("at", flat=True).first()
    return at is not None and (at - timezone.now()).total_seconds() > 1.0


def drain() -> str:
    """Process due assets until none are left (after lingering briefly) or half the task timeout
    has passed."""
    deadline = time.monotonic() + settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2
    linger = settings.PIMSYNC_DRAIN_LINGER_SECONDS
    promise = Promise(limit=deadline)
    if not candidates(1, set()) and _another_drain_promises():
        # Nothing to do and a running drain already covers what arrives next: end at once, so
        # surplus wake-ups do not hold worker processes (and the sweeper) for a linger each.
        return "nothing due; another drain is polling"
    inline = threads() == 0  # enrich in this thread (the tests; a debugging session)
    pool = None if inline else _executor()
    running: dict[Future, str] = {}
    backlog: list[str] = []  # candidates fetched in one query, handed out as threads free up
    done = 0
    idle_until = time.monotonic() + linger
    while True:
        # Promise before looking: whatever commits from now on is seen by a later check.
        promise.keep_polling_until(idle_until)
        started = 0
        free = 10 if inline else threads() - len(running)
        if free > 0 and time.monotonic() < deadline:
            if not backlog:
                backlog = candidates(free if inline else threads() * 2, set(running.values()))
            while backlog and free > 0:
                asset_id = backlog.pop()
                if asset_id in running.values():
                    continue
                started += 1
                free -= 1
                if inline:
                    pipeline.process_asset(asset_id)
                    done += 1
                else:
                    running[pool.submit(_run_one, asset_id)] = asset_id
        if running:
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                _log_failure(future, running.pop(future))
                done += 1
        if running or started:
            idle_until = time.monotonic() + linger
            continue
        # Run dry: this check came after the promised time, so the promise is kept.
        if time.monotonic() >= min(idle_until, deadline):
            break
        time.sleep(0.2)
    if time.monotonic() >= deadline:
        # Hand over to a fresh task rather than run into django-q2's timeout. Unconditionally:
        # webhooks may have skipped their wake-up trusting this drain's promise.
        wake()
    return f"drained {done} asset(s)"


def _log_failure(future: Future, asset_id: str) -> None:
    error = future.exception()
    if error is not None:
        # Its events stay `processing`; the sweeper hands them out again after the lease.
        log.error("enrichment of %s crashed", asset_id, exc_info=error, extra={"asset_id": asset_id})
