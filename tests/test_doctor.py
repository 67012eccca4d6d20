"""`manage.py doctor` against loopback stand-ins of a whole deployment: every check passing, each
system failing in the way a real deployment does (a wrong secret, a missing scope, the classic
endpoints refusing the S2S token, no link attribute in the PIM, the journal refusing the token),
the write test per PATCH path style, and the overview showing the last run."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from pimsync.adobe import ims
from pimsync.models import Asset, DoctorRun, Event, Status
from pimsync.pim import akeneo as akeneo_client
from standins.journal import ORG, JournalStub
from tests.conftest import product

pytestmark = pytest.mark.django_db

ASSET = "urn:aaid:aem:0000cccc-0000-4000-8000-000000000001"
PATH = "/content/dam/shop/SKU-100001_front.png"


@pytest.fixture
def deployment(world, settings):
    """Every system of a deployment on loopback, configured as an operator would: IMS (tokens
    shaped as IMS's, carrying their scopes), the key server, the journal, AEM with one known asset,
    the PIM with one product, and a webhook secret."""
    world.ims.jwt_tokens = True
    world.journal = JournalStub(world.ims.server, world.ims)
    settings.ADOBE_JOURNAL_URL = world.journal.url
    settings.ADOBE_IMS_ORG_ID = ORG
    settings.ADOBE_SCOPES = "AdobeID,openid,aem.folders,aem.assets.author,adobeio_api"
    settings.PIM_WEBHOOK_SECRET = "a-pim-webhook-secret-of-32-chars"
    world.aem.add_asset(ASSET, {"dc:title": "Trail backpack", "wknd-skuid": "SKU-100001"}, path=PATH)
    Asset.objects.create(
        asset_id=ASSET, path=PATH, name="SKU-100001_front.png", last_written={"wknd-skuid": "SKU-100001"}
    )
    world.pim.products["SKU-100001"] = product("SKU-100001")
    return world


def doctor(*args: str) -> tuple[int, str]:
    """Run the command; its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("doctor", *args, stdout=out)
        status = 0
    except SystemExit as exit:
        status = exit.code
    return status, out.getvalue()


def checks(*args: str) -> tuple[int, dict[str, dict]]:
    """Run it with --json: the exit status and each check's line by its system."""
    status, out = doctor("--json", *args)
    return status, {line["system"]: line for line in json.loads(out)["checks"]}


def test_every_check_of_a_working_deployment_passes(deployment):
    status, out = doctor("--product-key", "SKU-100001")

    assert status == 0, out
    for system in (
        "IMS token",
        "IMS scopes",
        "I/O Events key server",
        "journal",
        "AEM metadata",
        "backfill folder lookup",
        "backfill path lookup",
        "PIM product",
        "webhook secret",
    ):
        assert f"OK    {system}: asked" in out
    assert "FAIL" not in out
    assert "SKIP  PIM write-back attribute" in out  # PIM_ASSET_LINK_ATTRIBUTE is not set
    assert "asked GET " in out and f"/adobe/assets/{ASSET}/metadata → 200: 2 properties, ETag" in out
    assert "a-pim-webhook-secret" not in out and "test-client-secret" not in out
    run = DoctorRun.last()
    assert run.failed == 0 and run.ok >= 9
    # One read of the journal's end; nothing of the deployment was written.
    assert world_requests(deployment) == [{"latest": "true"}]
    assert not deployment.aem.patches and not Event.objects.exists()


def world_requests(world) -> list[dict]:
    return world.journal.requests


def test_a_wrong_client_secret_names_ims_and_what_to_do(deployment, settings):
    settings.ADOBE_CLIENT_SECRET = "not-the-secret"
    ims.forget()

    status, lines = checks()

    assert status == 1
    line = lines["IMS token"]
    assert line["status"] == "FAIL" and "IMS refused the client credentials (401)" in line["answered"]
    assert "check ADOBE_CLIENT_ID and ADOBE_CLIENT_SECRET" in line["todo"]
    assert "not-the-secret" not in json.dumps(lines)
    assert lines["journal"]["status"] == lines["AEM metadata"]["status"] == "SKIP"  # no token to try them with


def test_a_token_without_the_journal_scope_fails_while_the_journal_is_configured(deployment):
    deployment.ims.granted_scopes = "AdobeID,openid,aem.folders,aem.assets.author"

    status, lines = checks()

    assert status == 1
    line = lines["IMS scopes"]
    assert (
        line["status"] == "FAIL" and "no adobeio_api, which the journal (ADOBE_JOURNAL_URL) needs" in line["answered"]
    )
    assert "add the I/O Management API to the Developer Console project" in line["todo"]


def test_a_journal_that_refuses_the_token_names_the_journal_and_its_credentials(deployment):
    deployment.journal.faults.add("GET", 401, times=2)  # the token renewed once, refused again

    status, lines = checks()

    assert status == 1
    line = lines["journal"]
    assert line["status"] == "FAIL" and "answered 401" in line["answered"]
    assert "I/O Management API" in line["todo"] and "ADOBE_IMS_ORG_ID" in line["todo"]


def test_classic_endpoints_refusing_the_s2s_token_fail_the_backfill_line_with_the_credential_to_use(deployment):
    deployment.aem.classic_needs_service_token = True

    status, lines = checks()

    assert status == 1
    assert lines["backfill folder lookup"]["status"] == "OK"  # the Folders API takes the S2S token
    line = lines["backfill path lookup"]
    assert line["status"] == "FAIL" and "(403)" in line["answered"]
    assert "AEM service credential" in line["answered"] and "local development token" in line["answered"]
    assert "AEM_SERVICE_CREDENTIALS" in line["todo"]


def test_with_a_service_credential_the_classic_path_lookup_passes(deployment, settings):
    from pimsync.adobe import service_credentials
    from standins.adobe import service_credential

    deployment.aem.classic_needs_service_token = True
    settings.AEM_SERVICE_CREDENTIALS = json.dumps(service_credential())
    service_credentials.forget()
    try:
        status, lines = checks()
    finally:
        service_credentials.forget()
    assert status == 0, lines
    assert lines["backfill path lookup"]["answered"] == f"200: {ASSET}"
    assert "the AEM service credential" in lines["backfill path lookup"]["asked"]


def test_an_akeneo_without_the_link_attribute_names_the_pim_and_what_to_create(akeneo_world, deployment, settings):
    akeneo_world.akeneo.attributes[:] = [a for a in akeneo_world.akeneo.attributes if a["code"] != "aem_links"]
    akeneo_client.forget()

    status, lines = checks()

    assert status == 1
    assert lines["PIM token"]["status"] == "OK" and lines["PIM attributes"]["status"] == "OK"
    line = lines["PIM write-back attribute"]
    assert line["status"] == "FAIL" and "has no attribute 'aem_links'" in line["answered"]
    assert "create a text attribute 'aem_links'" in line["todo"]


def test_an_akeneo_whose_link_attribute_is_not_text_fails(akeneo_world, deployment):
    for attribute in akeneo_world.akeneo.attributes:
        if attribute["code"] == "aem_links":
            attribute["type"] = "pim_catalog_simpleselect"
    akeneo_client.forget()

    status, lines = checks()

    assert status == 1 and "pim_catalog_simpleselect" in lines["PIM write-back attribute"]["answered"]


def test_a_short_webhook_secret_fails_without_being_shown(deployment, settings):
    settings.AKENEO_EVENT_SECRETS = ["short-one"]

    status, lines = checks()

    assert status == 1
    assert lines["webhook secret"]["status"] == "FAIL"  # the last secret line: AKENEO_EVENT_SECRETS
    assert "short-one" not in json.dumps(lines)


def test_the_write_test_writes_the_current_value_back_once_per_path_style(deployment):
    status, out = doctor("--write-test", "--asset", ASSET)

    assert status == 0, out
    assert "OK    AEM write test: asked PATCH wknd-skuid with its current value" in out
    assert "accepted: pointer, asset-metadata; refused: bare (400: path 'wknd-skuid'" in out
    assert [p["operations"] for p in deployment.aem.patches] == [
        [{"op": "replace", "path": "/wknd-skuid", "value": "SKU-100001"}],
        [{"op": "replace", "path": "/assetMetadata/wknd-skuid", "value": "SKU-100001"}],
    ]
    assert deployment.aem.assets[ASSET] == {"dc:title": "Trail backpack", "wknd-skuid": "SKU-100001"}  # unchanged
    asset = Asset.objects.get()
    assert asset.lease_token == "" and asset.last_written == {"wknd-skuid": "SKU-100001"}


def test_the_write_test_echo_is_recognised_as_pimsyncs_own_write(deployment, client, adobe, settings):
    from tests.conftest import make_event, run_queued_tasks

    settings.ADOBE_TECHNICAL_ACCOUNT_EMAIL = ""  # only the written values can tell the echo
    Asset.objects.filter(pk=ASSET).update(last_written={})
    assert doctor("--write-test")[0] == 0  # the newest known asset; dc:title is written back

    echo = make_event(1, type="aem.assets.asset.metadata_updated", asset_id=ASSET)
    echo["data"]["assetMetadata"] = {"dc:title": "Trail backpack", "event:updated": {"dc:title": "Trail backpack"}}
    assert adobe.deliver(client, echo).status_code == 200
    run_queued_tasks()

    event = Event.objects.get()
    assert event.status == Status.IGNORED and event.reason.startswith("echo of pimsync's own write")
    assert len(deployment.aem.patches) == 2  # the doctor's two; nothing written for the echo


def test_when_aem_wants_another_path_style_the_write_test_says_which_to_set(deployment, settings):
    deployment.aem.path_styles = {"asset-metadata"}

    status, lines = checks("--write-test")

    assert status == 1
    line = lines["AEM write test"]
    assert "accepted: asset-metadata" in line["answered"] and line["todo"] == "set AEM_PATCH_PATH_STYLE=asset-metadata"


def test_the_write_test_needs_an_asset_pimsync_knows(deployment):
    other = "urn:aaid:aem:0000cccc-0000-4000-8000-000000000002"
    deployment.aem.add_asset(other, {"dc:title": "x"})

    status, lines = checks("--write-test", "--asset", other)

    assert status == 1 and "could not be recognised" in lines["AEM write test"]["answered"]
    assert not deployment.aem.patches and not Asset.objects.filter(pk=other).exists()


def test_a_bad_asset_id_is_a_clear_error(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="is not an AEM asset id"):
        call_command("doctor", "--asset", "not-an-id", stdout=io.StringIO())


def test_the_overview_shows_the_last_run_and_its_failing_lines(deployment, client, people, settings):
    settings.ADOBE_CLIENT_SECRET = "not-the-secret"
    ims.forget()
    doctor()
    client.force_login(people["Viewers"])

    page = client.get("/admin/").content.decode()

    run = DoctorRun.last()
    assert 'id="doctor-summary"' in page and f"{run.ok} OK, {run.failed} failed, {run.skipped} skipped" in page
    assert "IMS token" in page and "IMS refused the client credentials (401)" in page
    assert "not-the-secret" not in page


# --- against the sandbox that `make run` starts ------------------------------------------------


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_every_check_passes_against_a_running_sandbox(tmp_path):
    import subprocess
    import sys
    import time

    from tests.test_sandbox import ROOT, free_port, manage, sandbox_env, serving

    port = free_port()
    env = sandbox_env(port, tmp_path)
    manage(env, "migrate", "--noinput")
    manage(env, "seed")
    with serving(env, port):
        manage(env, "simulate_upload", "--count", "1", "--seed", "5")  # an asset pimsync knows
        deadline = time.monotonic() + 60
        while Event.objects.filter(status__in=[Status.RECEIVED, Status.RETRYING, Status.PROCESSING]).exists():
            assert time.monotonic() < deadline, "the worker did not finish the upload"
            time.sleep(0.3)
        result = subprocess.run(
            [sys.executable, "manage.py", "doctor", "--write-test", "--product-key", "SKU-100201"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "FAIL" not in result.stdout
    for system in ("IMS token", "IMS scopes", "journal", "AEM metadata", "AEM write test", "backfill path lookup"):
        assert f"OK    {system}:" in result.stdout
    assert "accepted: pointer, asset-metadata, bare" in result.stdout
    assert DoctorRun.last().failed == 0
