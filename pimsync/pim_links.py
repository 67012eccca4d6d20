"""The write-back: a PIM text attribute (PIM_ASSET_LINK_ATTRIBUTE) that lists, one per line, the
AEM asset-details links of every known, non-deleted asset of the product.

Written after an enrichment wrote (or found in step) an asset of the product, and after an asset
was deleted in AEM, on the product read in the same step and only when the list differs from
what the product holds: a PATCH on a product pimsync did not just read could create it (Akeneo's
PATCH creates missing products), and an unneeded PATCH would come back as a change notification.

A refusal (422: no such attribute, not a text attribute) or an outage never fails the AEM side,
which already succeeded: the attempt says what happened, and the list is written again the next
time an asset of the product is enriched.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from pimsync.clients import http, pim
from pimsync.models import Asset, AssetRef, SyncState, aem_asset_url

log = logging.getLogger(__name__)


def enabled(connector: pim.Connector) -> bool:
    return bool(settings.PIM_ASSET_LINK_ATTRIBUTE) and connector.writes_back


def links(product_key: str, current: AssetRef | None = None) -> str:
    """The product's links, sorted and deduplicated, one per line (`current`: an asset being
    enriched now, whose row may not name its path or product yet)."""
    assets = Asset.objects.filter(product_key=product_key).exclude(state=SyncState.DELETED)
    if current is not None:
        assets = assets.exclude(asset_id=current.asset_id)
    paths = set(assets.exclude(path="").values_list("path", flat=True)[:1000])
    if current is not None and current.path:
        paths.add(current.path)
    return "\n".join(sorted({aem_asset_url(path) for path in paths} - {""}))


def write(connector: pim.Connector, product_key: str, product: dict, current: AssetRef | None = None) -> str:
    """Bring the product's link attribute in line; a note for the attempt ("" when nothing to say)."""
    attribute = settings.PIM_ASSET_LINK_ATTRIBUTE
    wanted = links(product_key, current)
    if connector.text_value(product, attribute) == wanted:
        return ""
    count = len(wanted.splitlines())
    try:
        connector.write_text(product, attribute, wanted)
    except pim.ConfigurationError as exc:
        return f"asset links not written to {connector.label}: {exc}"
    except http.HttpError as exc:
        log.warning("asset links of %s not written: %s", product_key, exc.message)
        return f"asset links not written to {connector.label}: {_refusal(exc, attribute)}"
    return f"{count} asset link{'s' if count != 1 else ''} written to {connector.label} ({attribute})"


def _refusal(exc: http.HttpError, attribute: str) -> str:
    """Akeneo's validation message for a 422 (the attribute does not exist, is not text…)."""
    if exc.status == 422:
        try:
            errors = json.loads(exc.body).get("errors") or []
            said = "; ".join(str(e.get("message", ""))[:200] for e in errors[:3] if isinstance(e, dict))
        except (ValueError, AttributeError):
            said = ""
        return f"{attribute} was refused (422{': ' + said if said else ''}); check PIM_ASSET_LINK_ATTRIBUTE"
    return f"{exc.message}; written again at the next enrichment of this product"


def after_deletion(product_key: str) -> str:
    """An asset of the product was deleted in AEM: read the product and drop its link."""
    if not product_key or not settings.PIM_ASSET_LINK_ATTRIBUTE:
        return ""
    try:
        connector = pim.connector()
        if not enabled(connector):
            return ""
        product = connector.get_product(product_key)
    except (http.HttpError, pim.ConfigurationError) as exc:
        return f"asset links not updated: {getattr(exc, 'message', exc)}"
    if product is None:
        return ""
    return write(connector, product_key, product)
