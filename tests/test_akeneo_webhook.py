"""`POST /webhooks/akeneo`: Akeneo's signed change notifications, stored first and handled by a
task that re-syncs the product's assets (and ignores the echo of pimsync's own write-back)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from pimsync.models import Event, Job, PimNotification, Status
from standins import akeneo_examples
from tests.conftest import akeneo_product

pytestmark = pytest.mark.django_db

PRIMARY, SECONDARY = "primary-secret-1", "secondary-secret-2"


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.AKENEO_EVENT_SECRETS = [PRIMARY, SECONDARY]


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def cloud_event(
    uuid: str = "6a9f8486-2c36-4680-b87f-6f5f8f01b6cf", *, id: str = "018e32f9-0001", at=None, **data
) -> dict:
    """A product.updated CloudEvent as the Event Platform sends it (made `at`, default now)."""
    at = at or timezone.now()
    return {
        "specversion": "1.0",
        "id": id,
        "type": "com.akeneo.pim.v1.product.updated",
        "source": "pim",
        "subject": "srnt-acme",
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "datacontenttype": "application/json",
        "data": {"product": {"uuid": uuid}, **data},
    }


def post(client, body: dict | bytes, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items() if value is not None}
    return client.post("/webhooks/akeneo", data=raw, content_type="application/json", **extra)


def deliver(client, body: dict, secret: str = PRIMARY, header: str = "X-AKENEO-SIGNATURE-PRIMARY"):
    raw = json.dumps(body).encode()
    return post(client, raw, **{header: sign(secret, raw), "X-AKENEO-SIGNATURE-ALGORITHM": "HmacSHA256"})


def deliver_legacy(client, events: list[dict], *, age: float = 0, secret: str = PRIMARY):
    raw = json.dumps({"events": events}).encode()
    stamp = str(int(time.time() - age))
    signature = sign(secret, stamp.encode() + b"." + raw)
    return post(client, raw, **{"X-Akeneo-Request-Signature": signature, "X-Akeneo-Request-Timestamp": stamp})


def deliver_legacy_raw(client, raw: bytes, *, secret: str = PRIMARY):
    stamp = str(int(time.time()))
    signature = sign(secret, stamp.encode() + b"." + raw)
    return post(client, raw, **{"X-Akeneo-Request-Signature": signature, "X-Akeneo-Request-Timestamp": stamp})


def legacy_event(n: int, identifier: str, author: str = "julia") -> dict:
    return {
        "action": "product.updated",
        "event_id": f"legacy-{n}",
        "event_datetime": "2026-11-27T10:00:00+00:00",
        "author": author,
        "author_type": "ui",
        "pim_source": "https://acme.cloud.akeneo.com",
        "data": {"resource": {"identifier": identifier, "values": {}}},
    }


# --- who may post ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "header"),
    [(PRIMARY, "X-AKENEO-SIGNATURE-PRIMARY"), (SECONDARY, "X-AKENEO-SIGNATURE-SECONDARY")],
)
def test_a_notification_signed_with_either_secret_is_stored(client, secret, header):
    answer = deliver(client, cloud_event(), secret=secret, header=header)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1, "duplicates": 0}
    row = PimNotification.objects.get()
    assert (row.kind, row.product_uuid, row.status) == (
        "product.updated",
        cloud_event()["data"]["product"]["uuid"],
        "received",
    )


def test_a_wrong_or_missing_signature_is_refused_and_nothing_stored(client):
    raw = json.dumps(cloud_event()).encode()
    assert deliver(client, cloud_event(), secret="not-the-secret").status_code == 401
    assert post(client, raw).status_code == 401
    assert post(client, raw, **{"X-AKENEO-SIGNATURE-PRIMARY": "zz" * 32}).status_code == 401
    assert post(client, raw + b" ", **{"X-AKENEO-SIGNATURE-PRIMARY": sign(PRIMARY, raw)}).status_code == 401
    assert PimNotification.objects.count() == 0


def test_another_signature_algorithm_is_refused(client):
    raw = json.dumps(cloud_event()).encode()
    headers = {"X-AKENEO-SIGNATURE-PRIMARY": sign(PRIMARY, raw), "X-AKENEO-SIGNATURE-ALGORITHM": "HmacSHA1"}
    answer = post(client, raw, **headers)
    assert answer.status_code == 401 and "HmacSHA256" in answer.json()["error"]


def test_without_secrets_the_endpoint_asks_to_deliver_again_later_never_404(client, settings):
    """The Event Platform suspends a subscription at once on a 404 and retries a 503
    (https://api.akeneo.com/event-platform/key-platform-behaviors.html)."""
    settings.AKENEO_EVENT_SECRETS = []
    for answer in (deliver(client, cloud_event()), deliver_legacy(client, [legacy_event(1, "SKU-1")])):
        assert answer.status_code == 503
        assert answer["Retry-After"] == "300"
        assert "AKENEO_EVENT_SECRETS" in answer.json()["error"]
    assert PimNotification.objects.count() == 0


# --- how big a body may be ------------------------------------------------------------------------


def rich_batch() -> dict:
    """Ten events of Akeneo's documented shape, each product with long texts in six locales and two
    channels: about 100 KB a product, 1 MB the request."""
    return akeneo_examples.legacy_batch(extra_values=akeneo_examples.rich_values())


def test_a_legacy_request_of_ten_rich_products_is_accepted_whole(client, settings):
    raw = json.dumps(rich_batch(), separators=(",", ":")).encode()
    assert 900_000 < len(raw) < 1_300_000 < settings.AKENEO_EVENT_MAX_BYTES / 3
    settings.PIMSYNC_WEBHOOK_MAX_BYTES = 100_000  # Adobe's limit is not Akeneo's
    answer = deliver_legacy_raw(client, raw)
    assert answer.status_code == 200 and answer.json() == {"accepted": 10, "duplicates": 0}
    assert PimNotification.objects.count() == 10


def test_a_body_over_akeneos_limit_is_a_413_read_no_further(client, settings):
    raw = json.dumps(rich_batch(), separators=(",", ":")).encode()
    settings.AKENEO_EVENT_MAX_BYTES = len(raw) - 1
    answer = deliver_legacy_raw(client, raw)
    assert answer.status_code == 413 and "AKENEO_EVENT_MAX_BYTES" in answer.json()["error"]
    assert PimNotification.objects.count() == 0
    settings.AKENEO_EVENT_MAX_BYTES = len(raw)
    assert deliver_legacy_raw(client, raw).status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": None}, "has no time"),
        ({"time": "last tuesday"}, "is not an RFC 3339 time"),
        ({"time": "2026-11-27T10:00:00"}, "is not an RFC 3339 time with its offset"),
        # Offsets from the time the test runs, not from when the suite was collected.
        ({"time": timedelta(days=-9)}, "more than 7 days ago"),
        ({"time": timedelta(minutes=6)}, "more than 5 minutes ahead"),
    ],
    ids=["missing", "unreadable", "no-offset", "nine-days-old", "future"],
)
def test_a_signed_cloud_event_without_a_recent_time_is_refused_and_nothing_stored(client, change, message):
    if isinstance(change["time"], timedelta):
        change = {"time": (timezone.now() + change["time"]).isoformat()}
    event = {**cloud_event(), **change}
    if event["time"] is None:
        del event["time"]
    answer = deliver(client, event)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert PimNotification.objects.count() == 0


