"""From a signed webhook POST to the PATCH AEM receives, and every way it can go wrong."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pimsync import enrichment, pipeline
from pimsync.models import AccessToken, Asset, AssetRef, Attempt, Event, Status
from tests.conftest import make_event, product

pytestmark = pytest.mark.django_db


def later(seconds: float):
    """Travel forward in time (the worker's backoff uses the real clock)."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


def test_a_signed_upload_event_ends_in_the_mapped_patch(client, world):
    world.pim.products["SKU-100234"] = product("SKU-100234")
    event = world.upload(client, 1, sku="SKU-100234")
    asset_id = event["data"]["assetId"]
    etag = world.aem.etag(asset_id)

    assert world.adobe.deliver(client, event).status_code == 200
    world.drain()

    [patch] = world.aem.patches
    assert patch["asset_id"] == asset_id
    assert patch["if_match"] == etag
    assert patch["headers"]["Content-Type"] == "application/json-patch+json"
    assert patch["headers"]["X-Api-Key"] == "0123456789abcdef0123456789abcdef"
    assert patch["headers"]["X-Adobe-Accept-Experimental"] == "1"
    assert patch["headers"]["Authorization"] == "Bearer token-1"
    # RFC 6901 pointers, as Adobe's current samples and metadata guide send them (pimsync sent the
    # bare `dc:title` of the 2024 tutorial before: not a JSON Pointer).
    assert patch["operations"] == [
        {"op": "add", "path": "/wknd-skuid", "value": "SKU-100234"},
        {"op": "add", "path": "/wknd-suppliername", "value": "NORDWAND OUTDOOR"},
        {"op": "add", "path": "/dc:title", "value": "Trail backpack 35L"},
        {"op": "add", "path": "/pim:colours", "value": "black, red"},
    ]
    stored = Event.objects.get()
    assert stored.status == Status.SUCCEEDED
    assert stored.product_key == "SKU-100234"
    [attempt] = stored.attempt_set.all()
    assert attempt.outcome == Status.SUCCEEDED
    assert attempt.pim_data["SKUID"] == "SKU-100234"
    assert {"path": "dc:title", "old": None, "new": "Trail backpack 35L", "exists": False} in attempt.changes
    assert attempt.aem_status == 200


def test_a_property_aem_already_holds_is_replaced_and_a_new_one_added(client, world):
    """Adobe's metadata guide: `add` fails on an existing property and `replace` on a missing one,
    and one failed operation fails the whole PATCH (the AEM stand-in refuses as it describes)."""
    world.pim.products["SKU-100234"] = product("SKU-100234")
    event = world.upload(client, 1, sku="SKU-100234")
    world.aem.write(event["data"]["assetId"], {"dc:title": "Old title", "dc:format": "image/png"})

    world.adobe.deliver(client, event)
    world.drain()

    assert world.aem.refused_patches == []
    [patch] = world.aem.patches
    ops = {op["path"]: op["op"] for op in patch["operations"]}
    assert ops["/dc:title"] == "replace"
    assert ops["/wknd-skuid"] == "add"
    assert world.aem.assets[event["data"]["assetId"]]["dc:title"] == "Trail backpack 35L"
    assert Event.objects.get().status == Status.SUCCEEDED


@pytest.mark.parametrize(
    ("style", "path"),
    [("pointer", "/dc:title"), ("asset-metadata", "/assetMetadata/dc:title"), ("bare", "dc:title")],
)
def test_aem_patch_path_style_names_the_property_as_that_aem_wants(client, world, settings, style, path):
    settings.AEM_PATCH_PATH_STYLE = style
    world.aem.path_styles = {style}  # an AEM that resolves this form only
    world.pim.products["SKU-100234"] = product("SKU-100234")
    event = world.upload(client, 1, sku="SKU-100234")

    world.adobe.deliver(client, event)
    world.drain()

    [patch] = world.aem.patches
    assert {"op": "add", "path": path, "value": "Trail backpack 35L"} in patch["operations"]
    assert Event.objects.get().status == Status.SUCCEEDED


def test_an_aem_that_refuses_the_path_form_fails_the_event_with_its_reason(client, world, settings):
    settings.AEM_PATCH_PATH_STYLE = "bare"  # the 2024 tutorial's form, which this AEM does not resolve
    world.pim.products["SKU-100234"] = product("SKU-100234")
    world.adobe.deliver(client, world.upload(client, 1, sku="SKU-100234"))
    world.drain()

    stored = Event.objects.get()
    assert stored.status == Status.FAILED
    assert "400" in stored.reason
    assert "is not a metadata property this AEM resolves" in stored.attempt_set.get().aem_body


def test_many_events_share_one_ims_token_stored_encrypted(client, world):
    for n in range(20):
        world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}")
    world.adobe.deliver(client, [world.upload(client, n) for n in range(20)])
    world.drain()
    assert Event.objects.filter(status=Status.SUCCEEDED).count() == 20
    assert len(world.ims.issued) == 1
    row = AccessToken.objects.get()
    assert b"token-1" not in bytes(row.encrypted)


