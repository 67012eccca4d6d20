"""Alerts: each condition sends one message when it starts, none while it lasts, one when it ends,
to a real SMTP server on loopback (aiosmtpd) and a chat webhook stub (pytest-httpserver)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from pimsync import inbound, tasks
from pimsync.alerts import monitor
from pimsync.checks import configuration
from pimsync.models import Alert, Attempt, Event, Heartbeat, JournalCursor, SignatureRefusals, Status
from tests.conftest import make_event
from tests.test_settings import manage

PUBLIC = "https://pimsync.example.com"
CHAT_PATH = "/services/T000/B000/chat-credential-in-path"
SECRET = "alert-signing-secret"
EVENTS = "/admin/pimsync/event/"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd's handler: keeps every message the SMTP server accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@dataclass
class Channels:
    """What reached a person: e-mails in the SMTP server and texts posted to the chat webhook."""

    inbox: Inbox
    httpserver: object
    seen_mail: int = 0
    seen_chat: int = 0
    signatures: list[str] = field(default_factory=list)

    def chat(self) -> list[str]:
        texts = []
        for request, response in self.httpserver.log:
            if request.path == CHAT_PATH and response.status_code < 300:  # delivered, not refused
                verify(request.headers.get("X-Pimsync-Signature", ""), request.get_data())
                texts.append(json.loads(request.get_data())["text"])
        return texts

    def new(self) -> tuple[list[tuple[str, str]], list[str]]:
        """The e-mails (subject, body) and chat texts that arrived since the last call."""
        mails = [(m["Subject"], m.get_payload(decode=True).decode()) for m in self.inbox.messages[self.seen_mail :]]
        chats = self.chat()[self.seen_chat :]
        self.seen_mail, self.seen_chat = len(self.inbox.messages), self.seen_chat + len(chats)
        return mails, chats


def verify(header: str, body: bytes) -> None:
    """Check the chat webhook's signature as a receiver would."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "the chat webhook's signature does not verify"


@pytest.fixture
def channels(smtp, httpserver, settings, db) -> Channels:
    controller, inbox = smtp
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.PIMSYNC_ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    settings.PIMSYNC_ALERT_WEBHOOK_URL = httpserver.url_for(CHAT_PATH)
    settings.PIMSYNC_ALERT_WEBHOOK_SECRET = SECRET
    settings.PIMSYNC_PUBLIC_URL = PUBLIC
    httpserver.expect_request(CHAT_PATH, method="POST").respond_with_data("ok")
    return Channels(inbox, httpserver)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def stored_event(n: int, **fields) -> Event:
    values = {"event_id": f"evt-{n}", "type": "aem.assets.asset.processing_completed", "source": "s", "payload": {}}
    return Event.objects.create(**{**values, **fields})


def attempt(event: Event, number: int, outcome: str, error_class: str = "") -> Attempt:
    return Attempt.objects.create(
        event=event, number=number, started_at=timezone.now(), outcome=outcome, error_class=error_class
    )


# Each scenario: make the condition start, keep it going a minute later, then make it end.
def failures_start(ctx):
    ctx["settings"].PIMSYNC_ALERT_FAILURES = 3
    for n in range(4):
        stored_event(n, status=Status.FAILED, finished_at=timezone.now())


def failures_end(ctx):
    ctx["clock"].shift(timedelta(minutes=16))  # the failures left the 15-minute window


def worker_start(ctx):
    Heartbeat.beat(Heartbeat.SWEEPER)
    assert monitor.check(conditions=ctx["conditions"]).startswith("alerts: no change")
    ctx["clock"].shift(timedelta(minutes=4))


def worker_end(ctx):
    Heartbeat.beat(Heartbeat.SWEEPER)


def due_start(ctx):
    ctx["event"] = stored_event(
        1, status=Status.RETRYING, next_attempt_at=timezone.now() - timedelta(minutes=20), error_class="pim_http"
    )


def due_end(ctx):
    Event.objects.filter(pk=ctx["event"].pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())


def journal_start(ctx):
    ctx["settings"].ADOBE_JOURNAL_URL = "https://api.adobe.io/events/organizations/1/integrations/2/3"
    # The puller reached the end of the journal, but its position had expired (410) on the way.
    JournalCursor.objects.create(caught_up_at=timezone.now(), expired_at=timezone.now())


