"""The poll: products changed in the PIM since the last poll, for PIMs that do not push
notifications and for notifications that were lost. Scheduled every few minutes (`migrate`
creates the schedule; `python manage.py poll_pim` runs it once).

The connector pages through the changed products (`Connector.changed_since`); each page's
products are handed to `resync.pim_changed` and only then is the page's cursor saved, so a crash
polls a page again rather than skipping it. A product whose data is what its assets were last
synced from (pimsync's own write-back, or a change a notification already brought) is skipped.
One poller at a time: a lease on the `PimCursor` row, as the journal's.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from pimsync import resync
from pimsync.models import PimCursor
from pimsync.outbound import http
from pimsync.pim import connectors
from pimsync.pim.notifications import already_synced

log = logging.getLogger(__name__)

# Pages per run (100 products each); the next run goes on from the saved cursor.
MAX_PAGES = 20
LEASE = timedelta(minutes=5)


def polling() -> bool:
    """Whether the configured connector can list changed products (the schedule does nothing otherwise)."""
    try:
        return connectors.connector().polls
    except connectors.ConfigurationError:
        return False


def poll(max_pages: int = MAX_PAGES) -> str:
    """One run: up to `max_pages` pages of changed products handed to re-syncs."""
    try:
        connector = connectors.connector()
    except connectors.ConfigurationError as exc:
        return f"not polling: {exc}"
    if not connector.polls:
        return f"not polling: the {connector.name} connector cannot list changed products"
    token = PimCursor.acquire(connector.name, LEASE)
    if token is None:
        return "another poll is running"
    try:
        return _run(connector, token, max_pages)
    finally:
        PimCursor.release(connector.name, token)


def _run(connector: connectors.Connector, token: str, max_pages: int) -> str:
    rows = PimCursor.held(connector.name, token)
    cursor = rows.values_list("cursor", flat=True).get()
    pages = changed = skipped = 0
    try:
        for page in connector.changed_since(cursor):
            keys = [key for key in page.keys if not _unchanged(connector, key, page.products.get(key))]
            skipped += len(page.keys) - len(keys)
            if keys:
                resync.pim_changed(keys, why=f"changed in {connector.label} (poll)")
            changed += len(keys)
            rows.update(cursor=page.cursor, polled_at=timezone.now(), last_error="")
            pages += 1
            if pages >= max_pages:
                break
    except (http.HttpError, connectors.ConfigurationError) as exc:
        message = getattr(exc, "message", str(exc))
        rows.update(last_error=message)
        log.warning("the PIM poll stopped: %s", message)
        return f"polled {pages} page(s), {changed} changed product(s); stopped: {message}"
    if not pages:
        rows.update(polled_at=timezone.now(), last_error="")
    return f"polled {pages} page(s): {changed} changed product(s) to re-sync, {skipped} already in step"


def _unchanged(connector: connectors.Connector, key: str, product: dict | None) -> bool:
    return product is not None and already_synced(connector, key, product)
