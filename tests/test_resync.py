"""Re-sync: assets known to pimsync are written again when the PIM or the mapping changed, at the
configured pace, without delaying live events, and their sync state says where they stand."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from pimsync import enrichment, mapping, pipeline, resync, worker
from pimsync.models import Asset, Event, EventType, Job, MappingRule, StaleCause, Status, SyncState
from tests.conftest import STANDARD_MAPPING, make_event, product, run_queued_tasks

pytestmark = pytest.mark.django_db


def later(seconds: float):
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


def synced(client, world, n: int, sku: str, folder: str = "/content/dam/products") -> str:
    """Upload asset `n` of product `sku` and let the worker enrich it; its asset id."""
    world.pim.products.setdefault(sku, product(sku))
    event = make_event(n, name=f"{sku}_front.png", folder=folder)
    world.aem.add_asset(event["data"]["assetId"], {"dc:format": "image/png"})
    assert world.adobe.deliver(client, event).status_code == 200
    world.drain()
    return event["data"]["assetId"]


def finish(job: Job) -> Job:
    """Run the job's steps and the worker until it ends, moving the clock past its schedule."""
    for _ in range(20):
        run_queued_tasks()
        resync.run(job.pk)
        job.refresh_from_db()
        if not job.is_active:
            return job
        with later(resync.HORIZON):
            run_queued_tasks()
            worker.drain()
    raise AssertionError(f"job {job.pk} did not end: {resync.summary(job)}")


def test_an_enriched_asset_is_in_step_with_what_it_was_computed_from(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    asset = Asset.objects.get(pk=asset_id)
    assert asset.state == SyncState.IN_STEP
    assert (asset.path, asset.name, asset.product_key) == (
        "/content/dam/products/SKU-1_front.png",
        "SKU-1_front.png",
        "SKU-1",
    )
    assert asset.last_outcome == Status.SUCCEEDED and asset.last_synced_at is not None
    assert asset.pim_fingerprint == mapping.data_fingerprint(product("SKU-1"))
    assert len(asset.mapping_fingerprint) == 64
    assert asset.last_written["dc:title"] == "Trail backpack 35L"


def test_a_pim_change_marks_the_products_assets_stale_and_the_resync_writes_them(client, world):
    first, second = synced(client, world, 1, "SKU-1"), synced(client, world, 2, "SKU-1")
    other = synced(client, world, 3, "SKU-2")
    world.aem.patches.clear()
    world.pim.products["SKU-1"] = product("SKU-1", name="Trail backpack 40L")

    job = resync.pim_changed(["SKU-1"], why="test")

    states = dict(Asset.objects.values_list("asset_id", "state"))
    assert states == {first: SyncState.STALE, second: SyncState.STALE, other: SyncState.IN_STEP}
    assert Asset.objects.get(pk=first).stale_cause == StaleCause.PIM
    assert (job.kind, job.total, job.why) == (Job.Kind.RESYNC, 2, "test")
    job = finish(job)
    assert job.status == Job.State.FINISHED
    assert (job.done, job.succeeded, job.unchanged, job.failed) == (2, 2, 0, 0)
    assert sorted(p["asset_id"] for p in world.aem.patches) == sorted([first, second])
    replaced = [{"op": "replace", "path": "/dc:title", "value": "Trail backpack 40L"}]  # AEM held a title
    assert all(p["operations"] == replaced for p in world.aem.patches)
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}
    events = Event.objects.filter(job=job)
    assert {(e.type, e.arrived_by, e.priority) for e in events} == {(EventType.RESYNC, "resync", 1)}


