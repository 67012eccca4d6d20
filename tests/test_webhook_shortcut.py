"""The WSGI application gunicorn runs (`pimsync.wsgi.application`) takes Adobe's deliveries the
short way, past Django's middleware chain, and answers exactly what Django's whole stack answers:
the same status, body and headers, the host check and the HTTPS redirect, 503 without a database,
500 for a bug, and the request signals that look after the database connections.

Django's test client runs its own handler, so these tests call the WSGI application itself, as a
WSGI server does: the environ in, `start_response`, the body iterated, then `close()`."""

from __future__ import annotations

import json
import re

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import OperationalError
from django.test import RequestFactory
from django.utils.http import parse_header_parameters

import pimsync.wsgi
from pimsync import webhook_shortcut
from pimsync.adobe import events
from pimsync.models import Event
from pimsync.webhook_shortcut import WebhookShortcut
from tests.conftest import fixture_bytes, make_event

# The connections' lifetime is looked after by these signals; with the test's own transaction
# (the `db` fixture) they would close its connection, so these tests commit (`transactional_db`).
pytestmark = pytest.mark.django_db(transaction=True)


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.status = status
        self.headers = headers
        self.content = body

    def json(self):
        return json.loads(self.content)


class WsgiClient:
    """Requests to a WSGI application, the way a WSGI server makes them; `post` takes what Django's
    test client's does, so `adobe.deliver` can use it."""

    def __init__(self, application) -> None:
        self.application = application

    def post(self, path: str, data: bytes = b"", content_type: str = "application/json", secure=False, **extra):
        environ = RequestFactory().post(path, data=data, content_type=content_type, secure=secure, **extra).environ
        return self.call(environ)

    def get(self, path: str, **extra):
        return self.call(RequestFactory().get(path, **extra).environ)

    def call(self, environ: dict) -> Answer:
        started = {}

        def start_response(status, headers, exc_info=None):
            started.update(status=status, headers=headers)

        response = self.application(environ, start_response)
        try:
            body = b"".join(response)
        finally:
            response.close()
        return Answer(started["status"], started["headers"], body)


class Counted:
    """Django's whole stack (`handler`, a new one by default), counting the requests it is given
    (the paths)."""

    def __init__(self, handler=None) -> None:
        self.handler, self.given = handler or WSGIHandler(), []

    def __call__(self, environ, start_response):
        self.given.append(environ["PATH_INFO"])
        return self.handler(environ, start_response)


def both_ways() -> tuple[WsgiClient, WsgiClient, list]:
    """The short way, Django's whole stack, and what the short way handed to Django, built now:
    Django's middleware read their settings when they are built, as when gunicorn loads
    pimsync.wsgi."""
    behind = Counted()
    return WsgiClient(WebhookShortcut(behind)), WsgiClient(WSGIHandler()), behind.given


@pytest.fixture
def short_way():
    return WsgiClient(pimsync.wsgi.application)


@pytest.fixture
def counted_django(monkeypatch):
    """Django's whole stack behind the WSGI application, counting the requests it is given."""
    behind = Counted(pimsync.wsgi.application.django)
    monkeypatch.setattr(pimsync.wsgi.application, "django", behind)
    return behind.given


def same_answer(first: Answer, second: Answer) -> None:
    assert (first.status, first.content) == (second.status, second.content)
    assert sorted(first.headers) == sorted(second.headers)


def test_a_delivery_is_stored_without_django_s_middleware_chain(short_way, adobe, counted_django):
    response = adobe.deliver(short_way, fixture_bytes("aem.assets.asset.processing_completed.json"))

    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert Event.objects.count() == 1
    assert counted_django == []
    # Every other request goes the whole way.
    assert short_way.get("/webhooks/aem", QUERY_STRING="challenge=abc").json() == {"challenge": "abc"}
    assert counted_django == ["/webhooks/aem"]