def test_a_cloud_event_a_few_days_old_or_a_little_ahead_is_stored(client):
    for n, at in enumerate((timezone.now() - timedelta(days=6), timezone.now() + timedelta(minutes=4))):
        assert deliver(client, cloud_event(id=f"018e32f9-000{n}", at=at)).json() == {"accepted": 1, "duplicates": 0}


def test_a_signed_body_that_is_not_a_notification_is_a_400(client):
    raw = b"{not json"
    assert post(client, raw, **{"X-AKENEO-SIGNATURE-PRIMARY": sign(PRIMARY, raw)}).status_code == 400
    answer = deliver(client, {"hello": "world"})
    assert answer.status_code == 400 and "neither" in answer.json()["error"]
    assert deliver(client, {**cloud_event(), "id": ""}).status_code == 400
    assert PimNotification.objects.count() == 0


def test_a_legacy_batch_is_verified_with_its_timestamp(client):
    answer = deliver_legacy(client, [legacy_event(1, "SKU-1"), legacy_event(2, "SKU-2")])
    assert answer.status_code == 200 and answer.json()["accepted"] == 2
    assert sorted(PimNotification.objects.values_list("product_key", flat=True)) == ["SKU-1", "SKU-2"]


def test_a_legacy_batch_six_minutes_old_is_refused(client):
    answer = deliver_legacy(client, [legacy_event(1, "SKU-1")], age=6 * 60)
    assert answer.status_code == 401 and "5 minutes" in answer.json()["error"]
    assert PimNotification.objects.count() == 0


def test_a_legacy_batch_over_ten_events_is_a_400(client):
    assert deliver_legacy(client, [legacy_event(n, f"SKU-{n}") for n in range(11)]).status_code == 400


def test_a_notification_delivered_twice_is_stored_once(client):
    deliver(client, cloud_event())
    answer = deliver(client, cloud_event())
    assert answer.json() == {"accepted": 0, "duplicates": 1}
    assert PimNotification.objects.count() == 1


