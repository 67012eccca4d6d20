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

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pimsync import pipeline
from pimsync.models import PENDING, AssetState, Event
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


def drain() -> str:
    """Process due assets until none are left or half the task timeout has passed."""
    deadline = time.monotonic() + settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2
    done = 0
    if threads() == 0:  # enrich in this thread: the embedded default's SQLite, and the tests
        while time.monotonic() < deadline and (batch := candidates(10, set())):
            for asset_id in batch:
                pipeline.process_asset(asset_id)
                done += 1
    else:
        pool, running = _executor(), {}
        while True:
            free = threads() - len(running)
            if free > 0 and time.monotonic() < deadline:
                for asset_id in candidates(free, set(running.values())):
                    running[pool.submit(_run_one, asset_id)] = asset_id
            if not running:
                break
            finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                asset_id = running.pop(future)
                done += 1
                _log_failure(future, asset_id)
    if time.monotonic() >= deadline and candidates(1, set()):
        wake()  # hand the rest to a fresh task rather than run into django-q2's timeout
    return f"drained {done} asset(s)"


def _log_failure(future: Future, asset_id: str) -> None:
    error = future.exception()
    if error is not None:
        # Its events stay `processing`; the sweeper hands them out again after the lease.
        log.error("enrichment of %s crashed", asset_id, exc_info=error, extra={"asset_id": asset_id})