def journal_end(ctx):
    ctx["clock"].shift(timedelta(minutes=16))
    JournalCursor.objects.update(caught_up_at=timezone.now())


def signatures_start(ctx):
    ctx["settings"].PIMSYNC_ALERT_SIGNATURE_FAILURES = 3
    ctx["settings"].ADOBE_CLIENT_ID = "a-client-id-these-events-are-not-for"
    for n in range(4):
        answer = ctx["client"].post("/webhooks/aem", data=make_event(n), content_type="application/cloudevents+json")
        assert answer.status_code == 401


def signatures_end(ctx):
    ctx["clock"].shift(timedelta(minutes=16))


def unreachable_start(system: str, error_class: str):
    def start(ctx):
        ctx["event"] = stored_event(1, status=Status.RETRYING)
        attempt(ctx["event"], 1, Attempt.Outcome.SUCCEEDED)
        ctx["clock"].shift(timedelta(minutes=1))
        attempt(ctx["event"], 2, Attempt.Outcome.RETRYING, error_class)
        ctx["clock"].shift(timedelta(minutes=6))
        attempt(ctx["event"], 3, Attempt.Outcome.RETRYING, f"{system}_timeout")
        assert monitor.check(conditions=ctx["conditions"]).startswith("alerts: no change")  # not 10 minutes yet
        ctx["clock"].shift(timedelta(minutes=5))
        attempt(ctx["event"], 4, Attempt.Outcome.RETRYING, error_class)

    return start


def unreachable_end(ctx):
    attempt(ctx["event"], 5, Attempt.Outcome.SUCCEEDED)


SCENARIOS = {
    "failures": (failures_start, failures_end, f"{EVENTS}?status__exact=failed"),
    "worker_silent": (worker_start, worker_end, "/admin/"),
    "retries_due": (due_start, due_end, "/admin/"),
    "journal": (journal_start, journal_end, "/admin/"),
    "signature_refusals": (signatures_start, signatures_end, None),  # the alert's own page
    "pim_unreachable": (
        unreachable_start("pim", "pim_unreachable"),
        unreachable_end,
        "/admin/pimsync/event/?error=pim",
    ),
    "aem_unreachable": (unreachable_start("aem", "aem_503"), unreachable_end, "/admin/pimsync/event/?error=aem"),
}


def test_every_condition_has_a_scenario():
    assert set(SCENARIOS) == {condition.key for condition in monitor.CONDITIONS}


@pytest.mark.parametrize("key", SCENARIOS)
def test_a_condition_sends_one_message_when_it_starts_none_while_it_lasts_and_one_when_it_ends(
    key, channels, clock, client, settings, monkeypatch, people
):
    condition = next(c for c in monitor.CONDITIONS if c.key == key)
    start, end, path = SCENARIOS[key]
    ctx = {"settings": settings, "clock": clock, "client": client, "monkeypatch": monkeypatch}
    ctx["conditions"] = [condition]

    start(ctx)
    assert monitor.check(conditions=[condition]).startswith(f"alerts: {key} opened")
    alert = Alert.objects.get(condition=key)
    link = PUBLIC + (path or reverse("admin:pimsync_alert_change", args=[alert.pk]))
    mails, chats = channels.new()
    assert [subject for subject, _ in mails] == [f"[pimsync] {condition.title}"]
    assert link in mails[0][1] and alert.summary in mails[0][1]
    assert len(chats) == 1 and link in chats[0] and condition.title in chats[0]
    client.force_login(people["Viewers"])
    assert client.get(link.removeprefix(PUBLIC)).status_code == 200  # a Viewer can open the page

    for _ in range(3):  # it lasts: checked again and again, nobody hears of it again
        clock.shift(timedelta(minutes=1))
        if key.endswith("_unreachable"):
            attempt(ctx["event"], Attempt.objects.filter(event=ctx["event"]).count() + 1, "retrying", f"{key[:3]}_503")
        assert monitor.check(conditions=[condition]).startswith("alerts: no change")
    assert channels.new() == ([], [])

    end(ctx)
    assert monitor.check(conditions=[condition]).startswith(f"alerts: {key} resolved")
    mails, chats = channels.new()
    assert [subject for subject, _ in mails] == [f"[pimsync] Resolved: {condition.title}"]
    assert link in mails[0][1] and len(chats) == 1 and link in chats[0] and "Resolved" in chats[0]
    assert monitor.check(conditions=[condition]).startswith("alerts: no change")
    assert channels.new() == ([], [])
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.notified_open == alert.notified_resolved == ["email", "chat"]


