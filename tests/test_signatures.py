"""Forged deliveries cost pimsync little: key paths, key fetches and the time one request can hold a thread."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from werkzeug import Response

from pimsync.adobe import signatures
from pimsync.models import Event
from tests.conftest import KEY1_PATH, make_event, new_key, public_pem

pytestmark = pytest.mark.django_db


class TookTooLong(Exception):
    pass


@contextlib.contextmanager
def within(seconds: float):
    """Fail (instead of hanging) when the block runs longer than `seconds`.

    A timer signal, not a thread: a regular expression that backtracks holds the GIL, so no other
    thread would get to notice, but `re` checks for signals while it matches.
    """

    def expire(signum, frame):
        raise TookTooLong

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except TookTooLong:
        pytest.fail(f"still busy after {seconds} s: one request must not hold a web thread this long")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def forged(adobe, client, n: int, path1: str, path2: str | None = None):
    """A delivery addressed to us but signed by a stranger, naming key paths of the forger's choice."""
    stranger = new_key()
    return adobe.deliver(
        client,
        make_event(n),
        key1=stranger,
        key2=stranger,
        **{"x-adobe-public-key1-path": path1, "x-adobe-public-key2-path": path2 or path1},
    )


class TestKeyPaths:
    @pytest.mark.parametrize(
        "path",
        [
            "/" + "a" * 40 + "!",
            "/prod/keys/" + "a" * 40 + "!",
            "/prod/keys/pub-key-" + "a" * 40 + ".pem!",
        ],
    )
    def test_a_key_path_made_to_backtrack_is_refused_at_once(self, client, adobe, path):
        with within(10):
            response = forged(adobe, client, 1, path)
        assert response.status_code == 401
        assert "relative key path such as /prod/keys/pub-key-<id>.pem" in response.json()["error"]
        assert adobe.key_fetches() == 0

    @pytest.mark.parametrize(
        "path",
        [
            "/other/pub-key-abc.pem",
            "/prod/keys/sub/pub-key-abc.pem",
            "/prod/keys/pub-key-abc.txt",
            "/prod/keys/.pem",
            "/prod/keys/pub key.pem",
            "/prod/keys/pub-key-abc.pem/",
            "/prod/keys/" + "k" * 200 + ".pem",
        ],
    )
    def test_only_paths_shaped_like_adobes_keys_are_fetched(self, client, adobe, path):
        response = forged(adobe, client, 1, path)
        assert response.status_code == 401
        assert "relative key path" in response.json()["error"]
        assert adobe.key_fetches() == 0

    def test_the_accepted_key_path_prefix_is_a_setting(self, client, adobe, settings):
        settings.ADOBE_EVENTS_KEY_PATH_PREFIX = "/sandbox/keys/"
        adobe.serve_key("/sandbox/keys/pub-key-s1.pem", adobe.key1)
        paths = {"x-adobe-public-key1-path": "/sandbox/keys/pub-key-s1.pem", "x-adobe-public-key2-path": None}
        assert adobe.deliver(client, make_event(1), **paths).status_code == 200
        refused = adobe.deliver(client, make_event(2))  # /prod/keys/… is not under the prefix any more
        assert refused.status_code == 401
        assert "/sandbox/keys/pub-key-<id>.pem" in refused.json()["error"]
        assert Event.objects.count() == 1