def test_notifications_about_other_things_are_kept_as_ignored(client):
    event = {**cloud_event(), "type": "com.akeneo.pim.v1.category.updated", "data": {"category": {"code": "shoes"}}}
    deliver(client, event)
    assert PimNotification.objects.get().status == PimNotification.State.IGNORED


# --- what a notification does ---------------------------------------------------------------------


def aem_calls(world, asset_id: str) -> list[str]:
    return [method for method, asset in world.aem.calls if asset == asset_id]


@pytest.fixture
def synced(client, akeneo_world):
    """An uploaded asset of SKU-100001, enriched from Akeneo, its links written back."""
    world, akeneo = akeneo_world, akeneo_world.akeneo
    product = akeneo_product(akeneo, "SKU-100001", name="Trail boot")
    upload = world.upload(client, 1)
    world.adobe.deliver(client, upload)
    world.drain()
    assert Event.objects.get().status == Status.SUCCEEDED
    assert len(akeneo.patches()) == 1
    return world, akeneo, product, upload["data"]["assetId"]


def test_a_product_updated_in_akeneo_re_syncs_its_assets_once(client, synced):
    world, akeneo, product, asset_id = synced
    before = len(aem_calls(world, asset_id))
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    assert deliver(client, cloud_event(product["uuid"], author="julia")).status_code == 200
    world.drain()
    assert aem_calls(world, asset_id)[before:] == ["GET", "PATCH"]
    assert world.aem.assets[asset_id]["dc:title"] == "Summit boot"
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.DONE and row.product_key == "SKU-100001"
    job = Job.objects.get()
    assert job.assets == {"product_keys": ["SKU-100001"]}
    assert job.why == "Akeneo product.updated by julia"

    # Akeneo delivers at least once: the same message again does nothing more, even though the
    # product has changed since (only a new message or the poll would re-sync that).
    akeneo.set_value("SKU-100001", "name", "Alpine boot", locale="en_US")
    answer = deliver(client, cloud_event(product["uuid"], author="julia"))
    assert answer.status_code == 200 and answer.json() == {"accepted": 0, "duplicates": 1}
    world.drain()
    assert aem_calls(world, asset_id)[before:] == ["GET", "PATCH"]
    assert world.aem.assets[asset_id]["dc:title"] == "Summit boot"
    assert Job.objects.count() == 1 and PimNotification.objects.count() == 1


# The Event Platform names the author by the user's uuid and kind, never by user name.
API_USER = {"identifier": "b238e9f7-fcec-45bd-9431-d43cd624b244", "type": "api"}


def test_the_echo_of_pimsyncs_own_write_back_calls_neither_aem_nor_writes_again(client, synced):
    world, akeneo, product, asset_id = synced
    before, reads = len(world.aem.calls), akeneo.calls("GET")
    echo = cloud_event(product["uuid"], author=API_USER)
    echo["data"]["product"]["identifier"] = "SKU-100001"  # send_product_identifier is on
    deliver(client, echo)
    world.drain()
    assert world.aem.calls[before:] == []
    assert len(akeneo.patches()) == 1
    assert akeneo.calls("GET") == reads + 1  # the product, read to compare its data
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.IGNORED
    assert "unchanged (pimsync's own write-back" in row.reason
    assert row.author == "b238e9f7-fcec-45bd-9431-d43cd624b244 (api)"
    assert not Job.objects.exists()


def test_the_author_object_is_shown_as_given_in_the_jobs_why(client, synced):
    world, akeneo, product, _asset_id = synced
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    deliver(client, cloud_event(product["uuid"], author=API_USER))
    world.drain()
    assert Job.objects.get().why == "Akeneo product.updated by b238e9f7-fcec-45bd-9431-d43cd624b244 (api)"


def test_a_change_named_by_identifier_is_read_once_then_re_synced(client, synced):
    world, akeneo, _product, asset_id = synced
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    reads = akeneo.calls("GET")
    deliver_legacy(client, [legacy_event(1, "SKU-100001")])
    world.drain()
    assert world.aem.assets[asset_id]["dc:title"] == "Summit boot"
    assert akeneo.calls("GET") == reads + 2  # the notification's read, then the re-sync's lookup


def test_a_deletion_named_by_uuid_only_re_syncs_its_assets_without_asking_akeneo(client, synced):
    from pimsync.models import Asset
    from pimsync.pim import notifications

    world, akeneo, product, asset_id = synced
    assert Asset.objects.get(pk=asset_id).pim_product_uuid == product["uuid"]  # kept when it was read
    akeneo.products.clear()
    calls = len(akeneo.requests)
    deleted = {**cloud_event(product["uuid"], author=API_USER), "type": "com.akeneo.pim.v1.product.deleted"}
    deliver(client, deleted)
    notifications.handle_pending()
    assert len(akeneo.requests) == calls
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.DONE and row.product_key == "SKU-100001"
    assert Job.objects.get().assets == {"product_keys": ["SKU-100001"]}
    world.drain()
    assert Asset.objects.get(pk=asset_id).state == "failing"  # "product 'SKU-100001' is not in Akeneo"


