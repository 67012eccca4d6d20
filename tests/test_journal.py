"""Journal reconciliation against a loopback Journaling API: paging, back-off, expiry, crashes,
one puller at a time, and duplicates across the webhook and the journal."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core.checks import Error, Warning
from django.core.management import CommandError, call_command
from django.utils import timezone
from pytest_httpserver import HTTPServer

from pimsync import tasks
from pimsync.adobe import events, journal
from pimsync.adobe.journal_api import parse_links
from pimsync.checks import configuration
from pimsync.models import Event, JournalCursor
from pimsync.outbound import http
from standins.journal import ORG, REGISTRATION, JournalStub
from tests.conftest import make_event, product


@pytest.fixture
def stub(world, settings) -> JournalStub:
    """The registration's journal on loopback, beside IMS/AEM/PIM, configured as an operator would."""
    stub = JournalStub(world.ims.server, world.ims)
    settings.ADOBE_JOURNAL_URL = stub.url
    settings.ADOBE_IMS_ORG_ID = ORG
    return stub


def fill(stub: JournalStub, count: int, start: int = 0) -> list[dict]:
    events = [make_event(n) for n in range(start, start + count)]
    for event in events:
        stub.append(event)
    return events


def cursor() -> JournalCursor:
    return JournalCursor.load()


def test_it_follows_root_relative_next_links_until_the_end(stub):
    events = fill(stub, 7)
    result = journal.pull()
    assert (result.pages, result.events, result.stored) == (4, 7, 7)  # 3 + 3 + 1, then 204
    assert [r.get("since") for r in stub.requests] == [None, "pos-000002", "pos-000005", "pos-000006"]
    assert set(Event.objects.values_list("event_id", flat=True)) == {e["eventid"] for e in events}
    assert set(Event.objects.values_list("arrived_by", flat=True)) == {"journal"}
    assert cursor().position == "pos-000006"
    assert cursor().caught_up_at is not None and cursor().pulled_total == 7


def test_a_page_of_more_events_than_one_insert_can_bind_is_stored_whole(stub):
    stub.page_size = events.rows_per_statement() + 5  # PostgreSQL 2,520 (65,535 parameters); SQLite 38
    sent = []
    for n in range(stub.page_size):  # small events, as AEM sends for deletions: the page stays under 2 MB
        full = make_event(n)
        sent.append({name: full[name] for name in ("specversion", "id", "source", "type", "eventid")})
        sent[-1]["data"] = {"assetId": full["data"]["assetId"]}
        stub.append(sent[-1])
    result = journal.pull()
    assert (result.pages, result.stored) == (2, len(sent))  # the page, then the 204 at its end
    assert Event.objects.filter(arrived_by="journal").count() == len(sent)


def test_next_links_under_events_fast_are_followed_to_the_end_storing_every_event_once(stub):
    """Adobe's answers put `next` under /events-fast/ while the journal is /events/ (the SDK's
    test/mock.js); reading that as "the journal URL changed" restarted every page from the oldest."""
    fill(stub, 10)
    result = journal.pull()
    assert (result.pages, result.stored, result.duplicates) == (5, 10, 0)
    assert stub.paths[0] == "/events" + REGISTRATION
    assert set(stub.paths[1:]) == {"/events-fast" + REGISTRATION}
    assert [r.get("since") for r in stub.requests].count(None) == 1  # the oldest was read once
    assert cursor().caught_up_at is not None
    assert cursor().next_url.startswith(stub.server.url_for("/events-fast/"))


def test_link_relations_on_separate_header_lines_are_read_too(stub):
    stub.link_lines = True  # the journaling guide's examples: one Link header per relation
    fill(stub, 5)
    assert journal.pull().stored == 5
    assert cursor().caught_up_at is not None


def _at_the_end_a_week_ago(stub) -> None:
    """Read 3 events, then let more than the journal's retention pass without a new one."""
    fill(stub, 3)
    journal.pull()
    JournalCursor.objects.update(not_before=None)


def test_a_purged_position_answering_204_is_found_through_the_validate_link(stub):
    _at_the_end_a_week_ago(stub)
    stub.purged_answer = 204
    stub.expire(3)  # pos-000002, where the cursor stands, is purged
    fill(stub, 2, start=3)  # two newer events, which a 204 at the purged position would hide forever
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        result = journal.pull()
    assert stub.validations == [{"since": "pos-000002"}]
    assert result.stored == 2
    assert cursor().expired_at is not None