def test_the_email_goes_to_every_address_of_the_setting(channels, clock, settings):
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    monitor.check(conditions=monitor.CONDITIONS[:1])
    message = channels.inbox.messages[0]
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL


def test_a_condition_that_starts_again_after_it_ended_opens_a_new_alert(channels, clock, settings):
    settings.PIMSYNC_ALERT_FAILURES = 0
    for round in range(2):
        stored_event(round, status=Status.FAILED, finished_at=timezone.now())
        monitor.check(conditions=monitor.CONDITIONS[:1])
        clock.shift(timedelta(minutes=16))
        monitor.check(conditions=monitor.CONDITIONS[:1])
    assert Alert.objects.filter(condition="failures", resolved_at__isnull=False).count() == 2
    mails, chats = channels.new()
    assert len(mails) == len(chats) == 4


def test_a_failing_chat_webhook_breaks_nothing_and_its_message_is_sent_at_the_next_check(
    channels, clock, settings, httpserver, caplog
):
    httpserver.clear_all_handlers()
    httpserver.expect_ordered_request(CHAT_PATH, method="POST").respond_with_data("down", status=500)
    httpserver.expect_request(CHAT_PATH, method="POST").respond_with_data("ok")
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())

    with caplog.at_level(logging.WARNING, logger="pimsync.alerts.monitor"):
        assert monitor.check(conditions=monitor.CONDITIONS[:1]).endswith("1 message(s) sent")
    assert "alert_webhook_500" in caplog.text and "chat-credential-in-path" not in caplog.text
    mails, _ = channels.new()
    assert len(mails) == 1
    assert Alert.objects.get().notify_failures == 1

    clock.shift(timedelta(minutes=1))
    assert monitor.check(conditions=monitor.CONDITIONS[:1]).endswith("1 message(s) sent")
    mails, chats = channels.new()
    assert mails == [] and len(chats) == 1 and "[pimsync] Events are failing" in chats[0]
    clock.shift(timedelta(minutes=1))
    assert monitor.check(conditions=monitor.CONDITIONS[:1]).endswith("0 message(s) sent")


def test_an_unreachable_mail_server_breaks_nothing_and_the_chat_still_hears(channels, clock, settings):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    monitor.check(conditions=monitor.CONDITIONS[:1])
    assert len(channels.chat()) == 1
    alert = Alert.objects.get()
    assert alert.notified_open == ["chat"] and alert.notify_failures == 1


def test_without_channels_alerts_are_still_recorded_and_shown_on_the_overview(clock, settings, client, people):
    settings.PIMSYNC_ALERT_EMAILS, settings.PIMSYNC_ALERT_WEBHOOK_URL = [], ""
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    assert monitor.check(conditions=monitor.CONDITIONS[:1]) == "alerts: failures opened; 0 message(s) sent"
    client.force_login(people["Viewers"])
    page = client.get("/admin/").content.decode()
    assert 'id="open-alerts"' in page and "Events are failing" in page
    history = client.get(reverse("admin:pimsync_alert_changelist")).content.decode()
    assert "Events are failing" in history


def test_nobody_may_edit_or_delete_an_alert(clock, settings, client, people, admin_user):
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    monitor.check(conditions=monitor.CONDITIONS[:1])
    alert = Alert.objects.get()
    for user in (people["Viewers"], admin_user):
        client.force_login(user)
        change = reverse("admin:pimsync_alert_change", args=[alert.pk])
        assert client.get(change).status_code == 200
        assert client.post(change, {"summary": "edited"}).status_code == 403
        assert client.post(reverse("admin:pimsync_alert_delete", args=[alert.pk]), {"post": "yes"}).status_code == 403
    alert.refresh_from_db()
    assert alert.summary != "edited"


