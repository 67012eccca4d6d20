"""The mapping preview: what the rules would write for a product or a stored event, never writing.

It reads the PIM and the asset's current metadata through the same clients as the worker and
plans with the same `mapping.plan`, so the preview shows exactly the patch the worker would send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pimsync import mapping
from pimsync.adobe import aem
from pimsync.models import Asset, Event, MappingConfig, MappingRule
from pimsync.outbound import http
from pimsync.pim import connectors


@dataclass
class PreviewResult:
    key: str = ""
    event: Event | None = None
    asset: mapping.AssetRef | None = None
    product: dict | None = None
    plan: mapping.Plan | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _find_event(reference: str) -> Event | None:
    lookup = Event.objects.filter(event_id=reference)
    # `isdigit` is also true of "²", which int() refuses; ids have at most 19 digits.
    if reference.isascii() and reference.isdigit() and len(reference) <= 18:
        lookup = lookup | Event.objects.filter(pk=int(reference))
    return lookup.first()


def preview(config: MappingConfig, rules: list[MappingRule], *, key: str = "", event_ref: str = "") -> PreviewResult:
    """What `rules` would write for the product `key` or the stored event `event_ref`; writes nothing."""
    result = PreviewResult()
    if not _find_asset(result, key, event_ref):
        return result
    metadata = _fetch(result, config, key)
    if result.problems:
        return result
    if result.product is None:
        result.problems.append(f"Product {result.key!r} is not in the PIM.")
        return result
    asset = result.asset
    if asset is None:
        asset = mapping.AssetRef(asset_id="", path="", name="", mime_type="")
        result.notes.append(
            "No stored event for this product key: path and type conditions cannot match, "
            "and the patch is shown against empty metadata."
        )
    # What pimsync wrote to this asset before: a property no rule yields any more shows as removed.
    written = Asset.objects.filter(pk=asset.asset_id).values_list("last_written", flat=True).first() or {}
    try:
        result.plan = mapping.plan(
            asset,
            result.key,
            result.product,
            metadata or {},
            rules,
            last_written=written,
            on_unmapped=config.on_unmapped,
        )
    except mapping.MappingError as exc:
        result.problems.append(str(exc))
    return result


def _find_asset(result: PreviewResult, key: str, event_ref: str) -> bool:
    """Set the event and asset to preview against; False (with a problem noted) when there is none to use."""
    if key:
        # A typed key goes to the PIM as it is: refuse what is not one path segment first.
        try:
            mapping.check_product_key(key)
        except mapping.MappingError as exc:
            result.problems.append(str(exc))
            return False
    if event_ref:
        result.event = _find_event(event_ref)
        if result.event is None:
            result.problems.append(f"No stored event has the id {event_ref!r}.")
            return False
    elif key:
        # Conditions on path and type need an asset: use the newest event with this key, if any.
        result.event = Event.objects.filter(product_key=key).exclude(asset_id="").order_by("-received_at").first()
    if result.event is not None:
        result.asset = result.event.asset
    return True


def _fetch(result: PreviewResult, config: MappingConfig, key: str) -> dict | None:
    """Read the asset's metadata (when there is an asset) and the product, as the worker would.

    Sets the key and product on `result`, or notes a problem; returns the metadata."""
    metadata = None
    try:
        if result.asset is not None:
            metadata = aem.get_metadata(result.asset.asset_id).values
        result.key = key or mapping.product_key(result.asset, config, metadata)
        result.product = connectors.connector().get_product(result.key)
    except (mapping.MappingError, connectors.ConfigurationError) as exc:
        result.problems.append(str(exc))
    except http.HttpError as exc:
        result.problems.append(exc.message)
    return metadata
