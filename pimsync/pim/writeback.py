"""The write-back: a PIM text attribute (PIM_ASSET_LINK_ATTRIBUTE) that lists, one per line, the
AEM asset-details links of every known, non-deleted asset of the product.

Written after an enrichment wrote (or found in step) an asset of the product, and after an asset
was deleted in AEM, on the product read in the same step and only when the list differs from
what the product holds: a PATCH on a product pimsync did not just read could create it (Akeneo's
PATCH creates missing products), and an unneeded PATCH would come back as a change notification.

Two assets of one product enriched at once must not each write a list without the other: the
asset being written is recorded on its row first, then one enrichment at a time (a lease on the
product's `ProductLinks` row) works out the list from the rows and writes it, reading the product
again when pimsync wrote its links after it was read.

A refusal (422: no such attribute, not a text attribute) or an outage never fails the AEM side,
which already succeeded: the attempt says what happened, and the list is written again the next
time an asset of the product is enriched.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from pimsync.models import Asset, AssetRef, ProductLinks, aem_asset_url
from pimsync.outbound import http
from pimsync.pim import connectors

log = logging.getLogger(__name__)

MAX_LINKS = 1000


def enabled(connector: connectors.Connector) -> bool:
    return bool(settings.PIM_ASSET_LINK_ATTRIBUTE) and connector.writes_back


def links(product_key: str, current: AssetRef | None = None) -> str:
    """The product's links, sorted and deduplicated, one per line (`current`: an asset being
    enriched now, whose row may not name its path or product yet)."""
    assets = Asset.objects.filter(product_key=product_key).known()
    if current is not None:
        assets = assets.exclude(asset_id=current.asset_id)
    paths = set(assets.exclude(path="").order_by("path").values_list("path", flat=True)[:MAX_LINKS])
    if current is not None and current.path:
        paths.add(current.path)
    return "\n".join(sorted({aem_asset_url(path) for path in paths} - {""}))


def write(
    connector: connectors.Connector, product_key: str, product: dict, read_at: datetime, current: AssetRef | None = None
) -> str:
    """Bring the product's link attribute in line; a note for the attempt ("" when nothing to say).
    `read_at`: when `product` was read."""
    if current is not None and current.path:
        # Recorded before the lease is asked for, so whoever holds it lists this asset too.
        Asset.objects.filter(pk=current.asset_id).known().update(path=current.path, product_key=product_key)
    token = _lock(product_key)
    if token is None:
        return f"asset links not written to {connector.label}: another enrichment of {product_key} kept them locked"
    written = False
    try:
        written, note = _write_locked(connector, product_key, product, read_at, current)
    finally:
        ProductLinks.release(product_key, token, **({"written_at": timezone.now()} if written else {}))
    return note


def _lease() -> timedelta:
    """Long enough for a GET and a PATCH, each within the HTTP deadline. A waiting enrichment waits
    out a whole lease, so the lease of one that died is taken over rather than skipped; the whole
    enrichment still ends within the task timeout."""
    return timedelta(seconds=2 * settings.PIMSYNC_HTTP_TIMEOUT_SECONDS + 5)


def _lock(product_key: str) -> str | None:
    lease = _lease()
    return ProductLinks.acquire(product_key, lease, wait=lease.total_seconds())


def _write_locked(connector, product_key: str, product: dict, read_at: datetime, current) -> tuple[bool, str]:
    attribute = settings.PIM_ASSET_LINK_ATTRIBUTE
    last = ProductLinks.objects.values_list("written_at", flat=True).get(product_key=product_key)
    if last is not None and last >= read_at:  # hosts' clocks in step, as the asset leases assume
        try:
            product = connector.get_product(product_key)  # the links changed since it was read
        except (http.HttpError, connectors.ConfigurationError) as exc:
            return False, f"asset links not written to {connector.label}: {getattr(exc, 'message', exc)}"
        if product is None:
            return False, ""
    wanted = links(product_key, current)
    if connector.text_value(product, attribute) == wanted:
        return False, ""
    count = len(wanted.splitlines())
    try:
        connector.write_text(product, attribute, wanted)
    except connectors.ConfigurationError as exc:
        return False, f"asset links not written to {connector.label}: {exc}"
    except http.HttpError as exc:
        log.warning("asset links of %s not written: %s", product_key, exc.message)
        return False, f"asset links not written to {connector.label}: {_refusal(connector, exc, attribute)}"
    return True, f"{count} asset link{'s' if count != 1 else ''} written to {connector.label} ({attribute})"


def _refusal(connector: connectors.Connector, exc: http.HttpError, attribute: str) -> str:
    """The PIM's validation message for a 422 (the attribute does not exist, is not text…)."""
    if exc.status == 422:
        said = connector.refusal(exc)
        return f"{attribute} was refused (422{': ' + said if said else ''}); check PIM_ASSET_LINK_ATTRIBUTE"
    return f"{exc.message}; written again at the next enrichment of this product"


def after_deletion(product_key: str) -> str:
    """An asset of the product was deleted in AEM: read the product and drop its link."""
    if not product_key or not settings.PIM_ASSET_LINK_ATTRIBUTE:
        return ""
    try:
        connector = connectors.connector()
        if not enabled(connector):
            return ""
        read_at = timezone.now()
        product = connector.get_product(product_key)
        if product is None:
            return ""
        return write(connector, product_key, product, read_at)
    except (http.HttpError, connectors.ConfigurationError) as exc:
        return f"asset links not updated: {getattr(exc, 'message', exc)}"