def test_the_scheduled_task_checks_every_condition_and_a_quiet_deployment_hears_nothing(channels, clock):
    assert Schedule.objects.filter(func="pimsync.tasks.check_alerts", minutes=1).exists()
    Heartbeat.beat(Heartbeat.SWEEPER)
    assert tasks.check_alerts() == "alerts: no change; 0 message(s) sent"
    assert channels.new() == ([], [])


def test_the_command_reports_a_silent_worker(channels, clock, capsys):
    call_command("check_alerts")
    assert "worker_silent opened" in capsys.readouterr().out
    mails, _ = channels.new()
    assert [subject for subject, _ in mails] == ["[pimsync] No worker heartbeat"]


def test_the_command_prints_nothing_when_nothing_changed(channels, clock, capsys):
    Heartbeat.beat(Heartbeat.SWEEPER)
    call_command("check_alerts")
    assert capsys.readouterr().out == ""  # a timer's journal holds only what happened
    call_command("check_alerts", verbosity=2)
    assert capsys.readouterr().out == "alerts: no change; 0 message(s) sent\n"


def test_the_command_sends_a_test_message_through_every_channel(channels, capsys):
    call_command("check_alerts", "--test")
    out = capsys.readouterr().out
    assert "OK   email" in out and "OK   chat" in out
    mails, chats = channels.new()
    assert [subject for subject, _ in mails] == ["[pimsync] Test message"]
    assert len(chats) == 1 and chats[0].startswith("[pimsync] Test message")
    assert not Alert.objects.exists()  # a test opens no alert


def test_the_test_message_fails_loudly_on_a_broken_channel(channels, settings, capsys):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    with pytest.raises(CommandError, match="did not go out on: email"):
        call_command("check_alerts", "--test")
    captured = capsys.readouterr()
    assert "FAIL email" in captured.err and "OK   chat" in captured.out
    assert channels.new()[1]  # the chat channel still got its message


def test_the_test_message_needs_a_channel(settings, db):
    settings.PIMSYNC_ALERT_EMAILS, settings.PIMSYNC_ALERT_WEBHOOK_URL = [], ""
    with pytest.raises(CommandError, match="no alert channel is configured"):
        call_command("check_alerts", "--test")


def test_the_journal_condition_stays_quiet_without_a_journal(channels, clock, settings):
    settings.ADOBE_JOURNAL_URL = ""
    assert monitor.journal_behind(timezone.now()) == monitor.Verdict(False)


def test_refusals_are_written_at_most_once_per_interval_not_once_per_request(client, settings, monkeypatch, clock, db):
    counter = inbound.RefusalCounter(flush_seconds=3600)
    monkeypatch.setattr(inbound, "REFUSALS", counter)
    settings.ADOBE_CLIENT_ID = "a-client-id-these-events-are-not-for"
    try:
        for n in range(30):
            client.post("/webhooks/aem", data=make_event(n), content_type="application/cloudevents+json")
        assert sum(SignatureRefusals.objects.values_list("count", flat=True)) == 1  # the first, written at once
        counter.flush()
        assert inbound.recent_refusals(timezone.now() - timedelta(minutes=1)) == 30
    finally:
        if counter._timer is not None:
            counter._timer.cancel()


def test_refusals_kept_in_memory_are_written_by_the_timer_when_no_further_request_comes(
    client, settings, monkeypatch, transactional_db
):
    counter = inbound.RefusalCounter(flush_seconds=0.2)
    monkeypatch.setattr(inbound, "REFUSALS", counter)
    settings.ADOBE_CLIENT_ID = "a-client-id-these-events-are-not-for"
    for n in range(3):
        client.post("/webhooks/aem", data=make_event(n), content_type="application/cloudevents+json")
    since = timezone.now() - timedelta(minutes=1)
    for _ in range(100):  # bounded: the timer writes within a fraction of a second
        if inbound.recent_refusals(since) == 3:
            break
        time.sleep(0.05)
    assert inbound.recent_refusals(since) == 3


def test_a_chat_webhook_that_is_not_a_url_is_an_error_that_does_not_show_it(settings):
    settings.PIMSYNC_ALERT_WEBHOOK_URL = "hooks.slack.com/services/T0/B0/secret-part"
    problems = {p.id: p.msg for p in configuration(None)}
    assert "pimsync.E030" in problems and "secret-part" not in problems["pimsync.E030"]