def test_a_resync_of_assets_that_hold_the_values_already_writes_nothing(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    world.aem.patches.clear()
    job = finish(resync.start(None, {"asset_ids": [asset_id]}, why="check"))
    assert (job.done, job.succeeded, job.unchanged) == (1, 0, 1)
    assert world.aem.patches == []
    assert Asset.objects.get(pk=asset_id).state == SyncState.IN_STEP


def test_a_pim_change_for_unknown_products_starts_nothing(client, world):
    synced(client, world, 1, "SKU-1")
    assert resync.pim_changed(["SKU-404"], why="test") is None
    assert not Job.objects.exists()


def test_events_are_scheduled_at_the_configured_rate_and_never_twice(client, world, settings):
    settings.PIMSYNC_RESYNC_RATE = 2
    for n in range(5):
        Asset.objects.create(asset_id=f"urn:aaid:aem:{n}", path=f"/content/dam/p/SKU-{n}.png", name=f"SKU-{n}.png")
    job = resync.start(None, {"all": True}, why="pace")
    resync.run(job.pk)
    resync.run(job.pk)  # a second run (a task queued twice, the sweeper) schedules nothing new
    due = sorted(Event.objects.filter(job=job).values_list("next_attempt_at", flat=True))
    assert len(due) == 5
    assert [round((b - a).total_seconds(), 3) for a, b in zip(due, due[1:], strict=False)] == [0.5] * 4


def test_a_large_resync_is_scheduled_a_horizon_at_a_time(settings, db):
    settings.PIMSYNC_RESYNC_RATE = 1
    Asset.objects.bulk_create(
        Asset(asset_id=f"urn:aaid:aem:{n:04d}", path=f"/content/dam/p/{n}.png") for n in range(200)
    )
    job = resync.start(None, {"all": True}, why="big")
    resync.run(job.pk)
    assert Event.objects.filter(job=job).count() == resync.HORIZON
    resync.run(job.pk)  # nothing due yet and a full horizon waiting: no more
    assert Event.objects.filter(job=job).count() == resync.HORIZON
    job.refresh_from_db()
    assert job.status == Job.State.RUNNING and job.total == 200


def test_workers_take_live_events_before_a_resyncs(client, world):
    for n in range(30):
        Asset.objects.create(asset_id=f"urn:aaid:aem:r{n:02d}", path=f"/content/dam/p/SKU-{n}.png")
    job = resync.start(None, {"all": True}, why="fairness")
    resync.run(job.pk)
    Event.objects.filter(job=job).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    live = make_event(99)
    world.adobe.deliver(client, live)
    assert worker.candidates(1, set()) == [live["data"]["assetId"]]
    assert live["data"]["assetId"] in worker.candidates(5, set())


def test_cancelling_a_resync_ignores_its_waiting_events(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    world.aem.patches.clear()
    job = resync.start(None, {"asset_ids": [asset_id]}, why="oops")
    resync.run(job.pk)
    job.refresh_from_db()
    assert job.cancel()
    with later(resync.HORIZON):
        worker.drain()
    assert world.aem.patches == []
    [event] = Event.objects.filter(job=job)
    assert (event.status, event.reason) == (Status.IGNORED, "its re-sync was cancelled")


def test_a_mapping_change_marks_only_the_assets_whose_rules_changed(client, world):
    products = synced(client, world, 1, "SKU-1", folder="/content/dam/products")
    press = synced(client, world, 2, "SKU-2", folder="/content/dam/press")
    rules = [
        *STANDARD_MAPPING["rules"],
        {"pim_field": "SupplierName", "metadata_path": "pim:brand", "path_glob": "/content/dam/press/*"},
    ]
    mapping.import_config({**STANDARD_MAPPING, "rules": rules})
    job = resync.mapping_changed(None)
    run_queued_tasks()
    job.refresh_from_db()
    assert (job.status, job.done, job.succeeded) == (Job.State.FINISHED, 2, 1)
    assert Asset.objects.get(pk=press).state == SyncState.STALE
    assert Asset.objects.get(pk=press).stale_cause == StaleCause.MAPPING
    assert Asset.objects.get(pk=products).state == SyncState.IN_STEP
    assert resync.affected_count() == 1

    world.aem.patches.clear()
    finish(resync.start(None, {"mapping_affected": True}, why="mapping changed"))
    [patch] = world.aem.patches
    assert patch["asset_id"] == press and patch["operations"] == [
        {"op": "add", "path": "/pim:brand", "value": "Nordwand Outdoor"}
    ]
    assert resync.affected_count() == 0


def test_a_mapping_change_undone_puts_its_assets_back_in_step(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    MappingRule.objects.filter(metadata_path="dc:title").update(metadata_path="dc:description")
    mapping.forget()
    resync.mapping_changed(None)
    run_queued_tasks()
    assert Asset.objects.get(pk=asset_id).state == SyncState.STALE
    MappingRule.objects.filter(metadata_path="dc:description").update(metadata_path="dc:title")
    resync.mapping_changed(None)
    run_queued_tasks()
    assert Asset.objects.get(pk=asset_id).state == SyncState.IN_STEP


def test_a_change_noticed_during_an_enrichment_leaves_the_asset_stale(client, world, monkeypatch):
    asset_id = synced(client, world, 1, "SKU-1")
    real_enrich = enrichment.enrich

    def enrich_while_the_pim_changes(event, *args):
        result = real_enrich(event, *args)
        Asset.objects.filter(pk=asset_id).stale(StaleCause.PIM, "changed meanwhile")
        return result

    monkeypatch.setattr(enrichment, "enrich", enrich_while_the_pim_changes)
    job = resync.start(None, {"asset_ids": [asset_id]}, why="race")
    resync.run(job.pk)
    with later(5):
        pipeline.process_asset(asset_id)
    asset = Asset.objects.get(pk=asset_id)
    assert asset.state == SyncState.STALE and asset.state_reason == "changed meanwhile"


def test_failing_and_deleted_assets_say_so(client, world):
    world.pim.products["SKU-1"] = product("SKU-1")
    event = world.upload(client, 1, sku="SKU-404")
    world.adobe.deliver(client, event)
    world.drain()
    asset = Asset.objects.get(pk=event["data"]["assetId"])
    assert asset.state == SyncState.FAILING and "not in the PIM" in asset.state_reason

    deleted = make_event(2, type="aem.assets.asset.deleted", asset_id=event["data"]["assetId"])
    world.adobe.deliver(client, deleted)
    world.drain()
    asset.refresh_from_db()
    assert asset.state == SyncState.DELETED
    assert not resync.select({"all": True}).exists()


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"all": True, "state": "stale"},
        {"state": "bogus"},
        {"path_prefix": "content"},
        {"asset_ids": []},
        {"product_keys": ["x"] * 1001},
        {"all": "yes"},
        {"nope": 1},
    ],
)
def test_a_selection_pimsync_does_not_understand_is_refused(spec, db):
    with pytest.raises(resync.SelectionError):
        resync.start(None, spec, why="bad")
    assert not Job.objects.exists()


