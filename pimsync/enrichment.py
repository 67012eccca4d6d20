"""One enrichment: product key → PIM product → mapping → AEM metadata GET/PATCH.

`enrich()` never raises for an expected failure; it returns a Result that says which status the
events get and why, with everything the dashboard shows for the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from pimsync import failures, mapping, read_ahead
from pimsync.adobe import aem
from pimsync.models import Asset, Event, MappingConfig, Status
from pimsync.outbound import http
from pimsync.pim import connectors, writeback

# A 412 means someone wrote between our GET and PATCH: read again and recompute, a few times.
MAX_CONFLICT_ROUNDS = 3


@dataclass
class Result:
    """What one enrichment did: the events' status and why, and what the attempt row records."""

    status: str
    reason: str = ""
    error_class: str = ""
    # The technical message behind a plain reason (`pimsync.failures`): the attempt keeps it.
    detail: str = ""
    retry_after: float | None = None
    product_key: str = ""
    product_uuid: str = ""  # the PIM's own id of the product, when it has one
    pim_data: dict | None = None
    changes: list = field(default_factory=list)
    written: dict = field(default_factory=dict)
    # Properties pimsync wrote that no rule yields any more, now off the asset (`mapping.Plan.unmapped`).
    unmapped: list = field(default_factory=list)
    aem_status: int | None = None
    aem_body: str = ""
    # What the values were computed from (set once the product was read): the asset's record of
    # its last good sync, to tell later whether the PIM data or the mapping changed since.
    pim_fingerprint: str = ""
    mapping_fingerprint: str = ""
    # The mapping's generation when the rules this run applied were read (`mapping.current_with_generation`).
    mapping_generation: int = 0


def echoes_last_write(event: Event, state: Asset) -> bool:
    """A metadata change whose changed properties (`event:created`, the keys of `event:updated`) all
    hold what pimsync last wrote: the echo of its own write, whoever AEM names as the actor."""
    metadata = (event.payload.get("data") or {}).get("assetMetadata") or {}
    if not isinstance(metadata, dict) or not state.last_written:
        return False
    created = metadata.get("event:created") or []
    updated = metadata.get("event:updated") or {}
    changed = set(created if isinstance(created, list) else []) | set(updated if isinstance(updated, dict) else [])
    if not changed:
        return False
    written = {path.lstrip("/"): value for path, value in state.last_written.items()}
    return all(name in written and metadata.get(name, written[name]) == written[name] for name in changed)


def _failure(exc: http.HttpError, outcome: Result) -> Result:
    outcome.status = Status.RETRYING if exc.retryable else Status.FAILED
    outcome.reason = failures.reason(exc.error_class, exc.message)
    outcome.detail = exc.message
    outcome.error_class = exc.error_class
    outcome.retry_after = exc.retry_after
    if exc.error_class.startswith("aem"):
        outcome.aem_status, outcome.aem_body = exc.status, exc.body
    return outcome


def enrich(event: Event, last_written: dict | None = None) -> Result:
    """Bring the event's asset in line with the PIM, writing only what differs. `last_written`:
    what pimsync wrote to the asset before, as the caller holding its lease read it (read here
    when not given); what no rule yields any more may have to go."""
    asset = event.asset
    if last_written is None:
        last_written = Asset.objects.filter(pk=asset.asset_id).values_list("last_written", flat=True).first()
    last_written = last_written or {}
    config, rules, generation = mapping.current_with_generation()
    outcome = Result(status=Status.FAILED, mapping_generation=generation)
    try:
        # An enrichment ends in AEM calls: while AEM asked to slow down, do not ask the PIM either.
        aem.check_not_paused()
        key, metadata = _product_key(asset, config)
        outcome.product_key = key
        connector = connectors.connector()
        # AEM's metadata is asked for while the PIM answers, on a worker's read-ahead threads
        # (pimsync.read_ahead); its answer, or its error, counts only once the product is known.
        # Only while the PIM's last answer was a product: while it fails or lacks products, a
        # read for each asset would spend AEM's rate limit on answers that are dropped.
        first_read = None
        if metadata is None:
            first_read = read_ahead.Read(
                aem.get_metadata, asset.asset_id, errors=(http.HttpError,), ahead=_pim.last_was_product
            )
        try:
            read_at = timezone.now()
            product = _pim.get_product(connector, key)
            if product is None:
                outcome.error_class = "pim_not_found"
                outcome.reason = f"product {key!r} is not in {connector.label}"
                return outcome
            outcome.pim_data = product
            outcome.product_uuid = connector.product_uuid(product)
            outcome.pim_fingerprint = mapping.data_fingerprint(connector.fingerprint_view(product))
            outcome.mapping_fingerprint = mapping.fingerprint(config, rules, asset)
            metadata = metadata or first_read()
        finally:
            if first_read is not None:
                first_read.discard()
        outcome = _write(outcome, asset, product, rules, metadata, (last_written, config.on_unmapped))
        return _write_back(connector, outcome, asset, product, read_at)
    except mapping.MappingError as exc:
        outcome.error_class, outcome.reason = "mapping", str(exc)
        return outcome
    except connectors.ConfigurationError as exc:
        outcome.error_class, outcome.reason = "config", str(exc)
        return outcome
    except http.HttpError as exc:
        return _failure(exc, outcome)