def test_a_purged_position_answering_204_is_found_when_the_validate_link_says_nothing(stub):
    _at_the_end_a_week_ago(stub)
    stub.purged_answer, stub.validate_status = 204, 200  # Adobe documents no answer of `validate`
    stub.expire(3)
    fill(stub, 2, start=3)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert journal.pull().stored == 2  # the oldest events are newer than a week: the position was purged
    assert cursor().expired_at is not None


def test_a_quiet_journal_is_checked_at_most_hourly_and_never_restarted(stub):
    _at_the_end_a_week_ago(stub)
    stub.purged_answer, stub.validate_status = 204, 200
    stub.expire(3)  # everything expired, nothing new: the journal is empty
    later = timezone.now() + timedelta(days=8)
    with time_machine.travel(later):
        assert journal.pull().stored == 0
        JournalCursor.objects.update(not_before=None)
        journal.pull()
    assert len(stub.validations) == 1
    assert cursor().expired_at is None and cursor().position == "pos-000002"


def test_a_position_read_within_the_retention_is_never_probed(stub):
    _at_the_end_a_week_ago(stub)
    with time_machine.travel(timezone.now() + timedelta(days=6)):
        journal.pull()
    assert stub.validations == []


def test_pulled_events_are_enriched_like_webhook_deliveries(stub, world):
    event = make_event(1)
    world.aem.add_asset(event["data"]["assetId"], {"dc:format": "image/png"})
    world.pim.products["SKU-100001"] = product("SKU-100001")
    stub.append(event)
    journal.pull()
    world.drain()
    assert Event.objects.get().status == "succeeded"
    assert len(world.aem.patches) == 1


def test_it_waits_for_the_retry_after_of_the_end_before_pulling_again(stub):
    stub.retry_after = "30"
    journal.pull()
    asked = len(stub.requests)
    fill(stub, 2)
    assert journal.pull().outcome.startswith("waiting")
    assert tasks.pull_journal() == "journal pull not due yet"
    assert len(stub.requests) == asked  # nothing was sent before the journal's retry-after
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert journal.pull().stored == 2


def test_the_schedule_pulls_again_only_after_the_poll_interval(stub, settings):
    settings.PIMSYNC_JOURNAL_POLL_SECONDS = 300
    stub.retry_after = "1"
    tasks.pull_journal()
    fill(stub, 1)
    with time_machine.travel(timezone.now() + timedelta(seconds=60)):
        assert tasks.pull_journal() == "journal pull not due yet"
    with time_machine.travel(timezone.now() + timedelta(seconds=300)):
        assert "1 new" in tasks.pull_journal()


def test_it_backs_off_for_the_retry_after_of_a_429(stub):
    fill(stub, 2)
    stub.faults.add("GET", 429, headers={"retry-after": "120"})
    result = journal.pull()
    assert result.outcome == "rate limited: waiting 120s"
    assert Event.objects.count() == 0
    assert "429" in cursor().last_error
    assert cursor().not_before > timezone.now() + timedelta(seconds=100)
    assert journal.pull().pages == 0
    with time_machine.travel(timezone.now() + timedelta(seconds=121)):
        assert journal.pull().stored == 2


def test_an_expired_position_is_recorded_and_the_pull_continues_from_the_oldest_event(stub, caplog):
    fill(stub, 6)
    journal.pull(max_pages=1)  # read pos-0..2
    assert cursor().position == "pos-000002"
    stub.expire(4)  # pos-0..3 are past the retention now
    result = journal.pull()
    assert cursor().expired_at is not None
    assert "expired" in cursor().last_error or "expired" in caplog.text
    assert any(r.levelname == "ERROR" and "expired" in r.getMessage() for r in caplog.records)
    # From the oldest still there: pos-4 and pos-5; pos-3 is lost to the journal as well.
    assert result.stored == 2
    assert Event.objects.count() == 5