def test_alert_channels_with_a_loopback_public_url_are_warned_about_in_production(settings):
    settings.DEBUG, settings.PIMSYNC_ALERT_EMAILS = False, ["ops@example.com"]
    settings.PIMSYNC_PUBLIC_URL = "http://127.0.0.1:8000"
    assert "pimsync.W030" in {p.id for p in configuration(None)}
    settings.PIMSYNC_PUBLIC_URL = PUBLIC
    assert "pimsync.W030" not in {p.id for p in configuration(None)}


def test_a_channel_that_failed_is_not_tried_again_within_the_same_check(channels, clock, settings, httpserver):
    httpserver.clear_all_handlers()
    httpserver.expect_ordered_request(CHAT_PATH, method="POST").respond_with_data("down", status=503)
    httpserver.expect_request(CHAT_PATH, method="POST").respond_with_data("ok")
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    monitor.check(conditions=monitor.CONDITIONS[:2])  # failures and a silent worker: two alerts open
    assert len(httpserver.log) == 1
    clock.shift(timedelta(minutes=1))
    monitor.check(conditions=monitor.CONDITIONS[:2])
    assert sorted(text.splitlines()[0] for text in channels.chat()) == [
        "[pimsync] Events are failing",
        "[pimsync] No worker heartbeat",
    ]
    assert len(channels.inbox.messages) == 2


def test_the_journal_condition_stays_quiet_while_there_is_no_journal_cursor(settings, db):
    settings.ADOBE_JOURNAL_URL = "https://api.adobe.io/events/organizations/1/integrations/2/3"
    assert monitor.journal_behind(timezone.now()) == monitor.Verdict(False)


def test_a_threshold_that_is_not_a_number_is_reported_by_the_checks():
    result = manage({"PIMSYNC_ALERT_FAILURES": "ten", "PIMSYNC_ALERT_UNREACHABLE_MINUTES": "0"}, "check")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "(pimsync.E002) PIMSYNC_ALERT_FAILURES='ten' is not a whole number" in result.stderr
    assert "(pimsync.E002) PIMSYNC_ALERT_UNREACHABLE_MINUTES='0' is not a whole number of at least 1" in result.stderr


def test_a_pim_that_stops_answering_is_reported_from_the_workers_own_attempts(client, world, channels, settings):
    """End to end: the errors the outbound client records are the ones the condition reads."""
    world.pim.products["SKU-100001"] = {"SKUID": "SKU-100001"}
    settings.PIM_BASE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens: the PIM is down
    assert world.adobe.deliver(client, world.upload(client, 1, sku="SKU-100001")).status_code == 200
    world.drain()
    assert Event.objects.get().error_class == "pim_unreachable"
    start = timezone.now()
    pim = [c for c in monitor.CONDITIONS if c.key == "pim_unreachable"]

    with time_machine.travel(start + timedelta(minutes=11), tick=True):
        tasks.drain()  # the retry is due: it fails the same way
        assert Attempt.objects.count() == 2
        assert monitor.check(conditions=pim).startswith("alerts: pim_unreachable opened")
    with time_machine.travel(start + timedelta(minutes=30), tick=True):
        settings.PIM_BASE_URL = world.pim.url  # the PIM is back
        tasks.drain()
        assert Event.objects.get().status == Status.SUCCEEDED
        assert monitor.check(conditions=pim).startswith("alerts: pim_unreachable resolved")
    mails, chats = channels.new()
    assert [subject for subject, _ in mails] == [
        "[pimsync] The PIM is unreachable",
        "[pimsync] Resolved: The PIM is unreachable",
    ]
    assert len(chats) == 2 and all(f"{PUBLIC}{EVENTS}?error=pim" in text for text in chats)


def test_the_database_refuses_a_second_open_alert_for_one_condition_but_keeps_resolved_ones(db):
    Alert.objects.create(condition="failures", summary="old", resolved_at=timezone.now())
    Alert.objects.create(condition="failures", summary="open")
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(condition="failures", summary="a second checker's")
    assert Alert.objects.filter(condition="failures").count() == 2


# --- on a fresh start, and silenced ----------------------------------------------------------------


