"""django-q2 task entry points. Names are stable: queued tasks refer to them by dotted path.

Tasks carry asset ids, never objects; what to do is read from our own rows when the task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django_q.tasks import async_task

log = logging.getLogger(__name__)

PROCESS_ASSET = "pimsync.tasks.process_asset"


def enqueue_assets(asset_ids: Iterable[str]) -> int:
    """Wake a worker for each asset; return how many wake-ups reached the broker.

    A failure here loses nothing: the events stay `received` and the sweeper enqueues them again.
    """
    sent = 0
    for asset_id in sorted(set(filter(None, asset_ids))):
        try:
            async_task(PROCESS_ASSET, asset_id, task_name=f"enrich {asset_id}"[:100], group="enrich")
            sent += 1
        except Exception:  # any broker failure; the sweeper covers it
            log.warning("could not enqueue asset %s; the sweeper will", asset_id, exc_info=True)
    return sent


def process_asset(asset_id: str) -> str:
    """Enrich every pending event of one asset."""
    from pimsync.pipeline import process_asset as run

    return run(asset_id)


def sweep() -> str:
    """Re-enqueue due retries, lost wake-ups and events whose worker died."""
    from pimsync.pipeline import sweep as run

    return run()