@pytest.mark.parametrize(
    "request_kind",
    ["duplicate", "forged", "not json", "too large", "misaddressed", "trailing slash", "not a list"],
)
def test_the_short_way_answers_what_django_s_whole_stack_answers(adobe, settings, request_kind):
    settings.SECURE_HSTS_SECONDS = 3600  # one more header to keep, on the https requests
    short_way, long_way, handed_on = both_ways()
    stored = json.dumps(make_event(1)).encode()
    assert adobe.deliver(long_way, stored).status_code == 200
    path, body, headers = "/webhooks/aem", stored, {}
    if request_kind == "forged":
        headers = {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": "AAAA", "HTTP_X_ADOBE_DIGITAL_SIGNATURE_2": "AAAA"}
    elif request_kind == "not json":
        body = b"{not json"
    elif request_kind == "too large":
        settings.PIMSYNC_WEBHOOK_MAX_BYTES = 100
    elif request_kind == "misaddressed":
        body = json.dumps({**make_event(2), "recipientclientid": "someone-else"}).encode()
    elif request_kind == "trailing slash":
        path = "/webhooks/aem/"
    elif request_kind == "not a list":
        body = b'"a string"'
    signed = {**adobe.headers(body), **headers}
    kind = "application/cloudevents+json; charset=UTF-8"
    answers = [client.post(path, body, kind, secure=True, **signed) for client in (short_way, long_way)]

    same_answer(*answers)
    assert handed_on == []  # the short way answered it
    assert dict(answers[0].headers)["Strict-Transport-Security"] == "max-age=3600"
    assert dict(answers[0].headers)["X-Frame-Options"] == "DENY"


def test_a_host_not_allowed_a_refused_agent_and_plain_http_under_ssl_redirect_get_django_s_own_answers(adobe, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile("^BadBot")]
    short_way, long_way, handed_on = both_ways()
    body = json.dumps(make_event(1)).encode()
    wrong_host = {**adobe.headers(body), "HTTP_HOST": "evil.example.com"}
    same_answer(*(client.post("/webhooks/aem", body, **wrong_host) for client in (short_way, long_way)))
    assert short_way.post("/webhooks/aem", body, **wrong_host).status_code == 400
    bad_bot = {**adobe.headers(body), "HTTP_USER_AGENT": "BadBot/1.0"}
    answers = [client.post("/webhooks/aem", body, **bad_bot) for client in (short_way, long_way)]
    same_answer(*answers)
    assert answers[0].status_code == 403
    assert handed_on == ["/webhooks/aem"] * 3

    settings.SECURE_SSL_REDIRECT = True
    short_way, long_way, _ = both_ways()
    answers = [client.post("/webhooks/aem", body, **adobe.headers(body)) for client in (short_way, long_way)]
    same_answer(*answers)
    assert answers[0].status_code == 301
    assert Event.objects.count() == 0  # neither request was stored


def test_without_a_database_a_delivery_is_a_503_to_retry_and_a_bug_a_500(adobe, monkeypatch, caplog):
    short_way, long_way, handed_on = both_ways()
    body = json.dumps(make_event(1)).encode()

    def unreachable(batch):
        raise OperationalError("connection refused")

    monkeypatch.setattr(events, "parse", unreachable)
    answers = [adobe.deliver(client, body) for client in (short_way, long_way)]
    same_answer(*answers)
    assert answers[0].status_code == 503 and dict(answers[0].headers)["Retry-After"] == "5"

    def bug(batch):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(events, "parse", bug)
    caplog.clear()
    answers = [adobe.deliver(client, body) for client in (short_way, long_way)]
    same_answer(*answers)
    assert answers[0].status_code == 500
    errors = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert len(errors) == 2  # logged with its traceback both ways
    assert handed_on == []


def test_a_form_a_request_with_cookies_and_other_middleware_take_django_s_whole_stack(adobe, settings):
    short_way, _, handed_on = both_ways()
    body = json.dumps(make_event(1)).encode()
    short_way.post("/webhooks/aem", body, content_type=" Multipart/Form-Data; boundary=x", **adobe.headers(body))
    short_way.post("/webhooks/aem", body, HTTP_COOKIE="sessionid=stale", **adobe.headers(body))
    assert handed_on == ["/webhooks/aem"] * 2

    # A middleware nobody weighed for the short way: every request takes the whole stack.
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    short_way, _, handed_on = both_ways()
    assert adobe.deliver(short_way, body).status_code == 200
    assert handed_on == ["/webhooks/aem"]


def test_the_request_signals_are_sent_once_each_as_django_sends_them(short_way, adobe, counted_django):
    sent = []

    def started(sender, **kwargs):
        sent.append(("started", sender))

    def finished(sender, **kwargs):
        sent.append(("finished", sender))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        adobe.deliver(short_way, json.dumps(make_event(1)).encode())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert sent == [("started", WSGIHandler), ("finished", WSGIHandler)]
    assert counted_django == []  # sent by the short way, not by Django's handler


def test_every_middleware_of_the_settings_has_been_weighed_for_the_short_way(settings):
    # A middleware added to settings.MIDDLEWARE would not see Adobe's deliveries: whoever adds one
    # says in pimsync.webhook_shortcut.MIDDLEWARE whether the short way keeps it.
    assert list(webhook_shortcut.MIDDLEWARE) == settings.MIDDLEWARE


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+json; charset=UTF-8",  # Adobe's
        "application/json",
        "Application/JSON ; Charset=latin-1",
        "application/json; charset=no-such-codec",
        "application/json; charset=",
        'text/plain; format="flowed"; charset=utf-16',
        "",
    ],
)
def test_the_delivery_request_reads_its_content_type_as_django_does(content_type):
    environ = RequestFactory().post("/webhooks/aem", b"{}", "application/json").environ | {"CONTENT_TYPE": content_type}
    ours, django = webhook_shortcut._DeliveryRequest(dict(environ)), WSGIHandler.request_class(dict(environ))
    assert (ours.content_type, ours.content_params, ours.encoding) == (
        django.content_type,
        django.content_params,
        django.encoding,
    )
    # Each request has its own parameters: a view that changes them changes no other request's.
    ours.content_params["changed"] = "by a view"
    assert "changed" not in webhook_shortcut._DeliveryRequest(dict(environ)).content_params


def test_adobes_content_type_is_parsed_once_for_many_deliveries(short_way, adobe, monkeypatch):
    parsed = []

    def counted(value):
        parsed.append(value)
        return parse_header_parameters(value)

    webhook_shortcut._content_type.cache_clear()
    monkeypatch.setattr(webhook_shortcut, "parse_header_parameters", counted)
    for n in range(3):
        response = adobe.deliver(short_way, make_event(n))
        assert response.status_code == 200, response.content
    assert parsed == ["application/cloudevents+json; charset=UTF-8"]
    assert Event.objects.count() == 3
