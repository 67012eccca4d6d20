"""Upgrading a database from before Assets existed: the per-asset lease rows become assets,
described from their events, with their leases and last written values kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("pimsync", "0007_alerts")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def test_known_assets_are_described_from_their_events():
    old = migrate(BEFORE)
    AssetState, Event = old.get_model("pimsync", "AssetState"), old.get_model("pimsync", "Event")
    now = timezone.now()

    def event(n, asset, status, *, minutes, key="", type="aem.assets.asset.processing_completed", path=None):
        Event.objects.create(
            event_id=f"e{n}", type=type, source="s", payload={}, asset_id=asset, status=status,
            received_at=now - timedelta(minutes=minutes), finished_at=now - timedelta(minutes=minutes - 1),
            asset_path=path or f"/content/dam/p/{asset}.png", asset_name=f"{asset}.png", product_key=key,
            reason="product 'X' is not in the PIM" if status == "failed" else "",
        )  # fmt: skip

    AssetState.objects.create(asset_id="written", last_written={"dc:title": "T"}, lease_token="t")
    event(1, "written", "succeeded", minutes=30, key="SKU-1", path="/content/dam/old/written.png")
    event(2, "written", "ignored", minutes=20, type="aem.assets.asset.metadata_updated")  # its echo: no key
    AssetState.objects.create(asset_id="broken")
    event(3, "broken", "succeeded", minutes=30, key="SKU-2")
    event(4, "broken", "failed", minutes=10, key="SKU-2")
    AssetState.objects.create(asset_id="gone", deleted_at=now)
    event(5, "gone", "succeeded", minutes=30, key="SKU-3")
    AssetState.objects.create(asset_id="waiting")
    event(6, "waiting", "received", minutes=1)

    new = migrate(latest())
    Asset = new.get_model("pimsync", "Asset")
    assets = {a.asset_id: a for a in Asset.objects.all()}
    written = assets["written"]
    assert (written.state, written.product_key, written.path) == ("in_step", "SKU-1", "/content/dam/p/written.png")
    assert written.last_written == {"dc:title": "T"} and written.lease_token == "t"
    assert written.last_synced_at == now - timedelta(minutes=29)
    assert written.first_seen_at == now - timedelta(minutes=30)
    assert (assets["broken"].state, assets["broken"].state_reason) == ("failing", "product 'X' is not in the PIM")
    assert assets["gone"].state == "deleted"
    assert (assets["waiting"].state, assets["waiting"].product_key) == ("never_synced", "")
