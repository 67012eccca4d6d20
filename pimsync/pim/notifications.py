"""Handling the stored PIM change notifications (`PimNotification`): from a product named by its
identifier or its uuid to a re-sync of that product's assets (`resync.pim_changed`).

Each notification is claimed with a conditional UPDATE, so two tasks never handle the same one.
A deletion names the product by uuid only on the Event Platform: its key is the one of the
assets last synced from that uuid (`Asset.pim_product_uuid`), found without a PIM call.
A created or updated product is always read from the PIM (one GET): its data fingerprint
(without the update time and the asset links pimsync writes, `Connector.fingerprint_view`) is
compared with what every known asset of the product was last synced from. When nothing differs,
the notification is the echo of pimsync's own write-back (or a change pimsync already has) and
is ignored: no re-sync, no AEM call. The author is not trusted for this: the Event Platform
names a user by uuid (`{"identifier", "type"}`), not by the Connection's user name.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from pimsync import mapping, resync
from pimsync.models import Asset, PimNotification
from pimsync.outbound import http
from pimsync.pim import connectors

log = logging.getLogger(__name__)

State = PimNotification.State
BATCH = 200
MAX_ATTEMPTS = 5
# After the PIM failed, a notification waits this long, doubled at each attempt (or the
# Retry-After, when longer): 1, 2, 4 and 8 minutes, a quarter of an hour in all.
RETRY_BASE = timedelta(minutes=1)
# A notification claimed this long ago belongs to a task that died: it is handed out again.
STUCK = timedelta(minutes=5)
KEEP = PimNotification.KEEP
DELETED_KINDS = ("product.deleted", "product.removed")


def already_synced(connector: connectors.Connector, key: str, product: dict) -> bool:
    """Whether every known asset of the product was last synced from exactly this data."""
    assets = Asset.objects.filter(product_key=key).known()
    fingerprint = mapping.data_fingerprint(connector.fingerprint_view(product))
    return assets.exists() and not assets.exclude(pim_fingerprint=fingerprint).exists()


def handle_pending() -> str:
    """Handle the waiting notifications (a batch); one re-sync job for all products they name."""
    now = timezone.now()
    stuck = PimNotification.objects.filter(status=State.PROCESSING, claimed_at__lt=now - STUCK)
    # A notification whose task died with it every time would be handed out every few minutes forever.
    stuck.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=State.FAILED, reason=f"its task stopped before finishing, {MAX_ATTEMPTS} times", handled_at=now
    )
    stuck.update(status=State.RECEIVED)
    # By status and receipt: the (status, received_at) index serves it.
    handled = (State.DONE, State.IGNORED, State.FAILED)
    PimNotification.objects.filter(status__in=handled, received_at__lt=now - KEEP).delete()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    waiting = PimNotification.objects.filter(due, status=State.RECEIVED).order_by("received_at")
    claimed = [row for row in waiting[:BATCH] if _claim(row, now)]
    if not claimed:
        return "no PIM notification waiting"
    try:
        connector = connectors.connector()
    except connectors.ConfigurationError as exc:
        _finish(claimed, State.FAILED, str(exc))
        return f"{len(claimed)} notification(s) failed: {exc}"
    to_resync = {}
    for row in claimed:
        key = _handle(connector, row)
        if key:
            to_resync.setdefault(key, row)
    if to_resync:
        _resync(connector, to_resync)
    return f"handled {len(claimed)} PIM notification(s); {len(to_resync)} product(s) to re-sync"


def _claim(row: PimNotification, now) -> bool:
    return bool(
        PimNotification.objects.filter(pk=row.pk, status=State.RECEIVED).update(
            status=State.PROCESSING, claimed_at=now, attempts=F("attempts") + 1
        )
    )


def _finish(rows: list[PimNotification], status: str, reason: str) -> None:
    PimNotification.objects.filter(pk__in=[row.pk for row in rows], status=State.PROCESSING).update(
        status=status, reason=reason[:255], handled_at=timezone.now()
    )


def _handle(connector: connectors.Connector, row: PimNotification) -> str:
    """The product key to re-sync for this notification, or "" (the row then says why not)."""
    try:
        key, why_not = _decide(connector, row)
    except connectors.ConfigurationError as exc:
        _finish([row], State.FAILED, f"cannot read the product: {exc}")
        return ""
    except http.HttpError as exc:
        _failed_call(row, exc)
        return ""
    except DatabaseError:
        raise  # not this notification's fault: the batch is handed out again once the database is back
    except Exception as exc:
        # One notification the code cannot handle (a product of an odd shape, a bug) fails alone;
        # raised, it left its whole batch claimed, and the batch was handed out again every 5 minutes.
        log.exception("PIM notification %s could not be handled", row.pk)
        _finish([row], State.FAILED, f"cannot be handled: {type(exc).__name__} (see the worker's log)")
        return ""
    if why_not:
        _finish([row], State.IGNORED, why_not)
        return ""
    row.product_key = key
    return key


def _failed_call(row: PimNotification, exc: http.HttpError) -> None:
    if exc.retryable and (_slowed_down(exc) or row.attempts + 1 < MAX_ATTEMPTS):
        _later(row, exc)  # Akeneo down or asking to slow down: tried again once due
    else:
        _finish([row], State.FAILED, f"cannot read the product: {exc.message}")


def _slowed_down(exc: http.HttpError) -> bool:
    """A 429, or a call not sent while its pause runs: the notification is not at fault."""
    return exc.status == 429 or exc.error_class.endswith("_paused")


def _later(row: PimNotification, exc: http.HttpError) -> None:
    """Back to waiting until due again; waiting out a pause uses up no attempt."""
    slowed = _slowed_down(exc)
    wait = timedelta(seconds=exc.retry_after or 0)
    if not slowed:
        wait = max(wait, RETRY_BASE * 2**row.attempts)  # row.attempts: before this run's claim
    changes = {"status": State.RECEIVED, "reason": exc.message[:255], "next_attempt_at": timezone.now() + wait}
    if slowed:
        changes["attempts"] = F("attempts") - 1
    PimNotification.objects.filter(pk=row.pk, status=State.PROCESSING).update(**changes)


def _decide(connector: connectors.Connector, row: PimNotification) -> tuple[str, str]:
    """(key to re-sync, "") or ("", why not)."""
    if row.kind in DELETED_KINDS:
        # Its assets are enriched again and fail saying the product is not in the PIM any more.
        key = row.product_key or _known_key(row.product_uuid)
        return (key, "") if key else ("", "pimsync knows no asset of this deleted product (named by its uuid)")
    if row.product_key:
        product = connector.get_product(row.product_key)
    else:
        product = connector.get_product_by_uuid(row.product_uuid)
    if product is None:
        return "", "the product is no longer in the PIM"
    key = row.product_key or connector.product_key(product)
    if not key:
        return "", "the product has no identifier"
    if not Asset.objects.filter(product_key=key).known().exists():
        return "", f"pimsync knows no asset of {key}"
    if already_synced(connector, key, product):
        return (
            "",
            f"{key}: the data pimsync maps from is unchanged (pimsync's own write-back, or a change already synced)",
        )
    return key, ""


def _known_key(product_uuid: str) -> str:
    """The product key of the assets last synced from the product with this uuid ("" if none)."""
    if not product_uuid:
        return ""
    keys = Asset.objects.filter(pim_product_uuid=product_uuid).exclude(product_key="")
    return keys.values_list("product_key", flat=True).first() or ""


def _resync(connector: connectors.Connector, rows: dict[str, PimNotification]) -> None:
    first = next(iter(rows.values()))
    why = f"{connector.label} {first.kind}" + (f" by {first.author}" if first.author else "")
    if len(rows) > 1:
        why += f" and {len(rows) - 1} more notification(s)"
    job = resync.pim_changed(sorted(rows), why=why)
    reason = f"re-sync job {job.pk}" if job else "pimsync knows no asset of this product"
    for key, row in rows.items():
        PimNotification.objects.filter(pk=row.pk).update(product_key=key[:255])
    _finish(list(rows.values()), State.DONE if job else State.IGNORED, reason)