class _PimHealth:
    """Whether this process's last answer from the PIM was a product (not an error, nor a
    product it lacks)."""

    last_was_product = True

    def get_product(self, connector: connectors.Connector, key: str) -> dict | None:
        product = None
        try:
            product = connector.get_product(key)
            return product
        finally:
            self.last_was_product = product is not None


_pim = _PimHealth()


def forget() -> None:
    """Start again from a PIM whose last answer was a product (tests)."""
    _pim.last_was_product = True


def _write_back(
    connector: connectors.Connector, outcome: Result, asset: mapping.AssetRef, product: dict, read_at: datetime
) -> Result:
    """After a good write to AEM, the product's asset links in the PIM (pimsync.pim.writeback); what
    happened there is added to the reason and never changes the AEM outcome."""
    if outcome.status in (Status.SUCCEEDED, Status.UNCHANGED) and writeback.enabled(connector):
        note = writeback.write(connector, outcome.product_key, product, read_at, asset)
        if note:
            outcome.reason = f"{outcome.reason}; {note}"
    return outcome


def _product_key(asset: mapping.AssetRef, config: MappingConfig) -> tuple[str, aem.Metadata | None]:
    """The product key, and AEM's metadata when the key had to be read from it (None otherwise)."""
    metadata = None
    if config.key_from == MappingConfig.KeySource.METADATA:
        metadata = aem.get_metadata(asset.asset_id)
    return mapping.product_key(asset, config, metadata and metadata.values), metadata


def _write(
    outcome: Result,
    asset: mapping.AssetRef,
    product: dict,
    rules: list,
    metadata: aem.Metadata | None,
    unmapped: tuple[dict, str],
) -> Result:
    """Plan against AEM's current metadata and PATCH what differs; after a 412, read and plan again.
    `unmapped`: what pimsync wrote before and what the mapping does with what no rule yields now."""
    last_written, on_unmapped = unmapped
    for _round in range(MAX_CONFLICT_ROUNDS):
        metadata = metadata or aem.get_metadata(asset.asset_id)
        planned = mapping.plan(
            asset,
            outcome.product_key,
            product,
            metadata.values,
            rules,
            last_written=last_written,
            on_unmapped=on_unmapped,
        )
        outcome.changes = planned.changes
        outcome.unmapped = planned.unmapped
        if not planned.changes:
            outcome.status = Status.UNCHANGED
            outcome.reason = "AEM already holds the mapped values"
            return outcome
        try:
            response = aem.patch_metadata(asset.asset_id, aem.json_patch(planned.changes), metadata.etag)
        except http.HttpError as exc:
            if exc.status == 412:
                metadata = None  # someone else wrote first: read again, recompute
                continue
            raise
        return _written(outcome, planned, response)
    outcome.status = Status.RETRYING
    outcome.error_class = "aem_412"
    outcome.detail = f"the asset kept changing under us ({MAX_CONFLICT_ROUNDS} conflicts in a row)"
    outcome.reason = failures.reason(outcome.error_class, outcome.detail)
    outcome.aem_status = 412
    return outcome


def _written(outcome: Result, planned: mapping.Plan, response) -> Result:
    removed = sum(1 for change in planned.changes if change.get("op") == "remove")
    count = len(planned.changes) - removed
    outcome.status = Status.SUCCEEDED
    said = [f"wrote {count} propert{'y' if count == 1 else 'ies'}"] if count or not removed else []
    if removed:
        names = ", ".join(c["path"] for c in planned.changes if c.get("op") == "remove")
        said.append(f"removed {names} (no rule yields {'it' if removed == 1 else 'them'} any more)")
    outcome.reason = "; ".join(said)
    outcome.written = {change["path"]: change["new"] for change in planned.changes if change.get("op") != "remove"}
    outcome.aem_status, outcome.aem_body = response.status_code, response.text[: http.BODY_EXCERPT_CHARS]
    return outcome