def test_a_crash_between_commit_and_cursor_save_re_reads_the_page(stub, monkeypatch):
    fill(stub, 5)

    def crash(page):
        raise RuntimeError("the node died here")

    monkeypatch.setattr(journal, "after_commit", crash)
    with pytest.raises(RuntimeError):
        journal.pull()
    assert Event.objects.count() == 3  # the page was committed
    assert cursor().position == ""  # but the cursor did not move
    monkeypatch.undo()
    result = journal.pull()
    assert (result.duplicates, result.stored) == (3, 2)  # the page was read again, nothing twice
    assert Event.objects.count() == 5


def test_only_one_puller_works_at_a_time(stub):
    fill(stub, 2)
    other = JournalCursor.acquire(JournalCursor.SINGLETON_PK)  # another node is pulling
    assert other
    result = journal.pull()
    assert result.outcome.startswith("skipped")
    assert stub.requests == []
    JournalCursor.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # its lease ran out
    assert journal.pull().stored == 2


def test_a_puller_that_lost_its_lease_moves_no_cursor(stub, monkeypatch):
    fill(stub, 4)

    def taken_over(page):
        JournalCursor.objects.update(lease_token="another-node")

    monkeypatch.setattr(journal, "after_commit", taken_over)
    result = journal.pull()
    assert result.outcome.startswith("stopped")
    assert cursor().position == ""


def test_a_webhook_delivery_after_the_journal_is_a_duplicate(stub, client, world):
    event = make_event(3)
    stub.append(event)
    journal.pull()
    answer = world.adobe.deliver(client, event)
    assert answer.status_code == 200 and answer.json()["duplicates"] == 1
    assert Event.objects.get().arrived_by == "journal"


def test_a_journal_event_after_the_webhook_is_a_duplicate(stub, client, world):
    event = make_event(4)
    assert world.adobe.deliver(client, event).json()["accepted"] == 1
    stub.append(event)
    result = journal.pull()
    assert (result.stored, result.duplicates) == (0, 1)
    assert Event.objects.get().arrived_by == "webhook"


def test_it_refuses_a_link_to_another_origin(stub):
    fill(stub, 4)
    stub.link_prefix = "http://elsewhere.example"
    result = journal.pull()
    assert result.outcome.startswith("failed")
    assert "refusing to follow" in cursor().last_error
    assert len(stub.requests) == 1
    assert cursor().position == ""  # the page's events are stored again next time, not skipped


