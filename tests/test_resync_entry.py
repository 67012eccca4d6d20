"""Re-sync from outside the dashboard: `manage.py resync`, the signed PIM webhook, and the
sandbox's `simulate_pim_change` that drives the webhook the way a PIM would."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_q.models import OrmQ

from pimsync import mapping
from pimsync.adobe import signatures
from pimsync.models import Asset, DemoProduct, Event, Job, SandboxAsset, Status, SyncState
from pimsync.outbound import http
from pimsync.pim import webhook
from tests.conftest import STANDARD_MAPPING, product, run_queued_tasks

pytestmark = pytest.mark.django_db

SECRET = "pim-whsec-test-0001"


def asset(n: int, *, state: str = SyncState.IN_STEP, sku: str | None = None, folder: str = "/content/dam/products"):
    sku = sku or f"SKU-{100000 + n}"
    return Asset.objects.create(
        asset_id=f"urn:aaid:aem:00000000-0000-4000-8000-{n:012d}",
        path=f"{folder}/{sku}_front.png",
        name=f"{sku}_front.png",
        mime_type="image/png",
        product_key=sku,
        state=state,
    )


def resync(*args: str) -> str:
    out = io.StringIO()
    call_command("resync", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def fast(settings):
    """Re-syncs as fast as the tests can go (the rate spaces events in real time)."""
    settings.PIMSYNC_RESYNC_RATE = 100_000
    return settings


# --- manage.py resync ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, spec, expected",
    [
        (["--all"], {"all": True}, {1, 2, 3, 4}),
        (
            ["--product-key", "SKU-100001", "--product-key", "SKU-100003"],
            {"product_keys": ["SKU-100001", "SKU-100003"]},
            {1, 3},
        ),
        (["--path-prefix", "/content/dam/lifestyle/"], {"path_prefix": "/content/dam/lifestyle/"}, {4}),
        (["--state", "failing"], {"state": "failing"}, {2}),
    ],
)
def test_each_selector_starts_a_job_for_exactly_its_assets(args, spec, expected):
    asset(1)
    asset(2, state=SyncState.FAILING)
    asset(3)
    asset(4, folder="/content/dam/lifestyle")
    asset(5, state=SyncState.DELETED)

    out = resync(*args, "--why", "supplier names were fixed")

    job = Job.objects.get()
    assert job.kind == Job.Kind.RESYNC and job.assets == spec
    assert job.why == "supplier names were fixed"
    assert job.total == len(expected)
    assert f"Job {job.pk}:" in out
    assert f"/admin/pimsync/event/jobs/{job.pk}/" in out
    run_queued_tasks()  # the worker's part: one event per selected asset
    assert {int(e.asset_id[-12:]) for e in Event.objects.filter(job=job)} == expected


def test_the_default_reason_names_the_command():
    asset(1)
    resync("--all")
    assert Job.objects.get().why == "resync command"


def test_a_dry_run_counts_and_lists_the_first_paths_and_changes_nothing():
    for n in range(25):
        asset(n)
    out = resync("--all", "--dry-run")
    assert "25 asset(s) would be re-synced" in out
    assert "/content/dam/products/SKU-100000_front.png" in out
    assert "/content/dam/products/SKU-100019_front.png" in out
    assert "SKU-100020_front.png" not in out
    assert "… and 5 more" in out
    assert not Job.objects.exists() and not Event.objects.exists() and not OrmQ.objects.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--state", "sideways"], "state must be one of: in_step, stale, failing, never_synced, deleted"),
        (["--path-prefix", "content/dam"], "a path prefix starts with /"),
        (["--product-key", ""], "product_keys must be a list of non-empty strings"),
    ],
)
def test_a_bad_selector_value_is_refused_with_the_reason(args, message):
    asset(1)
    with pytest.raises(CommandError, match=message):
        resync(*args)
    assert not Job.objects.exists()


@pytest.mark.parametrize("args", [[], ["--all", "--state", "stale"]])
def test_exactly_one_selector_is_required(args):
    with pytest.raises(CommandError, match="one of the arguments|not allowed with"):
        resync(*args)


def test_wait_runs_the_job_here_until_every_asset_is_written(client, world, fast):
    for n in (1, 2):
        a = asset(n, state=SyncState.NEVER_SYNCED)
        world.aem.add_asset(a.asset_id, {})
        world.pim.products[a.product_key] = product(a.product_key, supplier="Acme Outdoor")

    out = resync("--all", "--wait")

    job = Job.objects.get()
    assert job.status == Job.State.FINISHED and job.succeeded == 2
    assert f"Job {job.pk} finished: 2 of 2 done: 2 written" in out
    assert {p["asset_id"] for p in world.aem.patches} == set(Asset.objects.values_list("asset_id", flat=True))
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}


def test_wait_fails_when_an_asset_could_not_be_written(client, world, fast):
    written, unknown = asset(1, state=SyncState.NEVER_SYNCED), asset(2, state=SyncState.NEVER_SYNCED)
    for a in (written, unknown):
        world.aem.add_asset(a.asset_id, {})
    world.pim.products[written.product_key] = product(written.product_key)  # the other is not in the PIM

    out = io.StringIO()
    with pytest.raises(CommandError, match=r"Job \d+ finished: 2 of 2 done: 1 written, 0 unchanged, 1 failed"):
        call_command("resync", "--all", "--wait", stdout=out)
    assert "2/2 done" in out.getvalue()


def test_mapping_affected_checks_the_mapping_first_when_it_changed_since(client, world, fast):
    for n in (1, 2):
        world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}")
        world.adobe.deliver(client, world.upload(client, n))
    world.drain()
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}
    changed = {
        **STANDARD_MAPPING,
        "rules": [*STANDARD_MAPPING["rules"], {"pim_field": "SKUID", "metadata_path": "pim:sku"}],
    }
    mapping.import_config(changed)

    dry = resync("--mapping-affected", "--dry-run")
    assert "0 asset(s) would be re-synced" in dry and "the check runs first" in dry
    assert not Job.objects.exists()

    out = resync("--mapping-affected")
    assert "2 asset(s) affected" in out
    check = Job.objects.get(kind=Job.Kind.AFFECTED)
    assert check.status == Job.State.FINISHED
    job = Job.objects.get(kind=Job.Kind.RESYNC)
    assert job.assets == {"mapping_affected": True} and job.total == 2

    resync("--mapping-affected")  # checked since the change: no second check
    assert Job.objects.filter(kind=Job.Kind.AFFECTED).count() == 1


# --- POST /webhooks/pim -------------------------------------------------------------------------


@pytest.fixture
def pim_secret(settings):
    settings.PIM_WEBHOOK_SECRET = SECRET
    return settings


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> str:
    return webhook.signed_header(body, secret, int(time.time() if at is None else at))


def send(client, body: bytes | dict, header: str | None = "sign", path: str = "/webhooks/pim"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {} if header is None else {"HTTP_X_PIMSYNC_SIGNATURE": signed(body) if header == "sign" else header}
    return client.post(path, data=body, content_type="application/json", **headers)


def test_a_signed_change_marks_the_products_assets_stale_and_resyncs_them(world, pim_secret, fast):
    csrf_checking = Client(enforce_csrf_checks=True)
    for n in (1, 2):
        a = asset(n, sku="SKU-100777")
        world.aem.add_asset(a.asset_id, {})
    other = asset(3)
    world.pim.products["SKU-100777"] = product("SKU-100777", supplier="New Supplier")

    response = send(csrf_checking, {"product_keys": ["SKU-100777", "SKU-100777", "SKU-NOT-KNOWN"]})

    assert response.status_code == 202
    job = Job.objects.get()
    assert response.json() == {"accepted": 2, "assets": 2, "job": job.pk}
    assert job.assets == {"product_keys": ["SKU-100777", "SKU-NOT-KNOWN"]} and job.why == "PIM webhook"
    stale = Asset.objects.filter(product_key="SKU-100777")
    assert {(a.state, a.stale_cause) for a in stale} == {(SyncState.STALE, "pim")}
    assert Asset.objects.get(pk=other.pk).state == SyncState.IN_STEP
    assert world.pim.calls == [] and world.aem.calls == []  # nothing called inside the request

    world.drain()
    assert {p["asset_id"] for p in world.aem.patches} == {a.asset_id for a in stale}
    assert {"op": "add", "path": "/wknd-suppliername", "value": "NEW SUPPLIER"} in world.aem.patches[0]["operations"]
    assert {a.state for a in stale.all()} == {SyncState.IN_STEP}


def test_the_trailing_slash_is_optional_and_unknown_products_start_no_job(client, pim_secret):
    response = send(client, {"product_keys": ["SKU-NOBODY"]}, path="/webhooks/pim/")
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "assets": 0, "job": None}


def refused(client, body: bytes | dict, header: str | None) -> dict:
    before = set(Asset.objects.values_list("asset_id", "state"))
    response = send(client, body, header)
    assert response.status_code == 401, response.content
    assert not Job.objects.exists() and set(Asset.objects.values_list("asset_id", "state")) == before
    return response.json()


def test_an_unsigned_request_is_refused(client, pim_secret):
    asset(1)
    assert "header is missing" in refused(client, {"product_keys": ["SKU-100001"]}, None)["error"]


def test_a_request_signed_with_another_secret_is_refused(client, pim_secret):
    body = b'{"product_keys": ["SKU-100001"]}'
    assert "no v1 signature matches" in refused(client, body, signed(body, "someone-elses-secret"))["error"]


def test_a_tampered_body_is_refused(client, pim_secret):
    header = signed(b'{"product_keys": ["SKU-100001"]}')
    refused(client, b'{"product_keys": ["SKU-100002"]}', header)


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_signature_more_than_five_minutes_old_or_ahead_is_refused(client, pim_secret, offset):
    body = b'{"product_keys": ["SKU-100001"]}'
    error = refused(client, body, signed(body, at=time.time() + offset))["error"]
    assert "more than 300 s from now" in error


def test_a_signature_just_inside_the_window_is_accepted(client, pim_secret):
    body = b'{"product_keys": ["SKU-100001"]}'
    assert send(client, body, signed(body, at=time.time() - 290)).status_code == 202


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=" + "a" * 64,  # no timestamp
        "t=1700000000",  # no signature
        "t=soon,v1=" + "a" * 64,
        "t=1,t=2,v1=" + "a" * 64,
        "t={t},v1=not-hex",
        "t={t},v0={sig}",  # only v1 is a scheme we verify
        "t={t}," + ",".join(["v1=" + "b" * 64] * 9),
        "t={t},v1=" + "c" * 5000,
    ],
)
def test_a_malformed_signature_header_is_refused(client, pim_secret, header):
    body = b'{"product_keys": ["SKU-100001"]}'
    now = int(time.time())
    refused(client, body, header.format(t=now, sig=webhook.signature(body, SECRET, now)))


def test_the_endpoint_does_not_exist_while_no_secret_is_set(client, settings):
    settings.PIM_WEBHOOK_SECRET = ""
    assert send(client, {"product_keys": ["SKU-100001"]}).status_code == 404
    assert client.get("/webhooks/pim").status_code == 404


def test_only_post_is_answered(client, pim_secret):
    assert client.get("/webhooks/pim").status_code == 405


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["SKU-1"]', "exactly one member"),
        (b'{"product_keys": ["SKU-1"], "extra": 1}', "exactly one member"),
        (b'{"product_keys": "SKU-1"}', "a list of 1 to 1000"),
        (b'{"product_keys": []}', "a list of 1 to 1000"),
        (b'{"product_keys": [""]}', "product_keys[0] must be a non-empty string"),
        (b'{"product_keys": ["SKU-1", 7]}', "product_keys[1]"),
        (b'{"product_keys": ["SKU\\u0000"]}', "printable"),
        (json.dumps({"product_keys": ["x" * 256]}).encode(), "at most 255"),
        (json.dumps({"product_keys": [f"SKU-{n}" for n in range(1001)]}).encode(), "a list of 1 to 1000"),
        (b'{"product_keys": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deep|product_keys"),
    ],
)
def test_a_body_that_is_not_a_list_of_product_keys_is_refused_with_the_reason(client, pim_secret, body, message):
    response = send(client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert any(part in error for part in message.split("|")), error
    assert not Job.objects.exists()


def test_a_thousand_keys_are_accepted(client, pim_secret):
    keys = [f"SKU-{n}" for n in range(1000)]
    assert send(client, {"product_keys": keys}).json()["accepted"] == 1000


def test_a_body_over_256_kb_is_refused_unread(client, pim_secret):
    body = b'{"product_keys": ["' + b"x" * (256 * 1024) + b'"]}'
    assert send(client, body).status_code == 413


def test_a_rotated_secret_accepts_either_secret_and_either_signature(client, settings):
    settings.PIM_WEBHOOK_SECRET = "new-secret-2, old-secret-1"
    bodies = [json.dumps({"product_keys": [f"SKU-10000{n}"]}).encode() for n in range(4)]
    now = int(time.time())
    assert send(client, bodies[0], signed(bodies[0], "old-secret-1")).status_code == 202
    assert send(client, bodies[1], signed(bodies[1], "new-secret-2")).status_code == 202
    retired, current = (webhook.signature(bodies[2], secret, now) for secret in ("retired-0", "new-secret-2"))
    both = f"t={now},v1={retired},v1={current}"
    assert send(client, bodies[2], both).status_code == 202
    assert send(client, bodies[3], signed(bodies[3], "retired-0")).status_code == 401


def test_a_replayed_signed_request_is_a_duplicate_and_starts_nothing(client, pim_secret):
    asset(1)
    body = b'{"product_keys": ["SKU-100001"]}'
    header = signed(body)
    assert send(client, body, header).status_code == 202
    now = header.split(",")[0].removeprefix("t=")
    forged_extra = f"{header},v1={'0' * 64}"  # the same signed message with another v1 beside it
    for replay in [header] * 9 + [forged_extra, f"v1={header.split('v1=')[1]},t={now}"]:
        response = send(client, body, replay)
        assert response.status_code == 200, response.content
        assert response.json() == {"accepted": 0, "duplicate": True, "job": None}
    assert Job.objects.count() == 1


def test_a_replay_is_remembered_until_its_signature_has_expired_and_then_purged(client, pim_secret, time_machine):
    from pimsync import retention

    time_machine.move_to(time.time(), tick=False)
    asset(1)
    body = b'{"product_keys": ["SKU-100001"]}'
    header = signed(body)
    assert send(client, body, header).status_code == 202
    retention.purge()
    assert send(client, body, header).status_code == 200  # still remembered: its window runs
    time_machine.shift(301)
    assert send(client, body, header).status_code == 401  # too old now, remembered or not
    assert retention.purge().deleted["PIM webhook signatures"] == 1


def test_a_change_a_waiting_resync_already_covers_starts_no_second_job(world, client, pim_secret, fast):
    for n in (1, 2):
        world.aem.add_asset(asset(n, sku="SKU-100777").asset_id, {})
    world.pim.products["SKU-100777"] = product("SKU-100777")
    body = b'{"product_keys": ["SKU-100777"]}'
    now = time.time()
    first = send(client, body, signed(body, at=now)).json()["job"]
    # The PIM says it again, signed anew: the first job's events have not read the PIM yet.
    assert send(client, body, signed(body, at=now - 10)).json()["job"] == first
    assert Job.objects.count() == 1
    world.drain()  # its events read the PIM and wrote AEM
    later = send(client, body, signed(body, at=now - 20)).json()["job"]
    assert later != first and Job.objects.count() == 2


def test_the_log_never_holds_the_secret_or_the_signature(client, pim_secret, caplog):
    body = b'{"product_keys": ["SKU-100001"]}'
    good, bad = signed(body), signed(body, "wrong-secret")
    with caplog.at_level(logging.DEBUG):
        send(client, body, good)
        send(client, body, bad)
    logged = caplog.text
    assert "PIM webhook refused" in logged and "PIM webhook: 1 product(s)" in logged
    for secret in (SECRET, good.split("v1=")[1], bad.split("v1=")[1]):
        assert secret not in logged


# --- simulate_pim_change, end to end in the sandbox ----------------------------------------------


@pytest.fixture
def live_sandbox(live_server, settings, tmp_path, monkeypatch):
    """pimsync in sandbox mode, served on loopback: AEM, IMS and the key server are its own."""
    from pimsync.adobe import ims
    from pimsync.sandbox import keys

    monkeypatch.setenv("PIMSYNC_SANDBOX_KEY_FILE", str(tmp_path / "key.pem"))
    keys.private_key.cache_clear()
    signatures.keys.clear()
    base = live_server.url
    settings.PIMSYNC_SANDBOX = True
    settings.PIMSYNC_PUBLIC_URL = base
    settings.AEM_AUTHOR_URL = base + "/sandbox/aem"
    settings.ADOBE_IMS_TOKEN_URL = base + "/sandbox/ims/token/v3"
    settings.ADOBE_EVENTS_KEY_BASE_URL = base + "/sandbox/keys"
    settings.PIM_CONNECTOR = "demo"
    settings.PIM_WEBHOOK_SECRET = "sandbox-pim-webhook-secret"
    settings.PIMSYNC_RESYNC_RATE = 100_000
    ims.forget()
    demo = Path(__file__).resolve().parent.parent / "pimsync" / "demo" / "mappings.json"
    mapping.import_config(json.loads(demo.read_text()))
    yield settings
    # This thread's keep-alive connections to the live server each hold a server thread and its
    # database connection open; PostgreSQL would then refuse to drop the test database.
    http.session().close()
    keys.private_key.cache_clear()
    signatures.keys.clear()
    ims.forget()


@pytest.mark.django_db(transaction=True)
def test_simulate_pim_change_turns_the_asset_stale_then_in_step_with_the_new_value(live_sandbox):
    from pimsync.management.commands.simulate_upload import build_event, deliver

    shot = SandboxAsset.objects.create(
        asset_id="urn:aaid:aem:5a4d0000-0000-4000-8000-000000000201",
        path="/content/dam/pimsync-demo/products/SKU-100201_front_001.png",
        name="SKU-100201_front_001.png",
    )
    deliver(live_sandbox.PIMSYNC_PUBLIC_URL + "/webhooks/aem", json.dumps(build_event(shot)).encode(), 1)
    run_queued_tasks()
    shot.refresh_from_db()
    assert shot.metadata["wknd-suppliername"] == "CASCADE GEAR CO."
    assert Asset.objects.get(pk=shot.pk).state == SyncState.IN_STEP

    out = io.StringIO()
    call_command(
        "simulate_pim_change", "SKU-100201", "SupplierName=Acme Outdoor", "values.name.0.data=Dome tent 3", stdout=out
    )

    assert 'SupplierName: "Cascade Gear Co." → "Acme Outdoor"' in out.getvalue()
    assert "marked 1 asset(s) stale" in out.getvalue()
    assert Asset.objects.get(pk=shot.pk).state == SyncState.STALE
    assert DemoProduct.objects.get(pk="SKU-100201").data["SupplierName"] == "Acme Outdoor"

    run_queued_tasks()  # the worker: the re-sync's event reads the changed product from the demo PIM
    shot.refresh_from_db()
    assert shot.metadata["wknd-suppliername"] == "ACME OUTDOOR"
    assert shot.metadata["dc:title"] == "Dome tent 3"
    assert Asset.objects.get(pk=shot.pk).state == SyncState.IN_STEP
    assert Event.objects.filter(type="pimsync.asset.resync", status=Status.SUCCEEDED).count() == 1


def test_simulate_pim_change_refuses_outside_sandbox_mode(settings):
    settings.PIMSYNC_SANDBOX = False
    with pytest.raises(CommandError, match="needs sandbox mode"):
        call_command("simulate_pim_change", "SKU-100201", "SupplierName=x", stdout=io.StringIO())


@pytest.mark.parametrize(
    "change, message",
    [
        ("SupplierName", "is not field=value"),
        ("values.name.9.data=x", "is not an index of a list of 3"),
        ("nothing.here=x", "no object or list at 'nothing'"),
    ],
)
def test_simulate_pim_change_refuses_a_change_it_cannot_make(settings, change, message):
    settings.PIMSYNC_SANDBOX, settings.PIM_CONNECTOR, settings.PIM_WEBHOOK_SECRET = True, "demo", "s"
    with pytest.raises(CommandError, match=message):
        call_command("simulate_pim_change", "SKU-100201", change, stdout=io.StringIO())
    assert not DemoProduct.objects.exists()


def test_sandbox_mode_gives_the_pim_webhook_a_secret_and_production_none():
    from tests.test_sandbox import fresh_settings

    assert fresh_settings({"DEBUG": "1"}, "print(bool(settings.PIM_WEBHOOK_SECRET))") == "True"
    assert fresh_settings({"DEBUG": "0"}, "print(bool(settings.PIM_WEBHOOK_SECRET))") == "False"
