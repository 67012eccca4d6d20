"""Backfill: assets pimsync never saw, from AEM's metadata export, an asset_id,path CSV or a folder
walk, registered and re-synced against the AEM and PIM stand-ins; and the dashboard's upload form."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from dashboard import backfill as backfill_page
from pimsync import backfill as backfill_module
from pimsync import mapping
from pimsync.models import Asset, Event, Job, SandboxAsset, SyncState
from tests.conftest import FIXTURES, product, run_queued_tasks

pytestmark = pytest.mark.django_db

EXPORT = FIXTURES / "aem-metadata-export.csv"
UPLOAD = "/admin/pimsync/asset/backfill/"


def uid(n: int) -> str:
    return f"urn:aaid:aem:0000aaaa-0000-4000-8000-{n:012d}"


@pytest.fixture
def aem_assets(world, settings):
    """The assets of the export as AEM holds them (SKU-100006 was deleted: AEM answers 404)."""
    settings.PIMSYNC_RESYNC_RATE = 100_000
    paths = {
        1: "/content/dam/products/SKU-100001_front.png",
        2: "/content/dam/products/SKU-100002_front.png",
        3: "/content/dam/products/tents/SKU-100003_back.jpg",
        7: "/content/dam/lifestyle/SKU-100007_on the trail #2.jpg",
    }
    for n, path in paths.items():
        world.aem.add_asset(uid(n), {"dc:title": "from AEM"}, path=path)
        world.pim.products[f"SKU-10000{n}"] = product(f"SKU-10000{n}", supplier="Cascade Gear")
    return world


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill", *args, stdout=out)
    return out.getvalue()


def test_an_aem_metadata_export_registers_the_good_rows_and_reports_the_bad_ones_by_line(aem_assets):
    known = Asset.objects.create(
        asset_id=uid(2), path="/content/dam/products/SKU-100002_front.png", state=SyncState.IN_STEP
    )

    out = backfill(str(EXPORT))

    assert "line 6: products/SKU-100004_front.png: not an absolute path" in out
    assert "line 7: /content/other/SKU-100005_front.png: not under /content/dam/" in out
    assert "line 8: /content/dam/products/SKU-100006_front.png: AEM has no asset at this path (404)" in out
    assert "line 9: /content/dam/products/SKU-100001_front.png: duplicate of line 2" in out
    assert "line 10: /content/dam/products/../../conf/secret.png: the path has an empty, '.' or '..' segment" in out
    assert "9 row(s) read from aem-metadata-export.csv: 4 asset(s) found, 5 skipped" in out
    assert "Registered 3 new asset(s); 1 already known" in out

    new = Asset.objects.filter(known_from="backfill").order_by("path")
    assert [(a.asset_id, a.path, a.state) for a in new] == [
        (uid(7), "/content/dam/lifestyle/SKU-100007_on the trail #2.jpg", SyncState.NEVER_SYNCED),
        (uid(1), "/content/dam/products/SKU-100001_front.png", SyncState.NEVER_SYNCED),
        (uid(3), "/content/dam/products/tents/SKU-100003_back.jpg", SyncState.NEVER_SYNCED),
    ]
    assert [a.mime_type for a in new] == ["image/jpeg", "image/png", "image/jpeg"]  # from dc:format
    assert [a.product_key for a in new] == ["SKU-100007", "SKU-100001", "SKU-100003"]  # the mapping's key rule
    known.refresh_from_db()
    assert known.state == SyncState.IN_STEP and known.known_from == "event"  # never downgraded
    # The path with a space and a # reached AEM whole: quoted, it was not cut at the #.
    assert "/content/dam/lifestyle/SKU-100007_on the trail #2.jpg.json?" in aem_assets.aem.path_calls

    job = Job.objects.get()
    assert job.why == "backfill aem-metadata-export.csv"
    assert sorted(job.assets["asset_ids"]) == sorted([uid(1), uid(2), uid(3), uid(7)])
    assert f"/admin/pimsync/event/jobs/{job.pk}/" in out

    run_queued_tasks()
    assert {p["asset_id"] for p in aem_assets.aem.patches} == {uid(1), uid(2), uid(3), uid(7)}
    assert aem_assets.aem.assets[uid(7)]["wknd-suppliername"] == "CASCADE GEAR"
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}


def test_a_dry_run_resolves_and_reports_without_registering(aem_assets):
    out = backfill(str(EXPORT), "--dry-run")
    assert "4 asset(s) found, 5 skipped. Would register 4 new asset(s); 0 already known" in out
    assert "line 8:" in out
    assert not Asset.objects.exists() and not Job.objects.exists()


def test_an_asset_id_csv_registers_only_the_pairs_aem_confirms(aem_assets, tmp_path):
    aem_assets.aem.add_asset(uid(90), {"dc:title": "Board minutes"}, path="/content/dam/legal/minutes.pdf")
    csv = tmp_path / "ids.csv"
    csv.write_text(
        "asset_id,path\n"
        f"{uid(1)},/content/dam/products/SKU-100001_front.png\n"
        "urn:aaid:aem:not-a-uuid,/content/dam/products/x.png\n"
        f"{uid(3).upper().replace('URN:AAID:AEM:', 'urn:aaid:aem:')},/content/dam/products/tents/SKU-100003_back.jpg\n"
        f"{uid(1)},/content/dam/products/elsewhere.png\n"
        f"{uid(90)},/content/dam/products/SKU-100002_front.png\n"
        f"{uid(91)},/content/dam/products/SKU-100091_gone.png\n"
    )
    out = backfill(str(csv))
    assert "line 3: /content/dam/products/x.png: 'urn:aaid:aem:not-a-uuid' is not an AEM asset id" in out
    assert "line 5: /content/dam/products/elsewhere.png: duplicate of line 2" in out
    assert (
        f"line 6: /content/dam/products/SKU-100002_front.png: AEM's asset at this path is {uid(2)}, not {uid(90)}"
        in out
    )
    assert "line 7: /content/dam/products/SKU-100091_gone.png: AEM has no asset at this path (404)" in out
    assert "6 row(s) read from ids.csv: 2 asset(s) found, 4 skipped" in out
    assert set(Asset.objects.values_list("asset_id", flat=True)) == {uid(1), uid(3)}
    # Every pair was checked, with the same lookup an export's paths get.
    assert len([call for call in aem_assets.aem.path_calls if call.startswith("/content/dam/")]) == 4
    run_queued_tasks()
    assert {p["asset_id"] for p in aem_assets.aem.patches} == {uid(1), uid(3)}
    assert aem_assets.aem.assets[uid(90)]["dc:title"] == "Board minutes"  # never written


def test_the_byte_order_mark_of_an_export_is_not_part_of_the_header(aem_assets, tmp_path):
    csv = tmp_path / "export.csv"
    csv.write_bytes("\ufeffassetPath,dc:title {{String}}\n/content/dam/products/SKU-100001_front.png,A\n".encode())
    assert "Registered 1 new asset(s)" in backfill(str(csv))


# Transactional: the lookups run on threads with connections of their own, and the pause the 429
# records is committed by one of them; the test's own transaction would block it (SQLite) and a
# rollback would not remove it (PostgreSQL).
@pytest.mark.django_db(transaction=True)
def test_a_lookup_aem_asks_to_repeat_is_repeated_and_a_refused_one_reported(world, tmp_path):
    world.aem.add_asset(uid(31), {}, path="/content/dam/p/SKU-100031.png")
    world.aem.add_asset(uid(32), {}, path="/content/dam/p/SKU-100032.png")
    csv = tmp_path / "export.csv"
    csv.write_text("assetPath\n/content/dam/p/SKU-100031.png\n")
    world.aem.faults.add("GET", 429, times=2, headers={"Retry-After": "0"})
    assert "1 asset(s) found, 0 skipped" in backfill(str(csv), "--dry-run")

    csv.write_text("assetPath\n/content/dam/p/SKU-100032.png\n")
    world.aem.faults.add("GET", 400)
    out = backfill(str(csv), "--dry-run")
    assert "line 2: /content/dam/p/SKU-100032.png: GET" in out and "answered 400" in out


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"path,title\n/content/dam/a.png,A\n", "first row must be AEM's metadata export header"),
        (b"assetPath\n/content/dam/\xff.png\n", "is not UTF-8 text"),
    ],
)
def test_a_file_of_another_shape_is_refused_whole(world, tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        backfill(str(csv))
    assert not Asset.objects.exists()


def test_a_missing_file_is_a_clear_error(db):
    with pytest.raises(CommandError, match="cannot read /nowhere/x.csv"):
        backfill("/nowhere/x.csv")


def test_a_folder_walk_finds_assets_in_nested_folders_across_pages(world, settings):
    settings.PIMSYNC_RESYNC_RATE = 100_000
    world.aem.page_limit = 2  # AEM pages the listing: three pages for the top folder
    paths = [
        "/content/dam/shop/SKU-100011_a.png",
        "/content/dam/shop/SKU-100012_b.png",
        "/content/dam/shop/SKU-100013_c.png",
        "/content/dam/shop/sub/SKU-100014_d.png",
        "/content/dam/shop/sub/deeper/SKU-100015_e.png",
        "/content/dam/shop/sub/deeper/SKU-100016_f.png",
        "/content/dam/shopping/SKU-100017_not-this-one.png",
    ]
    for n, path in enumerate(paths, 11):
        world.aem.add_asset(uid(n), {}, path=path)
        world.pim.products[f"SKU-1000{n}"] = product(f"SKU-1000{n}")

    out = backfill("--folder", "/content/dam/shop/")

    assert "6 row(s) read from /content/dam/shop/: 6 asset(s) found, 0 skipped" in out
    assert set(Asset.objects.values_list("path", flat=True)) == set(paths[:6])
    listings = [call for call in world.aem.path_calls if call.startswith("/api/assets/")]
    assert "/api/assets/shop.json?offset=2&limit=100" in listings
    assert "/api/assets/shop/sub/deeper.json?offset=0&limit=100" in listings
    run_queued_tasks()
    assert {p["asset_id"] for p in world.aem.patches} == {uid(n) for n in range(11, 17)}


@pytest.mark.parametrize(
    "folder, message",
    [
        ("/content/dam/nothing-here", r"cannot list /content/dam/nothing-here: AEM has no folder there \(404\)"),
        ("/content/other", "not under /content/dam/"),
        ("/content/dam/../../etc", "'..' segment"),
    ],
)
def test_a_folder_that_cannot_be_walked_is_a_clear_error(world, folder, message):
    with pytest.raises(CommandError, match=message):
        backfill("--folder", folder)
    assert not Asset.objects.exists()


def test_a_folder_listing_that_fails_below_the_top_is_reported_and_the_rest_registered(world):
    world.aem.add_asset(uid(21), {}, path="/content/dam/shop/SKU-100021.png")
    world.aem.add_asset(uid(22), {}, path="/content/dam/shop/sub/SKU-100022.png")
    world.aem.broken_folders.add("/content/dam/shop/sub")

    out = backfill("--folder", "/content/dam/shop", "--dry-run")
    assert "/content/dam/shop/sub: cannot list this folder: GET" in out and "answered 500" in out
    assert "1 asset(s) found" in out


# --- the upload form -----------------------------------------------------------------------------


@pytest.fixture
def resyncer(people) -> User:
    user = people["Support"]
    user.user_permissions.add(Permission.objects.get(codename="resync_asset"))
    return User.objects.get(pk=user.pk)


def upload(client, content: bytes, name: str = "export.csv", **extra):
    return client.post(UPLOAD, {"file": SimpleUploadedFile(name, content, "text/csv"), **extra})


def test_the_upload_form_needs_the_resync_permission(client, people):
    assert client.get(UPLOAD).status_code == 302  # to the login page
    client.force_login(people["Viewers"])
    assert client.get(UPLOAD).status_code == 403
    assert upload(client, EXPORT.read_bytes()).status_code == 403
    assert not Asset.objects.exists()


def test_an_uploaded_export_shows_the_skipped_rows_by_line_and_links_the_job(client, aem_assets, resyncer):
    client.force_login(resyncer)
    assert client.get(UPLOAD).status_code == 200

    page = upload(client, EXPORT.read_bytes(), "aem-metadata-export.csv").content.decode()

    job = Job.objects.get()
    assert f'href="/admin/pimsync/event/jobs/{job.pk}/"' in page
    assert (job.created_by, job.why) == (resyncer, "backfill aem-metadata-export.csv")
    assert page.count('class="backfill-problem"') == 5
    assert (
        "<td>8</td><td>/content/dam/products/SKU-100006_front.png</td><td>AEM has no asset at this path (404)</td>"
        in page
    )
    assert "<td>9</td>" in page and "duplicate of line 2" in page
    assert Asset.objects.filter(known_from="backfill").count() == 4
    run_queued_tasks()
    assert len(aem_assets.aem.patches) == 4


def test_an_uploaded_pair_that_binds_one_asset_to_another_path_is_skipped(client, aem_assets, resyncer):
    """Someone with the re-sync permission cannot make pimsync write a product's values into an
    asset that is not that product's by naming its id beside the product's path."""
    aem_assets.aem.add_asset(uid(90), {"dc:title": "Board minutes"}, path="/content/dam/legal/minutes.pdf")
    client.force_login(resyncer)
    content = f"asset_id,path\n{uid(90)},/content/dam/products/SKU-100001_front.png\n".encode()

    page = upload(client, content, "ids.csv").content.decode()

    assert (
        "<td>2</td><td>/content/dam/products/SKU-100001_front.png</td>"
        f"<td>AEM&#x27;s asset at this path is {uid(1)}, not {uid(90)}</td>" in page
    )
    assert not Asset.objects.exists() and not Job.objects.exists()
    run_queued_tasks()
    assert aem_assets.aem.patches == []
    assert aem_assets.aem.assets[uid(90)]["dc:title"] == "Board minutes"


def test_an_upload_check_registers_nothing(client, aem_assets, resyncer):
    client.force_login(resyncer)
    page = upload(client, EXPORT.read_bytes(), dry_run="on").content.decode()
    assert "Would register 4 new asset(s)" in page
    assert not Asset.objects.exists() and not Job.objects.exists()


def test_an_upload_too_large_or_with_too_many_lookups_is_refused_with_nothing_registered(
    client, aem_assets, resyncer, monkeypatch
):
    client.force_login(resyncer)
    big = b"asset_id,path\n" + b"x" * (10 * 1024 * 1024)
    assert "at most 10 MB is accepted" in upload(client, big).content.decode()
    monkeypatch.setattr(backfill_page, "MAX_LOOKUPS", 3)
    response = upload(client, EXPORT.read_bytes())
    assert response.status_code == 400
    assert "5 paths would have to be looked up in AEM, more than the 3" in response.content.decode()
    assert not Asset.objects.exists() and not Event.objects.exists()


# Transactional: the 429's pause is committed by a lookup thread (see above).
@pytest.mark.django_db(transaction=True)
def test_an_upload_does_not_wait_for_aem_past_its_time_and_says_what_it_skipped(
    client, aem_assets, resyncer, monkeypatch
):
    monkeypatch.setattr(backfill_page, "UPLOAD_SECONDS", 2.0, raising=False)
    monkeypatch.setattr(backfill_module, "MAX_LOOKUP_WAIT", 5.0)  # what the unbounded upload would wait
    aem_assets.aem.faults.add("GET", 429, headers={"Retry-After": "30"})
    client.force_login(resyncer)

    started = time.monotonic()
    response = upload(client, b"assetPath\n/content/dam/products/SKU-100001_front.png\n", "export.csv")

    assert time.monotonic() - started < 4
    page = response.content.decode()
    assert response.status_code == 200
    assert "answered 429; not tried again: this backfill&#x27;s time ran out" in page
    assert "1 row(s) read from export.csv: 0 asset(s) found, 1 skipped" in page
    assert "1 row(s) were not looked up in time: run them again" in page
    assert not Asset.objects.exists() and not Job.objects.exists()


def test_rows_an_upload_has_no_time_left_for_are_skipped_and_the_rest_registered(
    client, aem_assets, resyncer, monkeypatch
):
    monkeypatch.setattr(backfill_page, "UPLOAD_SECONDS", 0.0, raising=False)
    client.force_login(resyncer)
    page = upload(client, EXPORT.read_bytes()).content.decode()
    assert page.count("not looked up in AEM before this backfill&#x27;s time ran out") == 5
    assert not Asset.objects.exists() and aem_assets.aem.path_calls == []


# --- the sandbox answers what a backfill asks ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_folder_walk_against_the_sandbox_registers_its_assets(live_server, settings):
    from pimsync.adobe import ims
    from pimsync.outbound import http

    base = live_server.url
    settings.PIMSYNC_SANDBOX = True
    settings.AEM_AUTHOR_URL = base + "/sandbox/aem"
    settings.ADOBE_IMS_TOKEN_URL = base + "/sandbox/ims/token/v3"
    ims.forget()
    demo = Path(__file__).resolve().parent.parent / "pimsync" / "demo" / "mappings.json"
    mapping.import_config(json.loads(demo.read_text()))
    shots = [
        ("5a4d0000-0000-4000-8000-000000000301", "/content/dam/pimsync-demo/products/SKU-100201_front_001.png"),
        ("5a4d0000-0000-4000-8000-000000000302", "/content/dam/pimsync-demo/products/SKU-100202_back_002.png"),
        ("5a4d0000-0000-4000-8000-000000000303", "/content/dam/pimsync-demo/lifestyle/SKU-100203_lifestyle_003.jpg"),
    ]
    for uuid, path in shots:
        SandboxAsset.objects.create(asset_id=f"urn:aaid:aem:{uuid}", path=path, name=path.rsplit("/", 1)[-1])
    try:
        out = backfill("--folder", "/content/dam/pimsync-demo")
    finally:
        http.session().close()  # a keep-alive connection would hold a server thread's database session
        ims.forget()
    assert "3 asset(s) found, 0 skipped" in out
    assert set(Asset.objects.values_list("asset_id", "path")) == {(f"urn:aaid:aem:{u}", p) for u, p in shots}
    assert Asset.objects.get(path__endswith="SKU-100202_back_002.png").product_key == "SKU-100202"
