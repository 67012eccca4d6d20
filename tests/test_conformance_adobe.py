"""Adobe's own published examples (standins/adobe_examples.py, each with its source), served
verbatim on loopback and read by pimsync's real clients: the journal's pages as Adobe's SDK
fixtures and journaling guide show them, the Assets Author API's metadata as its guide shows it.

Where our earlier reading and Adobe's differ, Adobe's wins, and the test says so."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from pimsync.adobe import aem, journal
from pimsync.adobe import journal_api as client
from pimsync.models import JournalCursor
from standins import adobe_examples as adobe
from standins.journal import ORG

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(world, settings):
    """The journal's host: the same loopback server as IMS, so one origin serves all paths."""
    settings.ADOBE_IMS_ORG_ID = ORG
    return world.ims.server


def journal_at(server, settings, path: str) -> str:
    settings.ADOBE_JOURNAL_URL = server.url_for(path)
    return settings.ADOBE_JOURNAL_URL


def test_the_sdks_200_page_sends_next_under_events_fast_and_the_pull_follows_it(server, settings):
    """aio-lib-events test/mock.js: `next` is /events-fast/… while the journal is /events/…; we
    used to read that as "ADOBE_JOURNAL_URL changed" and restart from the oldest event."""
    journal_at(server, settings, adobe.SDK_JOURNAL_PATH)
    server.expect_oneshot_request(adobe.SDK_JOURNAL_PATH, method="GET").respond_with_json(
        adobe.SDK_JOURNAL_BODY, headers={"Link": ", ".join(adobe.SDK_JOURNAL_LINKS)}
    )
    fast = adobe.SDK_JOURNAL_PATH.replace("/events/", "/events-fast/", 1)
    server.expect_oneshot_request(fast, query_string="since=position-1", method="GET").respond_with_response(
        Response(
            status=204,
            headers={"Link": ", ".join(adobe.SDK_JOURNAL_LINKS), "retry-after": adobe.SDK_RETRY_AFTER_SECONDS},
        )
    )

    result = journal.pull()

    assert (result.pages, result.unreadable) == (2, 1)  # the SDK's XDM test event is no AEM event
    assert result.outcome.startswith("at the end of the journal; next pull in 10s")
    cursor = JournalCursor.load()
    assert cursor.next_url == server.url_for(fast) + "?since=position-1"
    assert cursor.started_from == settings.ADOBE_JOURNAL_URL
    assert cursor.not_before > timezone.now() + timedelta(seconds=5)


def test_the_sdks_204_link_list_carries_a_validate_link_under_events_validate(server, settings):
    url = journal_at(server, settings, adobe.SDK_JOURNAL_PATH)
    server.expect_oneshot_request(adobe.SDK_JOURNAL_PATH).respond_with_response(
        Response(status=204, headers={"Link": ", ".join(adobe.SDK_JOURNAL_LINKS)})
    )
    page = client.fetch(url)
    assert page.validate_url == server.url_for(
        "/events-validate/organizations/orgId/integrations/integId/regId?since=position-1"
    )


@pytest.mark.parametrize(
    ("retry_after", "waits_at_least"),
    [
        (adobe.SDK_RETRY_AFTER_SECONDS, 9),
        (adobe.SDK_RETRY_AFTER_DATE, 0),  # a date long past: no wait beyond it
        (adobe.SDK_RETRY_AFTER_INVALID, journal.DEFAULT_RETRY_AFTER - 1),  # unreadable: our default
    ],
)
def test_the_sdks_retry_after_forms_are_honoured(server, settings, retry_after, waits_at_least):
    journal_at(server, settings, adobe.SDK_JOURNAL_PATH)
    server.expect_oneshot_request(adobe.SDK_JOURNAL_PATH).respond_with_response(
        Response(status=204, headers={"Link": ", ".join(adobe.SDK_JOURNAL_LINKS), "retry-after": retry_after})
    )
    journal.pull()
    cursor = JournalCursor.load()
    assert cursor.not_before >= cursor.last_pulled_at + timedelta(seconds=waits_at_least)


