"""The Assets pages, re-syncs started from the dashboard, and the offer after a mapping change."""

from __future__ import annotations

import html
import io
import json
import re
from urllib.parse import quote as urlquote

import pytest
from django.contrib.admin.utils import quote
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pimsync import mapping, tasks
from pimsync.models import Asset, Event, Job, Status, SyncState
from tests.conftest import STANDARD_MAPPING, make_event, product, run_queued_tasks
from tests.test_dashboard import MAPPING, as_user, mapping_form
from tests.test_retry_jobs import Form

pytestmark = pytest.mark.django_db

ASSETS = "/admin/pimsync/asset/"
EVENTS = "/admin/pimsync/event/"
RESYNC = "/admin/pimsync/asset/resync/"
OFFER = "/admin/pimsync/mappingconfig/resync-affected/"


def asset_id(n: int) -> str:
    return make_event(n)["data"]["assetId"]


def asset_url(n: int, action: str = "change") -> str:
    return f"{ASSETS}{quote(asset_id(n))}/{action}/"


def job_url(job: Job) -> str:
    return reverse("admin:pimsync_event_job", args=[job.pk])


@pytest.fixture
def synced(client, world, settings):
    """Assets 1-3 written by the worker from their uploads (in step); asset 4's product is not in
    the PIM (failing)."""
    # A re-sync's events are due at once here; its pace is the re-sync's own business.
    settings.PIMSYNC_RESYNC_RATE = 100_000
    for n in (1, 2, 3):
        world.pim.products[f"SKU-10000{n}"] = product(f"SKU-10000{n}")
    world.adobe.deliver(client, [world.upload(client, n) for n in (1, 2, 3, 4)])
    world.drain()
    assert dict(Asset.objects.values_list("pk", "state")) == {
        asset_id(1): SyncState.IN_STEP,
        asset_id(2): SyncState.IN_STEP,
        asset_id(3): SyncState.IN_STEP,
        asset_id(4): SyncState.FAILING,
    }
    return world


def shown(page: str) -> set[int]:
    """Which of the assets 1-4 a list page shows."""
    return {n for n in (1, 2, 3, 4) if f"SKU-10000{n}_front.png" in page}


def finish(job: Job) -> Job:
    """Run what the worker would (the job's steps, the drain), then the sweeper's minute."""
    run_queued_tasks()
    tasks.sweep()
    job.refresh_from_db()
    return job


class TestList:
    def test_a_viewer_sees_every_known_asset_with_its_state(self, client, people, synced):
        page = as_user(client, people["Viewers"]).get(ASSETS).content.decode()
        assert shown(page) == {1, 2, 3, 4}
        assert page.count('class="badge badge-asset-in_step"') == 3
        assert page.count('class="badge badge-asset-failing"') == 1
        assert f'href="{asset_url(2)}' in page
        assert "/content/dam/products/SKU-100002_front.png" in page

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ({"state__exact": "failing"}, {4}),
            ({"state__exact": "in_step"}, {1, 2, 3}),
            ({"product_key": "SKU-100002"}, {2}),
            ({"product_key": "SKU-10000"}, set()),  # exact, not a prefix
            ({"path__startswith": "/content/dam/products/SKU-100003"}, {3}),
            ({"path__startswith": "/content/dam/other/"}, set()),
            ({"q": "SKU-100001"}, {1}),
            ({"q": "/content/dam/products/SKU-10000"}, {1, 2, 3, 4}),
            ({"q": asset_id(4)}, {4}),
            ({"state__exact": "in_step", "path__startswith": "/content/dam/products/SKU-100001"}, {1}),
        ],
    )
    def test_the_declared_filters_and_search_select(self, client, people, synced, query, expected):
        response = as_user(client, people["Viewers"]).get(ASSETS, query)
        assert response.status_code == 200
        assert shown(response.content.decode()) == expected

    @pytest.mark.parametrize(
        "query",
        [
            {"last_written__icontains": "x"},
            {"state_reason__regex": "(a+)+$"},
            {"path__contains": "x"},
            {"state__in": "stale,failing"},
            {"product_key__startswith": "SKU"},
            {"foo": "bar"},
        ],
    )
    def test_other_lookups_answer_400_before_any_query(self, client, people, synced, query):
        as_user(client, people["Viewers"])
        client.get(ASSETS)  # warm the session and content-type caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(ASSETS, query)
        assert response.status_code == 400
        assert "has no filter" in response.content.decode()
        assert not [q["sql"] for q in queries if "pimsync_asset" in q["sql"]]

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ({"path__startswith": "content/dam"}, "a path prefix starts with /"),
            ({"state__exact": "gone"}, "is not one of: in_step"),
            ({"q": "x" * 300}, "longer than 255"),
        ],
    )
    def test_bad_values_are_refused_with_a_message(self, client, people, synced, query, message):
        response = as_user(client, people["Viewers"]).get(ASSETS, query)
        assert response.status_code == 400
        assert message in response.content.decode()

    def test_the_overview_counts_assets_by_state_and_links_the_list(self, client, people, synced):
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert re.search(r'id="assets-in_step">3<', page) and re.search(r'id="assets-failing">1<', page)
        assert f'href="{ASSETS}?state__exact=failing"' in page