def test_a_resync_is_finished_as_soon_as_its_last_event_ends(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    job = resync.start(None, {"asset_ids": [asset_id]}, why="now")
    run_queued_tasks()  # its first step schedules the event
    with later(1):
        worker.drain()
        run_queued_tasks()  # the step queued by the asset's last event, not the sweeper's minute
    job.refresh_from_db()
    assert (job.status, job.done, job.unchanged) == (Job.State.FINISHED, 1, 1)


def test_a_resync_uses_where_the_asset_is_now_not_where_it_was_when_scheduled(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    job = resync.start(None, {"asset_ids": [asset_id]}, why="moved meanwhile")
    resync.run(job.pk)  # its event copies the path as it is now
    moved = "/content/dam/archive/SKU-1_front.png"
    Asset.objects.filter(pk=asset_id).update(path=moved)  # a later AEM event recorded the move
    with later(2):
        worker.drain()
    assert Asset.objects.get(pk=asset_id).path == moved


def test_rules_read_before_a_mapping_change_cannot_make_an_asset_in_step(client, world, monkeypatch):
    asset_id = synced(client, world, 1, "SKU-1")
    real_enrich = enrichment.enrich

    def enrich_while_the_mapping_is_saved(event, *args):
        result = real_enrich(event, *args)  # with the rules as they were
        resync.mapping_changed(None)  # saved meanwhile; the check may have passed this asset already
        return result

    monkeypatch.setattr(enrichment, "enrich", enrich_while_the_mapping_is_saved)
    job = resync.start(None, {"asset_ids": [asset_id]}, why="race")
    resync.run(job.pk)
    with later(2):
        pipeline.process_asset(asset_id)
    asset = Asset.objects.get(pk=asset_id)
    assert (asset.state, asset.stale_cause) == (SyncState.STALE, StaleCause.MAPPING)
    assert resync.affected_count() == 1


def test_an_event_cancelled_before_its_worker_claims_it_is_not_enriched(client, world):
    asset_id = synced(client, world, 1, "SKU-1")
    world.aem.patches.clear()
    calls = len(world.aem.calls)
    job = resync.start(None, {"asset_ids": [asset_id]}, why="cancelled in time")
    resync.run(job.pk)
    Job.objects.get(pk=job.pk).cancel()
    with later(2):
        assert pipeline.process_asset(asset_id) == "nothing pending"
    [event] = Event.objects.filter(job=job)
    assert (event.status, event.reason) == (Status.IGNORED, "its re-sync was cancelled")
    assert len(world.aem.calls) == calls


def test_an_event_cancelled_while_its_worker_claims_it_the_long_way_is_not_enriched(client, world, monkeypatch):
    asset_id = synced(client, world, 1, "SKU-1")
    world.aem.patches.clear()
    calls = len(world.aem.calls)
    job = resync.start(None, {"asset_ids": [asset_id]}, why="cancelled in time")
    resync.run(job.pk)
    # The one-statement claim leaves no moment between reading and updating; the longer way it
    # falls back to (when it claims nothing, to fail spent events) reads, then updates.
    monkeypatch.setattr(pipeline, "_claim_with_budget_left", lambda asset_id, now: [])
    real_budget_used = pipeline._budget_used

    def cancelled_between_select_and_update(event):
        Job.objects.get(pk=job.pk).cancel()  # support clicks Cancel at this very moment
        return real_budget_used(event)

    monkeypatch.setattr(pipeline, "_budget_used", cancelled_between_select_and_update)
    with later(2):
        assert pipeline.process_asset(asset_id) == "nothing pending"
    [event] = Event.objects.filter(job=job)
    assert (event.status, event.reason) == (Status.IGNORED, "its re-sync was cancelled")
    assert len(world.aem.calls) == calls


def test_the_rate_holds_for_all_resyncs_together(settings, db):
    settings.PIMSYNC_RESYNC_RATE = 1
    Asset.objects.bulk_create(
        Asset(asset_id=f"urn:aaid:aem:{n:03d}", path=f"/content/dam/p/{n}.png") for n in range(40)
    )
    first = resync.start(None, {"path_prefix": "/content/dam/p/1"}, why="one")
    second = resync.start(None, {"path_prefix": "/content/dam/p/2"}, why="another")
    resync.run(first.pk)
    resync.run(second.pk)
    due = sorted(Event.objects.values_list("next_attempt_at", flat=True))
    assert len(due) == 22  # 11 + 11 assets, well inside the horizon
    assert [round((b - a).total_seconds(), 3) for a, b in zip(due, due[1:], strict=False)] == [1.0] * 21


def test_a_rate_under_one_asset_per_horizon_still_moves_on(settings, db):
    settings.PIMSYNC_RESYNC_RATE = 0.01
    Asset.objects.create(asset_id="urn:aaid:aem:1", path="/content/dam/p/1.png")
    job = resync.start(None, {"all": True}, why="slow")
    resync.run(job.pk)
    assert Event.objects.filter(job=job).count() == 1