@pytest.fixture
def elsewhere():
    """A loopback server standing for a host pimsync was never configured with."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


def test_it_refuses_a_link_another_url_parser_reads_as_another_host(stub, elsewhere):
    fill(stub, 4)
    # The journal's own origin to urlsplit; `elsewhere` to urllib3, which is what connects.
    stub.link_prefix = f"http://{elsewhere.host}:{elsewhere.port}\\@{urlsplit(stub.url).netloc}"
    result = journal.pull()
    assert result.outcome.startswith("failed")
    assert "refusing to follow" in cursor().last_error
    assert elsewhere.log == []  # never reached: no request, no token
    assert len(stub.requests) == 1


def test_an_unreadable_event_does_not_hold_up_the_ones_behind_it(stub):
    stub.append({"type": "aem.assets.asset.processing_completed"})  # no eventid, no source
    fill(stub, 2)
    result = journal.pull()
    assert (result.unreadable, result.stored) == (1, 2)


def test_the_task_does_nothing_without_a_journal_url(settings):
    settings.ADOBE_JOURNAL_URL = ""
    assert tasks.pull_journal() == "journal off: ADOBE_JOURNAL_URL is not set"


def test_the_command_repositions_and_pulls(stub):
    fill(stub, 2)
    out = io.StringIO()
    call_command("pull_journal", "--latest", stdout=out)
    assert stub.requests[0].get("latest") == "true"
    assert "Cursor moved" in out.getvalue() and "0 new" in out.getvalue()
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        call_command("pull_journal", "--from-start", stdout=out)
    assert Event.objects.count() == 2


def test_the_command_refuses_a_malformed_seek(stub):
    with pytest.raises(CommandError, match="negative ISO-8601 duration"):
        call_command("pull_journal", "--seek", "2 hours", stdout=io.StringIO())
    call_command("pull_journal", "--seek=-PT2H", stdout=io.StringIO())
    assert stub.requests[0].get("seek") == "-PT2H"


def test_migrate_installs_the_journal_schedule(db):
    from django_q.models import Schedule

    assert Schedule.objects.filter(func="pimsync.tasks.pull_journal", minutes=1).exists()


def test_checks_warn_without_a_journal_and_refuse_one_without_an_org(settings):
    settings.DEBUG = False
    settings.ADOBE_JOURNAL_URL = ""
    assert any(isinstance(m, Warning) and m.id == "pimsync.W040" for m in configuration(None))
    settings.ADOBE_JOURNAL_URL = "https://events-va6.adobe.io/events/organizations/1/integrations/2/3"
    settings.ADOBE_IMS_ORG_ID = ""
    assert any(isinstance(m, Error) and m.id == "pimsync.E040" for m in configuration(None))


def test_link_headers_are_read_with_quoted_commas_and_several_rels():
    header = '</a?since=1>; title="x, y"; rel="next", </b>; rel="validate prev"'
    assert parse_links(header) == {"next": "/a?since=1", "validate": "/b", "prev": "/b"}


def test_a_hostile_link_header_is_read_at_once():
    # Quote and bracket soup of the maximal length: linear work, not a backtracking regex.
    assert parse_links('<"' * 8000) == {}
    assert parse_links("<" + ";rel=" * 3000 + ">") == {}


def test_the_command_takes_seek_as_written_on_a_command_line(stub, capsys):
    from django.core.management import ManagementUtility

    ManagementUtility(["manage.py", "pull_journal", "--seek", "-P1D"]).execute()
    assert stub.requests[0].get("seek") == "-P1D"
    assert "Cursor moved" in capsys.readouterr().out


def test_the_event_list_filters_on_how_events_arrived(stub, client, world, people):
    world.adobe.deliver(client, make_event(1))
    stub.append(make_event(2))
    journal.pull()
    client.force_login(people["Viewers"])
    page = client.get("/admin/pimsync/event/", {"arrived_by__exact": "journal"}).content.decode()
    assert "SKU-100002" in page and "SKU-100001" not in page
    from pimsync import selection

    with pytest.raises(selection.SelectionError):
        selection.check("arrived_by__exact=carrier-pigeon")
    assert list(selection.select("arrived_by__exact=webhook").values_list("asset_name", flat=True)) == [
        "SKU-100001_front.png"
    ]


def test_the_overview_and_metrics_show_what_only_the_journal_delivered(stub, client, world, people):
    world.adobe.deliver(client, make_event(1))
    fill(stub, 3, start=2)
    journal.pull()
    client.force_login(people["Viewers"])
    page = client.get("/admin/").content.decode()
    assert 'id="journal-only-day"' in page
    assert ">3</a></span>events only the journal delivered (24 h)" in page
    metrics = client.get("/metrics").content.decode()
    assert 'pimsync_journal_only_events{window="24h"} 3' in metrics
    assert "pimsync_journal_events_pulled_total 3" in metrics
    assert "pimsync_journal_lag_seconds NaN" not in metrics  # it reached the end of the journal


@pytest.fixture
def sandbox_journal(settings, live_server, tmp_path, monkeypatch):
    """pimsync beside its own sandbox (IMS, AEM, journal) on a live server, as `make run` has it."""
    from pimsync.adobe import ims
    from pimsync.sandbox import keys
    from pimsync.sandbox.defaults import SANDBOX_ORG_ID

    monkeypatch.setenv("PIMSYNC_SANDBOX_KEY_FILE", str(tmp_path / "key.pem"))
    keys.private_key.cache_clear()
    base = live_server.url
    settings.PIMSYNC_SANDBOX = True
    settings.PIMSYNC_PUBLIC_URL = base
    settings.ADOBE_IMS_TOKEN_URL = base + "/sandbox/ims/token/v3"
    settings.AEM_AUTHOR_URL = base + "/sandbox/aem"
    settings.ADOBE_JOURNAL_URL = base + "/sandbox/journal"
    settings.ADOBE_IMS_ORG_ID = SANDBOX_ORG_ID
    settings.PIM_CONNECTOR = "demo"
    ims.forget()
    yield base
    # Close this thread's keep-alive connections to the live server: each one holds a server thread
    # and its database connection open, and PostgreSQL then refuses to drop the test database.
    http.session().close()
    ims.forget()
    keys.private_key.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_journal_recovers_uploads_made_while_the_webhook_was_down(sandbox_journal):
    from pimsync import mapping, worker

    call_command("seed", stdout=io.StringIO())
    mapping.forget()
    out = io.StringIO()
    call_command("simulate_upload", "--count", "6", "--seed", "3", "--webhook-down", stdout=out)
    assert "only in the journal" in out.getvalue()
    assert Event.objects.count() == 0
    result = journal.pull()
    assert (result.stored, result.outcome.startswith("at the end")) == (6, True)
    assert set(Event.objects.values_list("arrived_by", flat=True)) == {"journal"}
    worker.drain()
    assert not Event.objects.pending().exists()
    assert Event.objects.filter(status="succeeded").exists()


@pytest.mark.django_db
def test_the_sandbox_journal_answers_410_for_a_position_it_does_not_hold(client, settings, tmp_path, monkeypatch):
    from pimsync.models import SandboxJournalEntry
    from pimsync.sandbox.defaults import SANDBOX_ORG_ID
    from tests.test_sandbox import token

    settings.PIMSYNC_SANDBOX = True
    settings.ADOBE_IMS_ORG_ID = SANDBOX_ORG_ID
    for n in range(3):
        SandboxJournalEntry.objects.create(event=make_event(n))
    headers = {
        "HTTP_AUTHORIZATION": f"Bearer {token(client)}",
        "HTTP_X_API_KEY": "0123456789abcdef0123456789abcdef",
        "HTTP_X_IMS_ORG_ID": SANDBOX_ORG_ID,
    }
    first = client.get("/sandbox/journal", {"limit": 2}, **headers)
    assert first.status_code == 200 and len(first.json()["events"]) == 2
    link = parse_links(first["Link"])["next"]
    assert link.startswith("/sandbox/journal?since=")  # root-relative, as Adobe's
    second = client.get(link, **headers)
    assert len(second.json()["events"]) == 1
    end = client.get(parse_links(second["Link"])["next"], **headers)
    assert end.status_code == 204 and end["retry-after"]
    assert client.get("/sandbox/journal", {"since": "999999"}, **headers).status_code == 410
    assert client.get("/sandbox/journal", **{**headers, "HTTP_X_IMS_ORG_ID": "other@AdobeOrg"}).status_code == 403


def test_a_new_journal_url_is_read_from_its_oldest_event(stub, settings):
    fill(stub, 2)
    JournalCursor.load()
    old = "http://127.0.0.1:1/events/organizations/1/integrations/2/old"
    JournalCursor.objects.update(started_from=old, next_url=f"{old}?since=9")
    assert journal.pull().stored == 2
    assert stub.requests[0].get("since") is None
    assert cursor().started_from == stub.url


def test_a_cursor_from_before_it_knew_its_journal_is_read_on_when_its_link_is_on_the_journals_origin(stub):
    fill(stub, 4)
    JournalCursor.load()
    JournalCursor.objects.update(next_url=stub.url + "?since=pos-000001", position="pos-000001")
    assert journal.pull().stored == 2  # the two after pos-000001: nothing read again
    assert cursor().started_from == stub.url


def test_a_cursor_from_before_it_knew_its_journal_on_another_origin_starts_from_the_oldest(stub):
    fill(stub, 2)
    JournalCursor.load()
    JournalCursor.objects.update(next_url="http://127.0.0.1:1/events/organizations/1/integrations/2/old?since=9")
    assert journal.pull().stored == 2
    assert stub.requests[0].get("since") is None


def test_sandbox_mode_asks_for_the_journal_scope():
    from pimsync.sandbox.defaults import apply_sandbox_defaults

    values = {"PIMSYNC_PUBLIC_URL": "http://127.0.0.1:8000", "ADOBE_SCOPES": "AdobeID,openid"}
    apply_sandbox_defaults(values)
    assert values["ADOBE_JOURNAL_URL"] == "http://127.0.0.1:8000/sandbox/journal"
    assert values["ADOBE_SCOPES"].split(",")[-1] == "adobeio_api"


def test_repositioning_while_another_node_pulls_is_refused_and_moves_nothing(stub):
    fill(stub, 2)
    assert JournalCursor.acquire(JournalCursor.SINGLETON_PK)  # another node is pulling
    with pytest.raises(CommandError, match="running on another node"):
        call_command("pull_journal", "--latest", stdout=io.StringIO())
    assert cursor().next_url == "" and stub.requests == []