def test_a_deletion_of_a_product_pimsync_never_synced_is_ignored(client, synced):
    deleted = {**cloud_event("0c7e6a3c-0000-4000-8000-000000000000"), "type": "com.akeneo.pim.v1.product.deleted"}
    deliver(client, deleted)
    synced[0].drain()
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.IGNORED and "knows no asset" in row.reason


def test_a_product_pimsync_has_no_asset_of_is_ignored(client, synced):
    world, akeneo, _product, _asset_id = synced
    other = akeneo_product(akeneo, "SKU-999")
    deliver(client, cloud_event(other["uuid"], id="018e32f9-0002"))
    world.drain()
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.IGNORED and "no asset of SKU-999" in row.reason


def test_an_unreachable_akeneo_leaves_the_notification_for_a_later_run(client, synced):
    from pimsync.pim import notifications

    world, akeneo, product, _asset_id = synced
    deliver(client, cloud_event(product["uuid"]))
    akeneo.faults.add("GET", 503)
    notifications.handle_pending()
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.RECEIVED and row.attempts == 1 and "503" in row.reason
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    assert notifications.handle_pending() == "no PIM notification waiting"  # not due for a minute
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        world.drain()
    assert PimNotification.objects.get().status == PimNotification.State.DONE


def test_a_notification_that_cannot_be_handled_fails_alone_and_its_batch_goes_on(client, synced):
    from pimsync.pim import notifications

    _world, akeneo, product, _asset_id = synced
    odd = akeneo_product(akeneo, "SKU-100002")
    odd["values"] = ["not", "an", "object"]  # a shape Akeneo does not answer; a server might
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    deliver(client, cloud_event(odd["uuid"], id="odd-1"))
    deliver(client, cloud_event(product["uuid"], id="good-1"))
    notifications.handle_pending()
    rows = {row.notification_id: row for row in PimNotification.objects.all()}
    assert rows["odd-1"].status == PimNotification.State.FAILED
    assert rows["odd-1"].reason == "cannot be handled: AttributeError (see the worker's log)"
    assert rows["good-1"].status == PimNotification.State.DONE
    assert Job.objects.get().assets == {"product_keys": ["SKU-100001"]}


def test_a_uuid_only_notification_with_a_pim_that_has_no_uuids_fails_with_the_reason(client, settings):
    from pimsync.pim import notifications

    settings.PIM_CONNECTOR = "demo"
    deliver(client, cloud_event(id="by-uuid"))
    deliver(client, {**cloud_event(id="by-key"), "data": {"product": {"identifier": "SKU-NOBODY"}}})
    notifications.handle_pending()
    rows = {row.notification_id: row for row in PimNotification.objects.all()}
    assert rows["by-uuid"].status == PimNotification.State.FAILED
    assert "names products by key only" in rows["by-uuid"].reason
    assert rows["by-key"].status == PimNotification.State.IGNORED


def test_a_notification_whose_task_keeps_dying_ends_failed_after_its_attempts(client, synced):
    from pimsync.pim import notifications

    _world, akeneo, product, _asset_id = synced
    deliver(client, cloud_event(product["uuid"]))
    dying = timezone.now() - notifications.STUCK - timedelta(seconds=1)
    PimNotification.objects.update(status="processing", claimed_at=dying, attempts=notifications.MAX_ATTEMPTS)
    reads = akeneo.calls("GET")
    notifications.handle_pending()
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.FAILED
    assert row.reason == f"its task stopped before finishing, {notifications.MAX_ATTEMPTS} times"
    assert akeneo.calls("GET") == reads  # not handed out again


def test_a_429_pause_is_waited_out_without_using_up_attempts(client, synced):
    from pimsync.pim import notifications

    world, akeneo, product, asset_id = synced
    akeneo.set_value("SKU-100001", "name", "Summit boot", locale="en_US")
    deliver(client, cloud_event(product["uuid"]))
    akeneo.faults.add("GET", 429, headers={"Retry-After": "600"})
    start = timezone.now()
    for minutes in range(0, 10, 2):  # the poll's schedule runs the task every 2 minutes
        with time_machine.travel(start + timedelta(minutes=minutes, seconds=1)):
            notifications.handle_pending()
    row = PimNotification.objects.get()
    assert row.status == PimNotification.State.RECEIVED and row.attempts == 0
    assert "429" in row.reason or "slow down" in row.reason
    with time_machine.travel(start + timedelta(minutes=10, seconds=5)):
        world.drain()
    assert PimNotification.objects.get().status == PimNotification.State.DONE
    assert world.aem.assets[asset_id]["dc:title"] == "Summit boot"