class TestAtScale:
    """Past EXACT_ASSET_COUNTS_UP_TO assets (PostgreSQL's estimate), the overview estimates the most
    common state and the "re-sync all" confirmation its count, instead of reading every row."""

    @pytest.fixture
    def assets(self, db, monkeypatch):
        from dashboard import overview

        monkeypatch.setattr(overview, "EXACT_ASSET_COUNTS_UP_TO", 5)
        states = ["in_step"] * 6 + ["stale"] * 2 + ["failing", "deleted"]
        Asset.objects.bulk_create(
            Asset(asset_id=f"urn:aaid:aem:{n}", path=f"/a/{n}.png", state=s) for n, s in enumerate(states)
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE pimsync_asset")  # the statistics autovacuum keeps
        # Written after the statistics were taken: an estimate does not know them, a count does.
        Asset.objects.bulk_create(
            Asset(asset_id=f"urn:aaid:aem:new-{n}", path=f"/b/{n}.png", state="in_step") for n in range(3)
        )

    def test_the_overview_estimates_the_most_common_state_and_counts_the_others(self, client, people, assets):
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert re.search(r'id="assets-stale">2<', page) and re.search(r'id="assets-failing">1<', page)
        if connection.vendor == "postgresql":
            assert re.search(r'id="assets-in_step" title="an estimate[^"]*">≈ 6<', page)  # 10 analysed, less 4
        else:  # no statistics to estimate from: every state counted
            assert re.search(r'id="assets-in_step">9<', page)

    def test_the_overview_stays_within_15_queries_with_every_part_shown(self, client, people, assets, settings):
        # The journal's part and the estimate's part both on: the most queries the page can run.
        settings.ADOBE_JOURNAL_URL = "https://events-va6.adobe.io/events/organizations/1/integrations/2/3"
        as_user(client, people["Support"]).get("/admin/")
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/admin/").content.decode()
        assert 'id="assets-stale">2<' in page and 'id="journal"' in page
        assert len(queries) <= 15, "\n".join(q["sql"][:120] for q in queries.captured_queries)

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="the statistics are PostgreSQL's")
    def test_a_process_reads_the_statistics_again_after_a_minute(self, client, people, assets, monkeypatch):
        from dashboard import overview

        as_user(client, people["Viewers"])
        assert re.search(r'id="assets-in_step" [^>]*>≈ 6<', client.get("/admin/").content.decode())
        Asset.objects.bulk_create(
            Asset(asset_id=f"urn:aaid:aem:more-{n}", path=f"/c/{n}.png", state="in_step") for n in range(20)
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE pimsync_asset")  # 33 rows now, 4 of them not in step
        assert re.search(r'id="assets-in_step" [^>]*>≈ 6<', client.get("/admin/").content.decode())
        monkeypatch.setattr(overview, "STATISTICS_SECONDS", 0)  # the minute has passed
        assert re.search(r'id="assets-in_step" [^>]*>≈ 29<', client.get("/admin/").content.decode())

    def test_re_sync_all_names_an_estimate_and_the_job_counts_exactly(self, client, people, assets):
        page = as_user(client, people["Support"]).get(f"{ASSETS}resync/", {"filters": ""}).content.decode()
        if connection.vendor == "postgresql":
            assert 'About <strong id="resync-count">9<' in page and "Yes, re-sync about 9 assets" in page
        else:
            assert '<strong id="resync-count">12<' in page and "Yes, re-sync 12 assets" in page
        form = Form(page.replace('id="resync-confirm"', 'id="retry-confirm"'))
        client.post(form.action, form.data())
        assert Job.objects.get().total == 12  # every asset but the deleted one


class TestAssetPage:
    def test_it_shows_state_values_written_link_to_aem_and_events(self, client, people, synced):
        as_user(client, people["Viewers"])
        page = client.get(asset_url(2)).content.decode()
        asset = Asset.objects.get(pk=asset_id(2))
        assert "badge-asset-in_step" in page and "AEM holds what the PIM and the mapping say" in page
        written = html.unescape(page[page.index('id="last-written"') :])  # what pimsync last wrote
        assert '"dc:title": "Trail backpack 35L"' in written and '"wknd-suppliername": "NORDWAND OUTDOOR"' in written
        assert asset.pim_fingerprint[:12] in page and asset.pim_fingerprint not in page
        assert f'href="{asset.aem_asset_url()}"' in page and "assetdetails.html/content/dam/products/" in page
        event = Event.objects.get(asset_id=asset_id(2))
        assert f'href="{reverse("admin:pimsync_event_change", args=[event.pk])}"' in page
        assert f'href="{EVENTS}?q={urlquote(asset_id(2))}" id="all-events"' in page
        assert 'id="resync-button"' not in page  # Viewers cannot re-sync

        failing = client.get(asset_url(4)).content.decode()
        assert "badge-asset-failing" in failing and "product 'SKU-100004' is not in the PIM" in html.unescape(failing)

    def test_the_event_list_link_shows_the_assets_events(self, client, people, synced):
        as_user(client, people["Viewers"])
        page = client.get(asset_url(3)).content.decode()
        link = re.search(r'href="([^"]+)" id="all-events"', page).group(1)
        events = client.get(link.replace("&amp;", "&")).content.decode()
        assert "SKU-100003_front.png" in events and "SKU-100001_front.png" not in events

    def test_the_resync_button_writes_the_new_pim_data_and_the_job_counts_it(self, client, people, synced):
        synced.pim.products["SKU-100002"] = product("SKU-100002", name="Trail backpack 40L")
        as_user(client, people["Support"])
        assert 'id="resync-button"' in client.get(asset_url(2)).content.decode()

        response = client.post(asset_url(2, "resync"), {"why": "name fixed in the PIM"})

        job = Job.objects.get(kind=Job.Kind.RESYNC)
        assert response.status_code == 302 and response["Location"] == job_url(job)
        assert (job.assets, job.created_by, job.why) == (
            {"asset_ids": [asset_id(2)]},
            people["Support"],
            "name fixed in the PIM",
        )
        page = client.get(job_url(job)).content.decode()
        assert 'data-poll="' in page and 'id="cancel-job"' in page
        finish(job)
        assert synced.aem.assets[asset_id(2)]["dc:title"] == "Trail backpack 40L"
        assert (job.status, job.done, job.total, job.succeeded) == (Job.State.FINISHED, 1, 1, 1)
        assert Asset.objects.get(pk=asset_id(2)).state == SyncState.IN_STEP
        page = client.get(job_url(job)).content.decode()
        assert 'id="job-done">1/1<' in page and "1 written, 0 unchanged, 0 failed, 0 skipped" in page
        assert 'id="job-why">name fixed in the PIM<' in page and 'id="job-who">support at' in page
        assert 'data-poll="' not in page
        history = client.get(reverse("admin:pimsync_event_jobs")).content.decode()
        assert "re-sync 1 selected asset" in history and "name fixed in the PIM" in history

    def test_a_viewer_cannot_resync(self, client, people, synced):
        as_user(client, people["Viewers"])
        assert client.post(asset_url(2, "resync"), {"why": "x"}).status_code == 403
        assert client.get(RESYNC).status_code == 403
        assert client.post(RESYNC, {"filters": ""}).status_code == 403
        client.post(ASSETS, {"action": "resync_selected", "_selected_action": [asset_id(1)]})
        assert not Job.objects.exists()

    def test_a_resync_job_can_be_cancelled_by_a_mapping_editor(self, client, people, synced, settings):
        settings.PIMSYNC_RESYNC_RATE = 1  # scheduled a second apart: not all due yet
        as_user(client, people["Mapping editors"])
        client.post(RESYNC, {"filters": "state__exact=in_step"})
        job = Job.objects.get(kind=Job.Kind.RESYNC)
        run_queued_tasks("pimsync.tasks.run_job")  # scheduled, no worker has drained yet
        assert Event.objects.filter(job=job).pending().count() == 3
        page = client.get(job_url(job)).content.decode()
        assert 'id="cancel-job"' in page and 'id="job-done">0/3<' in page
        assert 'about <span id="job-eta">3 s</span> left' in page  # 3 assets at 1 a second, none done yet

        response = client.post(reverse("admin:pimsync_event_job_cancel", args=[job.pk]))

        assert response.status_code == 302
        job.refresh_from_db()
        assert job.status == Job.State.CANCELLED
        assert Event.objects.filter(job=job, status=Status.IGNORED).count() == 3
        page = client.get(job_url(job)).content.decode()
        # Its three waiting events were ignored by the cancel: the message counts them as the bar does.
        assert f"Job {job.pk} cancelled after 3 of 3 assets" in page and 'id="job-done">3/3<' in page


class TestResyncFromTheList:
    def select(self, client, ids, query="", **extra):
        data = {"action": "resync_selected", "_selected_action": ids, "index": "0", **extra}
        return client.post(ASSETS + query, data)

    def confirm(self, client, page, why=""):
        form = Form(page.content.decode().replace('id="resync-confirm"', 'id="retry-confirm"'))
        return client.post(form.action, {**form.data(), "why": why})

    def test_ticked_assets_are_resynced_by_id_after_a_confirmation(self, client, people, synced):
        as_user(client, people["Support"])
        page = self.select(client, [asset_id(3), asset_id(1)])
        assert 'id="resync-count">2<' in page.content.decode()
        assert not Job.objects.exists()  # nothing before the confirmation
        response = self.confirm(client, page, why="check two")
        job = Job.objects.get()
        assert response["Location"] == job_url(job)
        assert sorted(job.assets["asset_ids"]) == [asset_id(1), asset_id(3)] and job.why == "check two"
        finish(job)
        assert (job.status, job.done, job.unchanged) == (Job.State.FINISHED, 2, 2)  # AEM already held the values

    def test_select_across_resyncs_what_the_filter_matches(self, client, people, synced):
        synced.pim.products["SKU-100004"] = product("SKU-100004")  # the missing product was added
        as_user(client, people["Support"])
        page = self.select(client, [asset_id(4)], "?state__exact=failing", select_across="1")
        assert 'id="resync-count">1<' in page.content.decode()
        self.confirm(client, page)
        job = Job.objects.get()
        assert job.assets == {"state": "failing"} and job.why == ""
        finish(job)
        assert (job.status, job.succeeded) == (Job.State.FINISHED, 1)
        assert Asset.objects.get(pk=asset_id(4)).state == SyncState.IN_STEP
        assert synced.aem.assets[asset_id(4)]["wknd-skuid"] == "SKU-100004"

    @pytest.mark.parametrize(
        ("filters", "spec", "count"),
        [
            ("", {"all": True}, 4),
            ("state__exact=in_step", {"state": "in_step"}, 3),
            (
                "path__startswith=/content/dam/products/SKU-100002",
                {"path_prefix": "/content/dam/products/SKU-100002"},
                1,
            ),
            ("product_key=SKU-100003", {"product_keys": ["SKU-100003"]}, 1),
            ("state__exact=failing&p=2&o=1", {"state": "failing"}, 1),
        ],
    )
    def test_resync_all_matching_names_the_filter(self, client, people, synced, filters, spec, count):
        as_user(client, people["Mapping editors"])
        list_page = client.get(ASSETS + (f"?{filters}" if filters else "")).content.decode()
        assert 'id="resync-matching"' in list_page
        assert 'href="/admin/pimsync/asset/backfill/" id="backfill-link"' in list_page
        page = client.get(RESYNC, {"filters": filters})
        assert f'id="resync-count">{count}<' in page.content.decode()
        self.confirm(client, page, why="why not")
        job = Job.objects.get()
        assert (job.assets, job.total, job.why) == (spec, count, "why not")

    @pytest.mark.parametrize(
        ("filters", "message"),
        [
            ("q=SKU-100001", "a search cannot be re-synced as a whole"),
            ("path__startswith=content", "a path prefix starts with /"),
            ("reason__regex=x", "has no filter reason__regex"),
        ],
    )
    def test_a_selection_that_is_not_one_spec_is_refused(self, client, people, synced, filters, message):
        as_user(client, people["Support"])
        for response in (client.get(RESYNC, {"filters": filters}), client.post(RESYNC, {"filters": filters})):
            assert response.status_code == 400
            assert message in response.content.decode()
        assert not Job.objects.exists()


class TestMappingChangeOffer:
    def test_a_rule_change_is_checked_offered_and_resynced(self, client, people, synced):
        editor = as_user(client, people["Mapping editors"])
        response = editor.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        assert response.status_code == 302
        check = Job.objects.get(kind=Job.Kind.AFFECTED)
        assert check.created_by == people["Mapping editors"]
        assert "Checking which known assets this change affects… (0 of 3)" in editor.get(MAPPING).content.decode()

        run_queued_tasks()
        page = editor.get(MAPPING).content.decode()
        assert "<strong>3</strong> known assets are affected by the last mapping change" in page
        assert ">Re-sync the 3 affected assets</a>" in page
        assert Asset.objects.filter(state=SyncState.STALE).count() == 3
        check.refresh_from_db()
        assert 'id="job-affected"><strong>3</strong>' in editor.get(job_url(check)).content.decode()

        response = editor.post(OFFER)
        job = Job.objects.get(kind=Job.Kind.RESYNC)
        assert response["Location"] == job_url(job)
        assert (job.assets, job.why, job.total) == ({"mapping_affected": True}, "mapping changed", 3)
        finish(job)
        assert (job.status, job.succeeded) == (Job.State.FINISHED, 3)
        assert {synced.aem.assets[asset_id(n)]["wknd-suppliername"] for n in (1, 2, 3)} == {"nordwand outdoor"}
        assert Asset.objects.filter(state=SyncState.IN_STEP).count() == 3
        page = editor.get(MAPPING).content.decode()
        assert "No known asset is affected by the last mapping change any more" in page

    def test_saving_without_a_change_starts_no_check(self, client, people, synced):
        as_user(client, people["Mapping editors"]).post(MAPPING, mapping_form())
        assert not Job.objects.exists()

    def test_an_import_in_the_dashboard_starts_the_check(self, client, people, synced):
        document = {**STANDARD_MAPPING, "rules": STANDARD_MAPPING["rules"][:2]}
        upload = SimpleUploadedFile("rules.json", json.dumps(document).encode(), "application/json")
        as_user(client, people["Mapping editors"]).post(reverse("admin:pimsync_mappingconfig_import"), {"file": upload})
        run_queued_tasks()
        assert Job.objects.get(kind=Job.Kind.AFFECTED).status == Job.State.FINISHED
        assert mapping.current()[1] and Asset.objects.filter(state=SyncState.STALE).count() == 3

    def test_import_mappings_starts_the_check(self, synced, tmp_path):
        path = tmp_path / "rules.json"
        path.write_text(json.dumps({**STANDARD_MAPPING, "rules": STANDARD_MAPPING["rules"][1:]}))
        out = io.StringIO()
        call_command("import_mappings", str(path), stdout=out)
        job = Job.objects.get(kind=Job.Kind.AFFECTED)
        assert f"Job {job.pk} checks which of the 3 known asset(s) the change affects" in out.getvalue()
        run_queued_tasks()
        assert Asset.objects.filter(state=SyncState.STALE).count() == 3

    def test_viewers_see_the_count_but_cannot_resync(self, client, people, synced):
        as_user(client, people["Mapping editors"]).post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}))
        run_queued_tasks()
        viewer = as_user(client, people["Viewers"])
        page = viewer.get(MAPPING).content.decode()
        assert "<strong>3</strong> known assets are affected" in page and 'id="resync-affected"' not in page
        assert viewer.post(OFFER).status_code == 403
        assert not Job.objects.filter(kind=Job.Kind.RESYNC).exists()
        assert Event.objects.filter(status=Status.RECEIVED).count() == 0