class TestKeyFetches:
    def test_an_unknown_key_path_is_asked_for_once_while_it_stays_unknown(self, client, adobe):
        with time_machine.travel("2026-01-01 00:00:00Z", tick=False) as clock:
            answers = [forged(adobe, client, n, "/prod/keys/pub-key-nope.pem").status_code for n in range(3)]
            assert answers == [401, 401, 401]
            assert adobe.key_fetches() == 1
            clock.shift(signatures.MISSING_KEY_SECONDS + 1)
            assert forged(adobe, client, 4, "/prod/keys/pub-key-nope.pem").status_code == 401
        assert adobe.key_fetches() == 2
        assert Event.objects.count() == 0

    def test_at_most_ten_unknown_keys_are_fetched_a_minute_and_then_forgeries_get_a_503(self, client, adobe, caplog):
        with time_machine.travel("2026-01-01 00:00:00Z", tick=False) as clock:
            assert adobe.deliver(client, make_event(0)).status_code == 200  # key 1: the first of ten
            with caplog.at_level(logging.WARNING, logger="pimsync.adobe.signatures"):
                answers = [
                    forged(adobe, client, n, f"/prod/keys/pub-key-a{n}.pem", f"/prod/keys/pub-key-b{n}.pem")
                    for n in range(1, 12)
                ]
            statuses = [a.status_code for a in answers]
            assert statuses == [401] * 4 + [503] * 7
            assert "too many unknown signing keys" in answers[-1].json()["error"]
            # The fifth forgery's first path was the tenth fetch; its second path was not fetched.
            assert adobe.key_fetches() == 10
            assert caplog.text.count("refusing to fetch more signing keys") == 1
            # Deliveries signed with a key already held are not held up by forgeries.
            assert adobe.deliver(client, make_event(20)).status_code == 200
            clock.shift(61)
            assert forged(adobe, client, 30, "/prod/keys/pub-key-c.pem").status_code == 401
        assert adobe.key_fetches() == 11
        assert Event.objects.count() == 2

    def test_a_withdrawn_key_is_asked_for_once_not_on_every_forged_delivery(self, client, adobe, httpserver):
        with time_machine.travel("2026-01-01 00:00:00Z", tick=False) as clock:
            assert adobe.deliver(client, make_event(1)).status_code == 200
            httpserver.clear()  # Adobe withdrew every key: the key server answers 404 now
            httpserver.no_handler_status_code = 404
            clock.shift(120)
            answers = [forged(adobe, client, n, KEY1_PATH).status_code for n in range(2, 7)]
        assert answers == [401] * 5
        assert adobe.key_fetches() == 1  # the refetch that found the key withdrawn

    def test_deliveries_arriving_together_share_one_key_fetch(self, adobe, httpserver):
        def slow_key_server(request):
            time.sleep(1)  # every delivery arrives while the first fetch is still under way
            return Response(public_pem(adobe.key1), content_type="application/x-pem-file")

        httpserver.clear()
        httpserver.no_handler_status_code = 404
        httpserver.expect_request(KEY1_PATH).respond_with_handler(slow_key_server)
        event = make_event(1)
        del event["type"]  # authentic, then refused before storage: this test needs no database
        body = json.dumps(event).encode()
        start = threading.Barrier(20)
        answers = []

        def deliver() -> None:
            start.wait()
            only_key1 = {"x-adobe-public-key2-path": None, "x-adobe-digital-signature-2": None}
            answers.append(adobe.deliver(Client(), body, **only_key1))

        threads = [threading.Thread(target=deliver) for _ in range(20)]
        with within(60):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert [a.status_code for a in answers] == [400] * 20  # 400, not 401 or 503: the signature verified
        assert {a.json()["error"] for a in answers} == {"the event has no type"}
        assert adobe.key_fetches() == 1

    def test_a_forged_request_waits_for_one_key_fetch_at_most_when_the_key_server_hangs(self, client, adobe, settings):
        with silent_server() as (url, connections):
            settings.ADOBE_EVENTS_KEY_BASE_URL = url
            with within(30):
                response = forged(adobe, client, 1, "/prod/keys/pub-key-x1.pem", "/prod/keys/pub-key-x2.pem")
        assert response.status_code == 503
        assert "deliver again later" in response.json()["error"]
        assert len(connections) == 1  # the second path was not tried: it lives on the same server


@contextlib.contextmanager
def silent_server():
    """A loopback server that accepts connections and never answers: a key server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    connections: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    finally:
        stop.set()
        thread.join()
        for connection in connections:
            connection.close()
        listener.close()


@pytest.mark.parametrize("prefix", ["", "prod/keys/", "/prod/keys", "//evil/", "/prod/../keys/"])
def test_a_key_path_prefix_that_is_not_a_plain_path_is_a_system_check_error(settings, prefix):
    settings.ADOBE_EVENTS_KEY_PATH_PREFIX = prefix
    with pytest.raises(SystemCheckError, match="ADOBE_EVENTS_KEY_PATH_PREFIX"):
        call_command("check")