def test_on_a_fresh_start_the_worker_alert_says_none_has_reported_yet_not_since_never(channels, clock):
    monitor.check(conditions=[c for c in monitor.CONDITIONS if c.key == "worker_silent"])
    summary = Alert.objects.get(condition="worker_silent").summary
    assert "never" not in summary
    assert summary.startswith("No worker has reported yet")


def test_a_journal_never_read_to_its_end_says_so_without_since_never(settings, db):
    settings.ADOBE_JOURNAL_URL = "https://api.adobe.io/events/organizations/1/integrations/2/3"
    JournalCursor.objects.create()
    verdict = monitor.journal_behind(timezone.now())
    assert verdict.firing and "never" not in verdict.summary
    assert "has not reached the end of the journal yet" in verdict.summary


def silence_url(alert: Alert) -> str:
    return reverse("admin:pimsync_alert_silence", args=[alert.pk])


@pytest.fixture
def failing(channels, clock, settings) -> Alert:
    """An open alert about failures whose opening message went out."""
    settings.PIMSYNC_ALERT_FAILURES = 0
    stored_event(1, status=Status.FAILED, finished_at=timezone.now())
    monitor.check(conditions=[FAILURES])
    channels.new()
    return Alert.objects.get(condition="failures")


FAILURES = next(c for c in monitor.CONDITIONS if c.key == "failures")


def test_support_silences_an_alert_for_a_while_and_no_message_goes_out_until_then(
    failing, channels, clock, client, people
):
    client.force_login(people["Support"])
    assert 'id="silence-yes"' in client.get(silence_url(failing)).content.decode()
    response = client.post(silence_url(failing), {"hours": "4", "why": "AEM maintenance until 18:00"})
    assert response.status_code == 302
    failing.refresh_from_db()
    assert (failing.silenced_by, failing.silenced_why) == (people["Support"], "AEM maintenance until 18:00")
    assert failing.silenced_until == timezone.now() + timedelta(hours=4)
    listed = client.get("/admin/pimsync/alert/").content.decode()
    assert "by support: AEM maintenance until 18:00" in listed

    # It ends and starts again while silenced: the new alert is silenced too, and nobody hears.
    clock.shift(timedelta(minutes=20))
    assert monitor.check(conditions=[FAILURES]).startswith("alerts: failures resolved")
    stored_event(2, status=Status.FAILED, finished_at=timezone.now())
    assert monitor.check(conditions=[FAILURES]).startswith("alerts: failures opened")
    assert channels.new() == ([], [])
    again = Alert.objects.get(condition="failures", resolved_at__isnull=True)
    assert again.silenced_why == "AEM maintenance until 18:00"

    clock.shift(timedelta(hours=4))  # the silence is over; the newer alert is still open
    monitor.check(conditions=[FAILURES])
    mails, chats = channels.new()
    # The open one says so; the first one, whose start was heard before the silence, says it ended.
    assert sorted(subject for subject, _ in mails) == [
        "[pimsync] Events are failing",
        "[pimsync] Resolved: Events are failing",
    ]


def test_support_may_end_a_silence_early(failing, channels, clock, client, people):
    client.force_login(people["Support"])
    client.post(silence_url(failing), {"hours": "24", "why": "known"})
    client.post(reverse("admin:pimsync_alert_unsilence", args=[failing.pk]))
    failing.refresh_from_db()
    assert not failing.is_silenced(timezone.now())


def test_a_silence_needs_a_reason(failing, client, people):
    client.force_login(people["Support"])
    page = client.post(silence_url(failing), {"hours": "4", "why": ""})
    assert page.status_code == 200 and "This field is required" in page.content.decode()
    failing.refresh_from_db()
    assert failing.silenced_until is None


def test_a_viewer_may_not_silence_an_alert(failing, client, people):
    client.force_login(people["Viewers"])
    assert "Silence…" not in client.get("/admin/pimsync/alert/").content.decode()
    assert client.get(silence_url(failing)).status_code == 403
    assert client.post(silence_url(failing), {"hours": "4", "why": "x"}).status_code == 403
    failing.refresh_from_db()
    assert failing.silenced_until is None


def test_silencing_needs_the_csrf_token(failing, people):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(people["Support"])
    assert strict.post(silence_url(failing), {"hours": "4", "why": "x"}).status_code == 403
