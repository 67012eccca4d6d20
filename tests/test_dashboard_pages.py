"""Pages for everyone, as a request sees them: one time format in the configured zone, a way back
from a refusal, the overview's charts, the sandbox's AEM link, re-syncs by two filters, and the
event list as CSV for a support ticket."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.staticfiles import finders

from dashboard import charts, overview
from pimsync.models import Asset, Event, Job, SandboxAsset, Status, SyncState
from tests.test_dashboard import MAPPING, as_user, mapping_form
from tests.test_settings import manage

EVENTS, ASSETS = "/admin/pimsync/event/", "/admin/pimsync/asset/"
EVENING = datetime(2026, 12, 1, 19, 15, tzinfo=UTC)


def event(n: int, *, status=Status.FAILED, at=EVENING, priority=0, **fields) -> Event:
    return Event.objects.create(
        event_id=f"evt-{n}",
        type="aem.assets.asset.processing_completed",
        source="acct:aem-p1-e2@adobe.com",
        payload={},
        received_at=at,
        asset_id=f"urn:aaid:aem:{n}",
        asset_name=f"SKU-{n}_front.png",
        asset_path=f"/content/dam/products/SKU-{n}_front.png",
        product_key=f"SKU-{n}",
        status=status,
        priority=priority,
        **fields,
    )


def asset(n: int, *, state=SyncState.IN_STEP, folder="/content/dam/products", **fields) -> Asset:
    return Asset.objects.create(
        asset_id=f"urn:aaid:aem:{n}",
        path=f"{folder}/SKU-{n}_front.png",
        name=f"SKU-{n}_front.png",
        state=state,
        **fields,
    )


class TestTime:
    def test_every_page_shows_a_time_in_the_configured_zone_with_the_zones_name(self, client, people, settings):
        settings.TIME_ZONE = "Europe/Berlin"
        event(1)
        asset(1, last_synced_at=EVENING, first_seen_at=EVENING)
        as_user(client, people["Support"])
        for url in (EVENTS, ASSETS, f"{ASSETS}urn:aaid:aem:1/change/".replace(":", "_3A")):
            page = client.get(url).content.decode()
            assert "2026-12-01 20:15 CET" in page, url
            assert "Dec. 1, 2026" not in page and "19:15:00" not in page, url

    def test_the_charts_label_their_hours_in_the_configured_zone(self, db, settings):
        settings.TIME_ZONE = "Asia/Kolkata"  # UTC+5:30: its hours start at :30 UTC
        event(1, status=Status.SUCCEEDED, finished_at=EVENING + timedelta(seconds=2))
        buckets = overview.finished(EVENING + timedelta(minutes=10)).hours
        assert [b.done for b in buckets][-1] == 1  # 00:45 local lies in the 00:00 hour, the last one
        chart = charts.throughput(buckets)
        assert "Asia/Kolkata" in chart and f"{buckets[-4].start:%H:%M}" == "21:00" and ">21:00<" in chart

    def test_a_time_zone_that_does_not_exist_is_reported_by_the_checks(self):
        result = manage({"TIME_ZONE": "Mars/Olympus_Mons"}, "check")
        assert result.returncode != 0
        assert "(pimsync.E002) TIME_ZONE='Mars/Olympus_Mons' is not a time zone name" in result.stderr


class TestOverview:
    def test_re_syncs_waiting_their_turn_do_not_raise_the_upload_latency(self, db):
        for n in range(1, 4):
            event(n, status=Status.SUCCEEDED, finished_at=EVENING + timedelta(seconds=1))
        for n in range(4, 20):  # a paced re-sync: each event waited its turn
            event(n, status=Status.SUCCEEDED, priority=1, finished_at=EVENING + timedelta(seconds=11))
        last = overview.finished(EVENING + timedelta(minutes=5)).hours[-1]
        assert (last.done, last.p95) == (19, 1.0)

    def test_the_charts_write_their_values_so_nobody_has_to_hover(self, db):
        for n in range(1, 4):
            event(n, status=Status.SUCCEEDED, finished_at=EVENING + timedelta(seconds=2))
        buckets = overview.finished(EVENING + timedelta(minutes=5)).hours
        assert 'class="value " text-anchor="middle">3</text>' in charts.throughput(buckets)
        assert ">2.0</text>" in charts.latency(buckets)

    def test_counts_of_the_day_and_week_and_the_events_waiting_whatever_their_age(self, db):
        now = datetime.now(UTC)
        event(1, status=Status.RETRYING, at=now - timedelta(days=10))  # waiting, but older than a week
        event(2, status=Status.RECEIVED, at=now - timedelta(hours=1))
        event(3, status=Status.SUCCEEDED, at=now - timedelta(days=3))
        event(4, status=Status.SUCCEEDED, at=now - timedelta(hours=2))
        data = overview.build(now)
        assert data["queue"]["events"] == 2
        assert (data["day"]["received"], data["day"]["succeeded"], data["day"]["retrying"]) == (1, 1, 0)
        assert (data["week"]["received"], data["week"]["succeeded"], data["week"]["retrying"]) == (1, 2, 0)

    def test_a_system_unreachable_in_the_last_hour_is_named_and_an_older_one_is_not(self, client, people):
        now = datetime.now(UTC)
        event(1, finished_at=now - timedelta(minutes=10), error_class="aem_unreachable", at=now)
        event(2, finished_at=now - timedelta(minutes=70), error_class="pim_unreachable", at=now)
        event(3, finished_at=now - timedelta(minutes=5), error_class="pim_not_found", at=now)
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert "AEM was unreachable in the last hour (aem_unreachable)." in page
        assert "the PIM was unreachable" not in page and "pim_not_found)" not in page
        assert sum(bucket.failed for bucket in overview.finished(now).hours) == 3  # each counted once


class TestWayBack:
    def test_a_refusal_says_so_and_links_back_to_the_overview(self, client, people):
        event(1)
        response = as_user(client, people["Viewers"]).post(f"{EVENTS}{Event.objects.get().pk}/retry/")
        page = response.content.decode()
        assert response.status_code == 403
        assert 'href="/admin/"' in page and "not allowed" in page

    def test_view_site_does_not_lead_back_to_the_same_page(self, client, people):
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert "View site" not in page

    def test_every_page_has_a_favicon(self, client, people):
        page = as_user(client, people["Viewers"]).get("/admin/").content.decode()
        assert '<link rel="icon" href="/static/dashboard/favicon.svg"' in page
        assert finders.find("dashboard/favicon.svg")
        assert client.get("/favicon.ico")["Location"] == "/static/dashboard/favicon.svg"


class TestSandboxAem:
    def test_open_in_aem_shows_the_sandbox_asset_and_what_pimsync_wrote(self, client, people, settings):
        settings.PIMSYNC_SANDBOX = True
        settings.AEM_AUTHOR_URL = "http://testserver/sandbox/aem"
        SandboxAsset.objects.create(
            asset_id="urn:aaid:aem:1",
            path="/content/dam/products/SKU-1_front.png",
            name="SKU-1_front.png",
            metadata={"wknd-suppliername": "NORDWAND OUTDOOR"},
        )
        asset(1)
        page = as_user(client, people["Viewers"]).get(f"{ASSETS}urn_3Aaaid_3Aaem_3A1/change/").content.decode()
        assert (
            'href="http://testserver/sandbox/aem/ui#/aem/assetdetails.html/content/dam/products/SKU-1_front.png"'
            in page
        )
        response = client.get("/sandbox/aem/ui")
        assert response.status_code == 200
        assert "NORDWAND OUTDOOR" in response.content.decode()

    def test_the_sandbox_aem_page_is_for_signed_in_staff_only(self, client, settings):
        settings.PIMSYNC_SANDBOX = True
        assert client.get("/sandbox/aem/ui").status_code == 302


class TestResyncByTwoFilters:
    def test_a_state_and_a_path_prefix_together_re_sync_the_assets_matching_both(self, client, people):
        asset(1, state=SyncState.STALE, folder="/content/dam/spring")
        asset(2, state=SyncState.STALE, folder="/content/dam/autumn")
        asset(3, state=SyncState.IN_STEP, folder="/content/dam/spring")
        filters = "state__exact=stale&path__startswith=%2Fcontent%2Fdam%2Fspring%2F"
        as_user(client, people["Mapping editors"])
        confirm = client.get(f"{ASSETS}resync/", {"filters": filters})
        assert confirm.status_code == 200, confirm.content.decode()
        assert confirm.context["count"] == 1
        response = client.post(f"{ASSETS}resync/", {"filters": filters, "why": "spring catalogue"})
        assert response.status_code == 302
        job = Job.objects.get(kind=Job.Kind.RESYNC)
        assert job.assets == {"state": "stale", "path_prefix": "/content/dam/spring/"}
        assert job.total == 1


class TestCsvExport:
    def test_support_exports_the_filtered_list_as_csv_without_formulas(self, client, people):
        event(1, reason='=HYPERLINK("http://evil")', error_class="pim_not_found")
        event(2, status=Status.SUCCEEDED)
        response = as_user(client, people["Viewers"]).get(f"{EVENTS}export.csv", {"status__exact": "failed"})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        assert [r["asset name"] for r in rows] == ["SKU-1_front.png"]
        assert rows[0]["reason"] == '\'=HYPERLINK("http://evil")'
        assert rows[0]["received at"] == "2026-12-01 19:15 UTC"
        assert "payload" not in rows[0]

    def test_the_list_links_its_export_with_its_filters(self, client, people):
        page = as_user(client, people["Viewers"]).get(EVENTS, {"status__exact": "failed"}).content.decode()
        assert 'href="/admin/pimsync/event/export.csv?status__exact=failed"' in page

    def test_a_filter_the_list_does_not_offer_exports_nothing(self, client, people):
        response = as_user(client, people["Viewers"]).get(f"{EVENTS}export.csv", {"payload__icontains": "x"})
        assert response.status_code == 400


@pytest.mark.parametrize("role, said", [("Viewers", False), ("Mapping editors", True)])
def test_the_preview_speaks_of_unsaved_edits_only_to_who_can_edit(client, people, role, said, settings):
    settings.PIM_CONNECTOR = "demo"
    as_user(client, people[role])
    form = client.get("/admin/pimsync/mappingconfig/", follow=True).context["adminform"].form
    posted = {"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "0", "preview_key": "SKU-100001"}
    posted.update({name: value for name, value in form.initial.items() if value is not None})
    page = client.post("/admin/pimsync/mappingconfig/preview/", posted).content.decode()
    assert ("your unsaved edits" in page) is said


def test_saving_the_mapping_rules_says_so_in_a_sentence(client, people, world):
    as_user(client, people["Mapping editors"])
    response = client.post(MAPPING, mapping_form(**{"rules-1-transform": "lower"}), follow=True)
    said = [str(m) for m in response.context["messages"]]
    assert said == ["The mapping rules were changed successfully."]


def test_a_stale_asset_says_why_and_since_when_once(client, people):
    asset(
        1, state=SyncState.STALE, stale_cause="mapping", state_reason="the mapping rules changed", stale_since=EVENING
    )
    page = as_user(client, people["Viewers"]).get(f"{ASSETS}urn_3Aaaid_3Aaem_3A1/change/").content.decode()
    [cell] = re.findall(r'<td id="asset-state">(.*?)</td>', page)
    assert re.sub(r"<[^>]+>", "", cell).strip() == "stale the mapping rules changed (since 2026-12-01 19:15 UTC)"


@pytest.mark.parametrize("role", ["Viewers", "Mapping editors"])
def test_no_help_text_shows_raw_backticks(client, people, world, role):
    page = as_user(client, people[role]).get(MAPPING).content.decode()
    assert "`" not in re.sub(r"<script.*?</script>", "", page, flags=re.S)