def test_another_process_reuses_the_stored_token(client, world):
    from pimsync.adobe import ims

    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.pim.products["SKU-100002"] = product("SKU-100002")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    ims.forget()  # a second worker process starts with an empty memory
    world.adobe.deliver(client, world.upload(client, 2))
    world.drain()
    assert len(world.ims.issued) == 1


def test_a_revoked_token_is_renewed_once_on_401(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.aem.faults.add("GET", 401)
    world.drain()
    assert Event.objects.get().status == Status.SUCCEEDED
    assert len(world.ims.issued) == 2


def test_wrong_client_credentials_fail_with_a_clear_reason(client, world, settings):
    settings.ADOBE_CLIENT_SECRET = "wrong"
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert "IMS refused the client credentials (401)" in event.reason
    assert "invalid_client" in event.reason
    assert "wrong" not in event.reason  # the secret never shows
    assert world.aem.patches == []


def test_an_unknown_product_fails_with_the_reason_and_no_patch(client, world):
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason == "product 'SKU-100001' is not in the PIM"
    assert event.error_class == "pim_not_found"
    assert world.aem.calls == []


def test_a_pim_answer_that_is_not_a_product_fails_with_the_reason(client, world):
    world.pim.products["SKU-100001"] = ["not", "an", "object"]
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason.startswith("The PIM answered with something pimsync cannot read")
    assert event.attempt_set.get().message == "the PIM answered with something that is not a JSON object"
    assert event.error_class == "pim_bad_response"
    assert world.aem.calls == []


def test_a_pim_that_fails_twice_then_answers_succeeds_on_attempt_three(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.pim.faults.add("GET", 503, times=2)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.RETRYING
    assert event.error_class == "pim_503"
    assert 24 <= (event.next_attempt_at - timezone.now()).total_seconds() <= 36  # 30 s ± 20%

    with later(40):
        pipeline.sweep()
        world.drain()
        assert Event.objects.get().status == Status.RETRYING
        with later(90):  # second retry waits about 60 s
            pipeline.sweep()
            world.drain()

    event.refresh_from_db()
    assert event.status == Status.SUCCEEDED
    assert event.attempts == 3
    assert [a.outcome for a in event.attempt_set.all()] == ["retrying", "retrying", "succeeded"]
    assert len(world.aem.patches) == 1


def test_a_retry_that_is_not_due_is_not_run_early(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.pim.faults.add("GET", 503)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    pipeline.sweep()
    world.drain()
    assert Event.objects.get().status == Status.RETRYING
    assert len(world.pim.calls) == 1


def test_aem_rate_limiting_honours_retry_after(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("PATCH", 429, headers={"Retry-After": "600"})
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.RETRYING
    assert (event.next_attempt_at - timezone.now()).total_seconds() >= 595
    assert event.attempt_set.get().aem_status == 429


def test_a_concurrent_write_in_aem_is_reread_and_kept(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    asset_id = event["data"]["assetId"]
    writes = []

    def someone_edits_once(asset):
        if not writes:
            writes.append(asset)
            world.aem.write(asset, {"dc:description": "edited by a person"})

    world.aem.on_get = someone_edits_once
    world.adobe.deliver(client, event)
    world.drain()
    assert Event.objects.get().status == Status.SUCCEEDED
    assert [method for method, _ in world.aem.calls] == ["GET", "PATCH", "GET", "PATCH"]
    assert world.aem.assets[asset_id]["dc:description"] == "edited by a person"
    assert world.aem.assets[asset_id]["wknd-skuid"] == "SKU-100001"


def test_nothing_to_change_is_unchanged_without_a_patch(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    world.aem.add_asset(
        event["data"]["assetId"],
        {
            "wknd-skuid": "SKU-100001",
            "wknd-suppliername": "NORDWAND OUTDOOR",
            "dc:title": "Trail backpack 35L",
            "pim:colours": "black, red",
        },
    )
    world.adobe.deliver(client, event)
    world.drain()
    assert Event.objects.get().status == Status.UNCHANGED
    assert world.aem.patches == []
    assert [method for method, _ in world.aem.calls] == ["GET"]


def test_a_metadata_change_echoing_our_own_write_triggers_no_work(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    world.adobe.deliver(client, event)
    world.drain()
    calls = len(world.aem.calls)
    echo = make_event(
        2, type="aem.assets.asset.metadata_updated", name="SKU-100001_front.png", asset_id=event["data"]["assetId"]
    )
    echo["data"]["user"] = {"principalId": "jane.doe@example.com"}
    echo["data"]["assetMetadata"] = {
        "event:created": ["wknd-skuid", "dc:title"],
        "wknd-skuid": "SKU-100001",
        "dc:title": "Trail backpack 35L",
    }
    world.adobe.deliver(client, echo)
    world.drain()
    stored = Event.objects.get(event_id=echo["eventid"])
    assert stored.status == Status.IGNORED
    assert "echo" in stored.reason
    assert len(world.aem.calls) == calls


def test_a_persons_metadata_change_is_enriched_again(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    world.adobe.deliver(client, event)
    world.drain()
    world.aem.write(event["data"]["assetId"], {"dc:title": "typo"})
    change = make_event(
        2, type="aem.assets.asset.metadata_updated", name="SKU-100001_front.png", asset_id=event["data"]["assetId"]
    )
    change["data"]["assetMetadata"] = {"event:updated": {"dc:title": "Trail backpack 35L"}, "dc:title": "typo"}
    world.adobe.deliver(client, change)
    world.drain()
    assert Event.objects.get(event_id=change["eventid"]).status == Status.SUCCEEDED
    assert world.aem.patches[-1]["operations"] == [
        {"op": "replace", "path": "/dc:title", "value": "Trail backpack 35L"}
    ]


def test_a_burst_for_one_asset_ends_in_one_patch(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    first = world.upload(client, 1)
    asset_id = first["data"]["assetId"]
    for n in range(10):
        event = make_event(1000 + n, name="SKU-100001_front.png", asset_id=asset_id)
        assert world.adobe.deliver(client, event).status_code == 200
    world.drain()
    assert len(world.aem.patches) == 1
    assert Event.objects.filter(status=Status.SUCCEEDED).count() == 10
    assert Attempt.objects.count() == 10


def test_redelivered_and_out_of_order_events_never_patch_twice(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    first = world.upload(client, 1)
    older = make_event(2, name="SKU-100001_front.png", asset_id=first["data"]["assetId"], time="2020-01-01T00:00:00Z")
    world.adobe.deliver(client, first)
    world.drain()
    world.adobe.deliver(client, first)
    world.adobe.deliver(client, older)
    world.drain()
    assert len(world.aem.patches) == 1
    assert Event.objects.get(event_id=older["eventid"]).status == Status.UNCHANGED


def test_a_deletion_cancels_pending_work_for_the_asset(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    upload = world.upload(client, 1, time="2025-10-02T09:00:00Z")
    deleted = make_event(
        2, type="aem.assets.asset.deleted", asset_id=upload["data"]["assetId"], time="2025-10-02T09:12:44Z"
    )
    world.adobe.deliver(client, [upload, deleted])
    world.drain()
    assert Event.objects.get(event_id=upload["eventid"]).status == Status.IGNORED
    deletion = Event.objects.get(event_id=deleted["eventid"])
    assert deletion.status == Status.SUCCEEDED
    assert "1 pending update(s) cancelled" in deletion.reason
    assert world.aem.calls == []
    late = make_event(3, asset_id=upload["data"]["assetId"], time="2025-10-02T09:10:00Z")
    world.adobe.deliver(client, late)
    world.drain()
    assert Event.objects.get(event_id=late["eventid"]).status == Status.IGNORED


def test_a_permanent_aem_refusal_fails_with_aems_answer(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("PATCH", 403)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.error_class == "aem_403"
    attempt = event.attempt_set.get()
    assert attempt.aem_status == 403
    assert "injected" in attempt.aem_body


def test_retryable_errors_give_up_after_max_attempts(client, world, settings):
    settings.PIMSYNC_MAX_ATTEMPTS = 2
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("GET", 502, times=5)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    with later(3600):
        pipeline.sweep()
        world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason.startswith("gave up after 2 attempts")


def test_an_unreachable_aem_is_retried(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    settings.AEM_AUTHOR_URL = "http://127.0.0.1:9"
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.RETRYING
    assert event.error_class == "aem_unreachable"


def test_a_worker_that_died_mid_task_is_picked_up_by_the_sweeper(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()  # the wake-up call died with the worker...
    Event.objects.update(status=Status.PROCESSING, claimed_at=timezone.now(), attempts=1)  # ...mid-task
    pipeline.sweep()
    world.drain()
    assert Event.objects.get().status == Status.PROCESSING  # its lease is still young
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 5):
        pipeline.sweep()
        world.drain()
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED
    assert event.attempts == 2


def test_a_lost_wake_up_call_is_sent_again_by_the_sweeper(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()  # the broker lost it (Redis has no delivery receipts)
    pipeline.sweep()
    world.drain()
    assert Event.objects.get().status == Status.SUCCEEDED


def test_a_manual_retry_keeps_the_history(client, world):
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    world.pim.products["SKU-100001"] = product("SKU-100001")
    assert pipeline.retry([event]) == 1
    world.drain()
    event.refresh_from_db()
    assert event.status == Status.SUCCEEDED
    assert [a.outcome for a in event.attempt_set.all()] == ["failed", "succeeded"]


def test_the_asset_lease_is_exclusive():
    from pimsync.models import Asset

    token = Asset.acquire("urn:aaid:aem:x")
    assert token
    assert Asset.acquire("urn:aaid:aem:x") is None
    Asset.release("urn:aaid:aem:x", token)
    assert Asset.acquire("urn:aaid:aem:x")


def test_missing_asset_rows_are_created_free_and_existing_ones_left_as_they_are():
    from pimsync.models import Asset

    token = Asset.acquire("urn:aaid:aem:held")
    Asset.objects.filter(pk="urn:aaid:aem:held").update(path="/content/dam/held.png")
    Asset.create_missing(["urn:aaid:aem:held", "urn:aaid:aem:new", "urn:aaid:aem:new"])
    held, new = Asset.objects.order_by("asset_id")
    assert (held.asset_id, held.lease_token, held.path) == ("urn:aaid:aem:held", token, "/content/dam/held.png")
    assert (new.asset_id, new.lease_token, new.lease_until, new.path) == ("urn:aaid:aem:new", "", None, "")
    assert new.state == Asset().state and new.last_written == {} and new.first_seen_at
    assert Asset.acquire("urn:aaid:aem:new") and Asset.acquire("urn:aaid:aem:held") is None
    Asset.create_missing([])  # nothing to do, no statement to fail


def test_a_mapping_changed_during_the_enrichment_leaves_the_asset_stale_and_its_lease_given_back(
    client, world, monkeypatch
):
    from pimsync.models import MappingConfig

    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    world.adobe.deliver(client, event)
    enrich = enrichment.enrich

    def while_someone_saves_the_mapping(event, last_written=None):
        result = enrich(event, last_written)  # with the rules as they were read
        MappingConfig.changed()
        return result

    monkeypatch.setattr(enrichment, "enrich", while_someone_saves_the_mapping)
    pipeline.process_asset(event["data"]["assetId"])
    assert Event.objects.get().status == Status.SUCCEEDED
    row = Asset.objects.get()
    assert (row.state, row.stale_cause, row.state_reason) == (
        "stale",
        "mapping",
        "the mapping changed while it was being enriched",
    )
    assert (row.lease_token, row.lease_until) == ("", None)
    assert row.last_written["wknd-skuid"] == "SKU-100001"


def test_an_enrichment_thread_cleans_up_a_connection_that_failed_before_the_lease(monkeypatch):
    from django.db import OperationalError

    from pimsync import postgresql, worker

    def server_gone() -> None:
        raise OperationalError("server closed the connection unexpectedly")

    cleaned = []
    monkeypatch.setattr(postgresql, "reuse_plans", server_gone)
    monkeypatch.setattr(worker, "close_old_connections", lambda: cleaned.append(True))
    with pytest.raises(OperationalError):
        worker._run_one("urn:aaid:aem:x")
    assert cleaned == [True]  # else the thread would keep the broken connection for every asset


def show_plan_cache_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plan_cache_mode is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_enrichment_threads_let_postgresql_keep_its_plans_and_other_connections_do_not():
    from pimsync import worker

    def enrichment_thread() -> list[str]:
        try:
            worker._run_one("urn:aaid:aem:none")
            seen = [show_plan_cache_mode()]
            connection.close()  # closed after an error or CONN_MAX_AGE: the next one sets it again
            worker._run_one("urn:aaid:aem:none")
            seen.append(show_plan_cache_mode())
            connection.close()  # a new connection starts from what every connection gets
            return [*seen, show_plan_cache_mode()]
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(enrichment_thread).result() == ["auto", "auto", "force_custom_plan"]
    # This thread's connection, as the dashboard's and the webhook's: each run planned.
    assert show_plan_cache_mode() == "force_custom_plan"


def test_a_busy_asset_is_left_to_the_worker_holding_it(client, world):
    from pimsync.models import Asset

    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    token = Asset.acquire(event["data"]["assetId"])
    world.adobe.deliver(client, event)
    world.drain()
    assert Event.objects.get().status == Status.RECEIVED
    assert world.aem.calls == []
    Asset.release(event["data"]["assetId"], token)
    pipeline.process_asset(event["data"]["assetId"])
    assert Event.objects.get().status == Status.SUCCEEDED


def test_a_surplus_wake_up_ends_at_once_while_another_drain_polls(settings):
    from pimsync import worker
    from pimsync.models import Heartbeat

    settings.PIMSYNC_DRAIN_LINGER_SECONDS = 30  # would hold the worker for half a minute
    Heartbeat.objects.create(name="drain", at=timezone.now() + timedelta(seconds=20))
    assert worker.drain() == "nothing due; another drain is polling"


def stopped_mid_task(attempts: int, attempts_base: int = 0) -> None:
    """Leave the only event as a dead worker leaves it: `processing`, claimed now, attempts counted."""
    Event.objects.update(
        status=Status.PROCESSING, claimed_at=timezone.now(), attempts=attempts, attempts_base=attempts_base
    )


def test_an_event_whose_worker_stopped_every_time_ends_failed_when_its_attempts_are_used(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    stopped_mid_task(attempts=settings.PIMSYNC_MAX_ATTEMPTS)
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 5):
        assert "failed 1 that used their attempts" in pipeline.sweep()
        world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason.startswith(
        f"its worker stopped {settings.PIMSYNC_MAX_ATTEMPTS} times before finishing "
        f"(PIMSYNC_MAX_ATTEMPTS={settings.PIMSYNC_MAX_ATTEMPTS}); it looks like a poison event"
    )
    assert event.error_class == "worker_stopped"
    assert event.finished_at is not None
    attempt = event.attempt_set.get()
    assert (attempt.number, attempt.outcome, attempt.message) == (event.attempts, "failed", event.reason)
    assert world.pim.calls == []


def test_an_event_far_past_its_attempts_is_not_revived_again(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    stopped_mid_task(attempts=50)
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 5):
        pipeline.sweep()
        world.drain()
        with later(3600):
            pipeline.sweep()
            world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.attempts == 50
    assert "its worker stopped 50 times" in event.reason
    assert world.pim.calls == []


def test_a_stopped_worker_leaves_an_attempt_and_the_event_is_handed_out_again(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    stopped_mid_task(attempts=settings.PIMSYNC_MAX_ATTEMPTS - 1)
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 5):
        assert "revived 1 stuck event(s)" in pipeline.sweep()
        world.drain()
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED
    assert event.attempts == settings.PIMSYNC_MAX_ATTEMPTS
    assert [(a.outcome, a.error_class) for a in event.attempt_set.all()] == [
        ("retrying", "worker_stopped"),
        ("succeeded", ""),
    ]


def test_a_claim_takes_every_due_event_of_the_asset_in_one_statement_oldest_first(client, world):
    asset = "urn:aaid:aem:00000000-0000-4000-8000-000000000007"
    world.adobe.deliver(
        client,
        [
            make_event(2, asset_id=asset, time="2025-08-29T06:58:00Z"),
            make_event(1, asset_id=asset, time="2025-08-29T06:57:00Z"),
        ],
    )
    with CaptureQueriesContext(connection) as queries:
        claimed = pipeline._claim(asset)
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert [event.event_id for event in claimed] == [f"evt-00000{n}-processing_completed" for n in (1, 2)]
    assert [(event.status, event.attempts) for event in claimed] == [(Status.PROCESSING, 1)] * 2
    stored = Event.objects.filter(asset_id=asset).values_list("status", "attempts")
    assert sorted(stored) == [(Status.PROCESSING, 1)] * 2


def test_a_worker_never_claims_an_event_whose_attempts_are_used(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    # As an older sweeper left it: handed out again although its attempts were used.
    Event.objects.update(attempts=settings.PIMSYNC_MAX_ATTEMPTS, claimed_at=timezone.now())
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.attempts == settings.PIMSYNC_MAX_ATTEMPTS
    assert "its worker stopped" in event.reason
    assert world.pim.calls == []


def test_a_manual_retry_gives_a_poison_event_a_fresh_budget(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    stopped_mid_task(attempts=settings.PIMSYNC_MAX_ATTEMPTS)
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 5):
        pipeline.sweep()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert pipeline.retry([event]) == 1
    world.drain()
    event.refresh_from_db()
    assert event.status == Status.SUCCEEDED
    assert event.attempts == settings.PIMSYNC_MAX_ATTEMPTS + 1
    assert [a.outcome for a in event.attempt_set.all()] == ["failed", "succeeded"]


@pytest.mark.parametrize("pim", ["answering 500", "unreachable"])
def test_credentials_in_the_configured_urls_never_reach_reasons_attempts_logs_or_pages(
    client, admin_client, world, settings, caplog, pim
):
    caplog.set_level(logging.DEBUG)
    if pim == "unreachable":
        settings.PIM_BASE_URL = "http://user:secret@127.0.0.1:9"
    else:
        settings.PIM_BASE_URL = world.pim.url.replace("http://", "http://user:secret@")
        world.pim.faults.add("GET", 500)
    settings.AEM_AUTHOR_URL = world.aem.url.replace("http://", "http://aem-user:secret@")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.RETRYING
    assert event.error_class == ("pim_500" if pim == "answering 500" else "pim_unreachable")
    attempt = event.attempt_set.get()
    assert "://***@" in attempt.message  # the call, as the attempt keeps it
    shown = [event.reason, attempt.message, attempt.aem_body, caplog.text]
    shown += [str(record.__dict__) for record in caplog.records]
    shown += [admin_client.get(f"/admin/pimsync/event/{event.pk}/change/").content.decode()]
    shown += [admin_client.get("/admin/pimsync/event/").content.decode(), admin_client.get("/").content.decode()]
    assert "open in AEM" in shown[-3]
    assert not [text for text in shown if "secret" in text]


def test_a_retry_past_a_lowered_attempt_limit_fails_without_running(client, world, settings):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.pim.faults.add("GET", 503, times=2)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    with later(3600):
        pipeline.sweep()
        world.drain()
    assert Event.objects.get().attempts == 2
    settings.PIMSYNC_MAX_ATTEMPTS = 2  # the operator lowers the limit while the event waits
    with later(7200):
        pipeline.sweep()
        world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason == "gave up after 2 attempts (PIMSYNC_MAX_ATTEMPTS=2)"
    assert event.error_class == "pim_503"
    assert len(world.pim.calls) == 2


class TestNextStatus:
    """The status an event moves to after one enrichment result, decided without the database."""

    NOW = timezone.now()

    def event(self, attempts: int, attempts_base: int = 0) -> Event:
        return Event(attempts=attempts, attempts_base=attempts_base)

    def test_a_final_result_is_the_events_status_with_no_retry(self):
        result = enrichment.Result(status=Status.SUCCEEDED, reason="wrote 2 properties")
        assert pipeline.next_status(self.event(1), result, self.NOW) == (Status.SUCCEEDED, "wrote 2 properties", None)

    def test_a_retryable_result_is_retried_after_a_backoff(self, settings):
        settings.PIMSYNC_MAX_ATTEMPTS, settings.PIMSYNC_RETRY_BASE_SECONDS = 5, 10
        result = enrichment.Result(status=Status.RETRYING, reason="PIM answered 503")
        status, reason, next_at = pipeline.next_status(self.event(2), result, self.NOW)
        assert status == Status.RETRYING
        assert reason.startswith("PIM answered 503 (attempt 2 of 5; next in ")
        assert timedelta(seconds=16) <= next_at - self.NOW <= timedelta(seconds=24)  # 10·2 ± 20%

    def test_a_longer_retry_after_wins(self, settings):
        settings.PIMSYNC_MAX_ATTEMPTS, settings.PIMSYNC_RETRY_BASE_SECONDS = 5, 1
        result = enrichment.Result(status=Status.RETRYING, reason="AEM answered 429", retry_after=120)
        _, _, next_at = pipeline.next_status(self.event(1), result, self.NOW)
        assert next_at - self.NOW == timedelta(seconds=120)

    def test_a_retryable_result_fails_once_the_attempts_are_used(self, settings):
        settings.PIMSYNC_MAX_ATTEMPTS = 3
        result = enrichment.Result(status=Status.RETRYING, reason="PIM answered 503")
        assert pipeline.next_status(self.event(3), result, self.NOW) == (
            Status.FAILED,
            "gave up after 3 attempts: PIM answered 503",
            None,
        )

    def test_the_budget_counts_from_the_last_manual_retry(self, settings):
        settings.PIMSYNC_MAX_ATTEMPTS = 3
        result = enrichment.Result(status=Status.RETRYING, reason="PIM answered 503")
        status, _, _ = pipeline.next_status(self.event(4, attempts_base=3), result, self.NOW)
        assert status == Status.RETRYING


BARE = {"type": "t", "source": "s", "payload": {}}


def test_due_events_are_pending_ones_whose_time_has_come():
    now = timezone.now()
    rows = {
        "due": (Status.RECEIVED, now),
        "retry due": (Status.RETRYING, now - timedelta(seconds=1)),
        "retry later": (Status.RETRYING, now + timedelta(minutes=1)),
        "running": (Status.PROCESSING, now),
        "finished": (Status.SUCCEEDED, None),
    }
    for event_id, (status, next_at) in rows.items():
        Event.objects.create(event_id=event_id, **BARE, status=status, next_attempt_at=next_at)
    assert set(Event.objects.due(now).values_list("event_id", flat=True)) == {"due", "retry due"}
    assert Event.objects.pending().count() == 3
    assert set(Event.objects.finished().values_list("event_id", flat=True)) == {"finished"}


def test_an_events_asset_is_what_the_mapping_rules_see():
    event = Event(asset_id="urn:aaid:aem:1", asset_path="/content/dam/a/SKU-1.png", asset_name="SKU-1.png")
    event.mime_type = "image/png"
    assert event.asset == AssetRef("urn:aaid:aem:1", "/content/dam/a/SKU-1.png", "SKU-1.png", "image/png")


def test_a_worker_stopped_before_the_asset_state_is_recorded_leaves_its_event_to_run_again(
    client, world, settings, monkeypatch
):
    """The events' outcome and the asset's state are written together: never an event 'succeeded'
    beside an asset left stale with nothing left to run."""
    from pimsync.models import Asset, SyncState

    world.pim.products["SKU-100234"] = product("SKU-100234")
    event = world.upload(client, 1, sku="SKU-100234")
    assert world.adobe.deliver(client, event).status_code == 200
    record, stopped = pipeline._record_asset, []

    def stops_first_time(*args):
        if not stopped:
            stopped.append(1)
            raise RuntimeError("the worker stops here")
        return record(*args)

    monkeypatch.setattr(pipeline, "_record_asset", stops_first_time)
    with pytest.raises(RuntimeError):
        pipeline.process_asset(event["data"]["assetId"])
    assert Event.objects.get().status == Status.PROCESSING  # not 'succeeded': it is handed out again
    with later(settings.PIMSYNC_TASK_TIMEOUT_SECONDS + 1):
        assert "revived 1" in pipeline.sweep()
        world.drain()
    assert Event.objects.get().status in (Status.SUCCEEDED, Status.UNCHANGED)
    assert Asset.objects.get().state == SyncState.IN_STEP


def test_enriching_an_asset_runs_few_statements(client, world):
    """The worker's statements per asset are most of its CPU and of PostgreSQL's: the lease reads
    the row it takes, the pause is read at most once a second, the asset's new state is one
    UPDATE. A change that adds one to every asset should be a choice, made here."""
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()  # the first asset: the mapping, the token and the pauses are read once per process
    world.pim.products["SKU-100002"] = product("SKU-100002")
    world.adobe.deliver(client, world.upload(client, 2))
    asset = "urn:aaid:aem:00000000-0000-4000-8000-000000000002"
    Asset.create_missing([asset])  # as the drain does for a batch of new assets, in one INSERT
    with CaptureQueriesContext(connection) as queries:
        pipeline.process_asset(asset)
    assert Event.objects.get(asset_id=asset).status == Status.SUCCEEDED
    row = Asset.objects.get(pk=asset)
    assert (row.state, row.path, row.last_outcome) == (
        "in_step",
        "/content/dam/products/SKU-100002_front.png",
        "succeeded",
    )
    assert row.pim_fingerprint and row.mapping_fingerprint and row.last_synced_at and not row.stale_since
    statements = [q["sql"].split(" ", 3)[:3] for q in queries.captured_queries]
    # lease and read the row · claim · finish the event · its attempt · the asset's state, if the
    # mapping is unchanged, with the lease given back; on PostgreSQL a transaction's BEGIN is not a query.
    shown = "\n".join(q["sql"][:100] for q in queries.captured_queries)
    assert len([s for s in statements if s[0] not in ("SAVEPOINT", "RELEASE", "BEGIN")]) <= 5, shown
    assert (row.lease_token, row.lease_until) == ("", None)
    assert row.last_written["wknd-skuid"] == "SKU-100002" and row.last_written_at


def test_a_lease_lost_during_the_enrichment_stays_with_its_new_holder(client, world, monkeypatch):
    """The asset's state is recorded either way; the lease and what pimsync wrote are only given
    back by the token that took them."""
    world.pim.products["SKU-100001"] = product("SKU-100001")
    asset = world.upload(client, 1)["data"]["assetId"]
    world.adobe.deliver(client, world.upload(client, 1))
    enrich = enrichment.enrich

    def outlived_by_its_lease(event, last_written=None):
        result = enrich(event, last_written)
        # The lease ran out meanwhile and another worker took it.
        Asset.objects.filter(pk=asset).update(lease_token="another", lease_until=timezone.now() + timedelta(minutes=5))
        return result

    monkeypatch.setattr(enrichment, "enrich", outlived_by_its_lease)
    pipeline.process_asset(asset)
    row = Asset.objects.get(pk=asset)
    assert (row.state, row.last_outcome) == ("in_step", "succeeded")
    assert row.lease_token == "another" and row.lease_until > timezone.now()
    assert row.last_written == {} and row.last_written_at is None


def test_a_burst_of_events_for_one_asset_records_an_attempt_for_each(client, world):
    """One claim takes up to 100 events of an asset, and one enrichment serves them all: each
    still gets its attempt row, stored together in plain SQL."""
    world.pim.products["SKU-100001"] = product("SKU-100001")
    asset = world.upload(client, 1)["data"]["assetId"]
    name = "SKU-100001_front.png"
    burst = [
        make_event(n, asset_id=asset, name=name, time=f"2025-08-29T06:{n // 60:02d}:{n % 60:02d}Z")
        for n in range(1, 96)
    ]
    for start in range(0, len(burst), 20):  # in Adobe's batches
        assert world.adobe.deliver(client, burst[start : start + 20]).status_code == 200
    world.drain()
    assert Event.objects.filter(asset_id=asset, status=Status.SUCCEEDED).count() == 95
    assert Attempt.objects.filter(event__asset_id=asset).count() == 95
    assert len(world.aem.patches) == 1  # one enrichment for the whole burst