def test_the_sdks_204_without_links_keeps_the_same_url(server, settings):
    """test/mock.js `journalResponseHeader204MissingLinks`: no `link` header at all."""
    url = journal_at(server, settings, adobe.SDK_JOURNAL_PATH)
    server.expect_oneshot_request(adobe.SDK_JOURNAL_PATH).respond_with_response(
        Response(status=204, headers={"retry-after": "10"})
    )
    journal.pull()
    assert JournalCursor.load().next_url == url
    assert JournalCursor.load().caught_up_at is not None


def test_the_guides_end_with_one_link_line_per_relation(server, settings):
    journal_at(server, settings, adobe.GUIDE_REGISTRATION_PATH)
    response = Response(
        status=204, headers=[("retry-after", "10")] + [("Link", link) for link in adobe.GUIDE_END_LINKS]
    )
    server.expect_oneshot_request(adobe.GUIDE_REGISTRATION_PATH).respond_with_response(response)
    page = client.fetch(settings.ADOBE_JOURNAL_URL)
    base = server.url_for(adobe.GUIDE_REGISTRATION_PATH)
    assert page.next_url == f"{base}?since={adobe.GUIDE_POSITION}"
    assert page.validate_url == f"{base}/validate?since={adobe.GUIDE_POSITION}"


def test_the_guides_410_with_a_plain_text_body_restarts_from_the_oldest_event(server, settings):
    url = journal_at(server, settings, adobe.GUIDE_REGISTRATION_PATH)
    JournalCursor.load()
    JournalCursor.objects.update(
        started_from=url, next_url=f"{url}?since={adobe.GUIDE_EXPIRED_POSITION}", position=adobe.GUIDE_EXPIRED_POSITION
    )
    server.expect_oneshot_request(
        adobe.GUIDE_REGISTRATION_PATH, query_string=f"since={adobe.GUIDE_EXPIRED_POSITION}"
    ).respond_with_response(Response(adobe.GUIDE_EXPIRED_BODY, status=410, content_type="text/plain"))
    server.expect_oneshot_request(adobe.GUIDE_REGISTRATION_PATH, query_string="").respond_with_response(
        Response(status=204, headers=[("retry-after", "10")] + [("Link", link) for link in adobe.GUIDE_END_LINKS])
    )

    journal.pull()

    cursor = JournalCursor.load()
    assert cursor.expired_at is not None
    assert cursor.caught_up_at is not None  # read on from the oldest event, to the end
    assert cursor.position == "" and cursor.next_url.endswith(f"since={adobe.GUIDE_POSITION}")


def test_the_metadata_guides_get_answer_is_read_with_its_etag_from_the_body(world, settings):
    """The guide's envelope carries the ETag in repositoryMetadata["repo:etag"]; with no ETag
    header we sent If-Match: * (a blind write) before."""
    asset_id = adobe.GUIDE_METADATA_GET["assetId"]
    server = world.aem.server
    path = f"/adobe/assets/{asset_id}/metadata"
    server.expect_oneshot_request(path, method="GET").respond_with_json(adobe.GUIDE_METADATA_GET)
    metadata = aem.get_metadata(asset_id)
    assert metadata.values == adobe.GUIDE_METADATA_GET["assetMetadata"]
    assert metadata.etag == '"a3f8b2c1"'


def test_a_patch_against_the_guides_asset_replaces_what_it_holds_and_adds_the_rest(world):
    """The guide: `add` fails on an existing property, `replace` on a missing one."""
    asset_id = adobe.GUIDE_METADATA_GET["assetId"]
    world.aem.add_asset(asset_id, adobe.GUIDE_METADATA_GET["assetMetadata"])
    metadata = aem.get_metadata(asset_id)
    changes = [
        {"path": "dc:title", "old": "City Skyline at Dusk", "new": "Skyline", "exists": True},
        {"path": "pim:sku", "old": None, "new": "SKU-1", "exists": False},
    ]
    aem.patch_metadata(asset_id, aem.json_patch(changes, "asset-metadata"), metadata.etag)
    [patch] = world.aem.patches
    assert patch["operations"] == [
        {"op": "replace", "path": "/assetMetadata/dc:title", "value": "Skyline"},
        {"op": "add", "path": "/assetMetadata/pim:sku", "value": "SKU-1"},
    ]
    assert patch["headers"]["Content-Type"] == "application/json-patch+json"
    assert patch["if_match"] == metadata.etag
    assert json.loads(json.dumps(world.aem.assets[asset_id]))["dc:title"] == "Skyline"
