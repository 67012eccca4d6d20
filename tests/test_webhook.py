"""The webhook `/webhooks/aem` as Adobe I/O Events and attackers see it (docs/adobe-events.md)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils.functional import empty
from django_q.models import OrmQ

from pimsync import inbound
from pimsync.models import Event, Status
from tests.conftest import KEY1_PATH, fixture_bytes, make_event, new_key

pytestmark = pytest.mark.django_db

COMPLETED = "aem.assets.asset.processing_completed.json"


def wake_ups() -> int:
    """Wake-up calls for a worker waiting in django-q2's ORM broker."""
    return sum(1 for task in OrmQ.objects.all() if task.task["func"] == "pimsync.tasks.drain")


class TestChallenge:
    def test_it_echoes_the_challenge_as_json(self, client):
        response = client.get("/webhooks/aem?challenge=abc-123")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"challenge": "abc-123"}

    def test_it_accepts_the_trailing_slash(self, client):
        assert client.get("/webhooks/aem/?challenge=x").json() == {"challenge": "x"}

    def test_a_get_without_challenge_is_a_clear_400(self, client):
        response = client.get("/webhooks/aem")
        assert response.status_code == 400
        assert "challenge" in response.json()["error"]

    def test_it_logs_the_asynchronous_validation_url(self, client, caplog):
        url = "https://csm.adobe.io/csm/registrations/validate?id=1&challenge=2"
        with caplog.at_level(logging.WARNING):
            response = client.post("/webhooks/aem", {"validationUrl": url}, content_type="application/json")
        assert response.status_code == 200
        assert url in caplog.text
        assert Event.objects.count() == 0

    @pytest.mark.parametrize(
        "url",
        [
            "https://evil.example/csm/registrations/validate?id=1",
            "http://csm.adobe.io/csm/registrations/validate?id=1",
            "https://csm.adobe.io.evil.example/validate",
            "https://csm.adobe.io@evil.example/validate",
            "https://evil.example\\@csm.adobe.io/validate",
            "https://notadobe.io/validate",
            "https://csm.adobe.io:8443/validate",
            "https://csm.adobe.io/x\nAdobe asks for asynchronous webhook validation: open https://evil.example",
            "javascript:alert(1)",
            ["https://csm.adobe.io/validate"],
            42,
        ],
    )
    def test_a_validation_url_not_on_adobes_domain_is_ignored_and_not_offered_to_open(self, client, caplog, url):
        with caplog.at_level(logging.INFO):
            response = client.post("/webhooks/aem", {"validationUrl": url}, content_type="application/json")
        assert response.status_code == 400
        assert "ignored" in response.json()["error"]
        assert "ignored a validationUrl POST" in caplog.text
        assert "open" not in caplog.text
        assert "evil" not in caplog.text
        assert Event.objects.count() == 0

    def test_a_validation_url_on_an_adobe_com_subdomain_is_logged(self, client, caplog):
        url = "https://example.adobe.com/validate?id=1"
        with caplog.at_level(logging.WARNING):
            response = client.post("/webhooks/aem", {"validationUrl": url}, content_type="application/json")
        assert response.status_code == 200
        assert f"open {url} within 5 minutes" in caplog.text


class TestAcceptance:
    def test_it_stores_a_signed_real_shaped_event_and_queues_its_asset(self, client, adobe):
        body = fixture_bytes(COMPLETED)
        response = adobe.deliver(client, body, **{"x-adobe-retry-count": "2"})

        assert response.status_code == 200
        assert response.json() == {"accepted": 1, "duplicates": 0}
        event = Event.objects.get()
        assert event.event_id == "0b7e9c1a-2f3d-4e5a-9b6c-7d8e9f0a1b2c"
        assert event.cloudevent_id == "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
        assert event.type == "aem.assets.asset.processing_completed"
        assert event.source == "acct:aem-p12345-e67890@adobe.com"
        assert event.asset_id == "urn:aaid:aem:11111111-2222-4333-8444-555555555555"
        assert event.asset_path == "/content/dam/pim/products/SKU-100234_front.png"
        assert event.asset_name == "SKU-100234_front.png"
        assert event.mime_type == "image/png"
        assert event.status == Status.RECEIVED
        assert event.time.isoformat() == "2025-08-29T06:57:54.151358+00:00"
        assert event.delivery_id == "18abfb47-0000-4684-ade8-f442a3444033"
        assert event.delivery_retry_count == 2
        assert event.payload == json.loads(body)
        assert wake_ups() == 1

    def test_it_accepts_a_batch_of_twenty_in_one_insert(self, client, adobe):
        batch = [make_event(n) for n in range(20)]
        with CaptureQueriesContext(connection) as queries:
            response = adobe.deliver(client, batch)
        assert response.status_code == 200
        assert response.json() == {"accepted": 20, "duplicates": 0}
        assert Event.objects.filter(status=Status.RECEIVED).count() == 20
        event_inserts = [
            q for q in queries.captured_queries if q["sql"].startswith("INSERT") and 'INTO "pimsync_event"' in q["sql"]
        ]
        assert len(event_inserts) == 1

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
    def test_postgresql_runs_the_insert_prepared_and_plans_each_run(self, client, adobe):
        for n in range(7):
            assert adobe.deliver(client, make_event(n)).status_code == 200
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
        assert any('INSERT INTO "pimsync_event"' in statement for statement in prepared), prepared
        # …planned with each run's parameters all the same: a generic plan of `path LIKE $1`
        # cannot use the path index (the Assets list's folder filter went from 0.05 to 10.8 s).
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            assert cursor.fetchone()[0] == "force_custom_plan"
        assert Event.objects.count() == 7

    def test_it_accepts_adobes_batch_example_and_ignores_the_echo_in_it(self, client, adobe):
        response = adobe.deliver(client, fixture_bytes("webhook_batch.example.json"))
        assert response.status_code == 200
        first, echo = Event.objects.order_by("time")
        assert first.status == Status.RECEIVED
        assert echo.status == Status.IGNORED
        assert "own metadata write" in echo.reason

    def test_duplicate_deliveries_make_one_row_and_three_200s(self, client, adobe):
        body = fixture_bytes(COMPLETED)
        answers = [adobe.deliver(client, body, **{"x-adobe-delivery-id": f"d{n}"}) for n in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["duplicates"] for a in answers] == [0, 1, 1]
        assert Event.objects.count() == 1
        assert wake_ups() == 1

    def test_no_wake_up_is_queued_while_a_drain_promises_to_look_again(self, client, adobe):
        from datetime import timedelta

        from django.utils import timezone

        from pimsync.models import Heartbeat
        from pimsync.wakeups import DrainPromise

        Heartbeat.objects.create(name="drain", at=timezone.now() + timedelta(seconds=10))
        DrainPromise.forget()  # no cached read from an earlier test
        adobe.deliver(client, make_event(1))
        assert wake_ups() == 0
        Heartbeat.objects.filter(name="drain").update(at=timezone.now() + timedelta(milliseconds=500))
        DrainPromise.forget()
        adobe.deliver(client, make_event(2))
        assert wake_ups() == 1  # too close to trust: this request wakes a worker itself

    def test_a_queued_wake_up_covers_the_deliveries_of_the_next_seconds(
        self, client, adobe, settings, django_capture_on_commit_callbacks
    ):
        from django.utils import timezone

        from pimsync.models import Heartbeat
        from pimsync.wakeups import DrainPromise

        settings.PIMSYNC_DRAIN_LINGER_SECONDS = 3  # as deployed (the tests' own drains linger 0 s)
        for n in (1, 2):
            with django_capture_on_commit_callbacks(execute=True):  # each request commits
                adobe.deliver(client, make_event(n))
        assert wake_ups() == 1  # the drain the first one queued looks until its promise has passed
        promised = Heartbeat.objects.get(name="drain queued").at
        assert timedelta(seconds=2) < promised - timezone.now() <= timedelta(seconds=3)
        Heartbeat.objects.filter(name="drain queued").update(at=timezone.now())  # the promise has passed
        DrainPromise.forget()
        adobe.deliver(client, make_event(3))
        assert wake_ups() == 2

    def test_a_promise_that_ran_out_during_the_insert_still_gets_a_wake_up(self, client, adobe, monkeypatch):
        from pimsync.wakeups import DrainPromise

        answers = iter([True, False])  # a drain promised before the INSERT, no longer after it
        monkeypatch.setattr(DrainPromise, "covers_new_events", classmethod(lambda cls: next(answers)))
        assert adobe.deliver(client, make_event(1)).status_code == 200
        assert Event.objects.count() == 1 and wake_ups() == 1

    def test_a_wake_up_redis_lost_takes_its_promise_back(
        self, client, adobe, settings, monkeypatch, django_capture_on_commit_callbacks
    ):
        from django.utils import timezone

        from pimsync import wakeups
        from pimsync.models import Heartbeat

        settings.PIMSYNC_DRAIN_LINGER_SECONDS = 3
        monkeypatch.setattr(wakeups, "uses_orm_broker", lambda: False)  # PIMSYNC_BROKER_URL set…
        sent = []
        monkeypatch.setattr(wakeups, "wake", lambda: sent.append(1) and 0)  # …and Redis down
        for n in (1, 2):
            with django_capture_on_commit_callbacks(execute=True):
                assert adobe.deliver(client, make_event(n)).status_code == 200
        assert Heartbeat.objects.get(name="drain queued").at <= timezone.now()  # not trusted any more
        assert len(sent) == 2  # so the second delivery tried again

    def test_a_batch_repeating_an_event_stores_it_once(self, client, adobe):
        response = adobe.deliver(client, [make_event(1), make_event(1), make_event(2)])
        assert response.json() == {"accepted": 2, "duplicates": 1}

    def test_it_takes_the_cloudevents_id_when_the_body_has_no_eventid(self, client, adobe):
        event = make_event(3)
        del event["eventid"], event["event_id"]
        response = adobe.deliver(client, event, **{"x-adobe-event-id": "from-header"})
        assert response.status_code == 200
        assert Event.objects.get().event_id == "ce-000003"

    def test_the_unsigned_event_id_header_never_supplies_an_id(self, client, adobe):
        """A captured body without ids must not be accepted again and again under new headers."""
        event = make_event(3)
        del event["eventid"], event["event_id"], event["id"]
        body = json.dumps(event).encode()
        answers = [adobe.deliver(client, body, **{"x-adobe-event-id": f"replay-{n}"}) for n in range(2)]
        assert [a.status_code for a in answers] == [400, 400]
        assert "has no eventid" in answers[0].json()["error"]
        assert Event.objects.count() == 0

    @pytest.mark.parametrize("field", ["recipientclientid", "recipient_client_id"])
    def test_either_spelling_of_the_recipient_is_enough(self, client, adobe, field):
        event = make_event(4)
        other = {"recipientclientid", "recipient_client_id"} - {field}
        del event[other.pop()]
        assert adobe.deliver(client, event).status_code == 200

    def test_an_unknown_event_type_is_stored_as_ignored(self, client, adobe):
        response = adobe.deliver(client, make_event(5, type="aem.assets.asset.published"))
        assert response.status_code == 200
        event = Event.objects.get()
        assert event.status == Status.IGNORED
        assert "does not handle aem.assets.asset.published" in event.reason
        assert wake_ups() == 0

    def test_an_event_from_another_aem_environment_is_stored_as_ignored(self, client, adobe):
        response = adobe.deliver(client, make_event(6, source="acct:aem-p1-e2@adobe.com"))
        assert response.status_code == 200
        event = Event.objects.get()
        assert event.status == Status.IGNORED
        assert "acct:aem-p1-e2@adobe.com" in event.reason
        assert wake_ups() == 0

    def test_pimsyncs_own_write_echoing_back_is_ignored(self, client, adobe, settings):
        body = json.loads(fixture_bytes("aem.assets.asset.metadata_updated.json"))
        body["data"]["user"]["principalId"] = settings.ADOBE_TECHNICAL_ACCOUNT_EMAIL.upper()
        adobe.deliver(client, body)
        assert Event.objects.get().status == Status.IGNORED

    def test_someone_elses_metadata_change_is_enriched(self, client, adobe):
        adobe.deliver(client, fixture_bytes("aem.assets.asset.metadata_updated.json"))
        assert Event.objects.get().status == Status.RECEIVED


class TestSignatures:
    def test_either_valid_signature_is_enough(self, client, adobe):
        stranger = new_key()
        assert adobe.deliver(client, make_event(1), key2=stranger).status_code == 200
        assert adobe.deliver(client, make_event(2), key1=stranger).status_code == 200
        assert Event.objects.count() == 2

    def test_one_signature_pair_alone_is_enough(self, client, adobe):
        response = adobe.deliver(
            client,
            make_event(1),
            **{"x-adobe-digital-signature-2": None, "x-adobe-public-key2-path": None},
        )
        assert response.status_code == 200

    def test_a_forged_body_is_refused_and_not_stored(self, client, adobe):
        stranger = new_key()
        response = adobe.deliver(client, make_event(1), key1=stranger, key2=stranger)
        assert response.status_code == 401
        assert "invalid signature" in response.json()["error"]
        assert Event.objects.count() == 0

    def test_a_body_changed_after_signing_is_refused(self, client, adobe):
        body = fixture_bytes(COMPLETED)
        headers = adobe.headers(body)
        tampered = body.replace(b"SKU-100234", b"SKU-999999")
        response = client.post("/webhooks/aem", tampered, content_type="application/json", **headers)
        assert response.status_code == 401
        assert Event.objects.count() == 0

    def test_a_missing_signature_is_refused(self, client, adobe):
        body = fixture_bytes(COMPLETED)
        response = client.post("/webhooks/aem", body, content_type="application/cloudevents+json")
        assert response.status_code == 401
        assert "missing signature" in response.json()["error"]
        assert Event.objects.count() == 0

    def test_a_signature_that_is_not_base64_is_refused(self, client, adobe):
        response = adobe.deliver(
            client, make_event(1), **{"x-adobe-digital-signature-1": "%%%", "x-adobe-digital-signature-2": "!!"}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "path",
        [
            "https://evil.example/key.pem",
            "//evil.example/key.pem",
            "/prod/../../etc/key.pem",
            "prod/keys/k.pem",
            "/prod/keys/k.pem@evil.example",
        ],
    )
    def test_a_key_path_that_is_not_relative_is_refused_without_fetching(self, client, adobe, path):
        response = adobe.deliver(client, make_event(1), **{"x-adobe-public-key1-path": path})
        assert response.status_code == 401
        assert "relative key path" in response.json()["error"]
        assert adobe.key_fetches() == 0

    def test_keys_are_fetched_once_for_many_events(self, client, adobe):
        for n in range(10):
            assert adobe.deliver(client, make_event(n)).status_code == 200
        assert adobe.key_fetches() == 1  # key 1 verified every body; key 2 was never needed

    def test_a_rotated_key_under_the_same_path_is_fetched_again(self, client, adobe, httpserver):
        with time_machine.travel("2026-01-01 00:00:00Z", tick=False) as clock:
            assert adobe.deliver(client, make_event(1)).status_code == 200
            rotated = new_key()
            httpserver.clear()
            adobe.serve_key(KEY1_PATH, rotated)
            adobe.serve_key("/prod/keys/pub-key-test2.pem", adobe.key2)
            clock.shift(120)
            stranger = new_key()
            response = adobe.deliver(client, make_event(2), key1=rotated, key2=stranger)
        assert response.status_code == 200
        assert Event.objects.count() == 2

    def test_a_forged_body_does_not_make_a_fresh_key_be_fetched_again(self, client, adobe):
        adobe.deliver(client, make_event(1))
        stranger = new_key()
        for n in range(5):
            adobe.deliver(client, make_event(n + 2), key1=stranger, key2=stranger)
        assert adobe.key_fetches() == 2  # key 1 for the good body, key 2 once for the forgeries

    def test_an_unknown_key_path_is_an_invalid_signature(self, client, adobe):
        response = adobe.deliver(
            client,
            make_event(1),
            **{"x-adobe-public-key1-path": "/prod/keys/nope.pem", "x-adobe-public-key2-path": "/prod/keys/nope2.pem"},
        )
        assert response.status_code == 401

    def test_an_unreachable_key_server_is_a_retryable_503(self, client, adobe, settings):
        settings.ADOBE_EVENTS_KEY_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
        response = adobe.deliver(client, make_event(1))
        assert response.status_code == 503
        assert Event.objects.count() == 0


class TestBadInput:
    def test_malformed_json_is_a_400(self, client, adobe):
        body = b'{"type": "aem.assets.asset.processing_completed",'
        response = client.post("/webhooks/aem", body, content_type="application/json", **adobe.headers(body))
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["error"]

    @pytest.mark.parametrize("body", [b'{"type": NaN}', b'{"type": Infinity}', b'{"size": 1e400}'])
    def test_numbers_json_does_not_have_are_a_400(self, client, adobe, body):
        response = client.post("/webhooks/aem", body, content_type="application/json", **adobe.headers(body))
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["error"]

    @pytest.mark.parametrize(
        "document, message",
        [
            ("just a string", "JSON str"),
            (42, "JSON int"),
            ([], "empty array"),
            ([1, 2], "event [0] is a JSON int"),
            ([{}] * 21, "at most 20"),
            ({"type": "x\u0000"}, "NUL character"),  # PostgreSQL cannot store it
        ],
    )
    def test_json_that_is_not_an_event_is_a_400_saying_why(self, client, adobe, document, message):
        response = adobe.deliver(client, document)
        assert response.status_code == 400
        assert message in response.json()["error"]
        assert Event.objects.count() == 0

    @pytest.mark.parametrize("field", ["type", "source"])
    def test_an_event_without_its_field_is_a_400_naming_it(self, client, adobe, field):
        event = make_event(1)
        del event[field]
        response = adobe.deliver(client, event)
        assert response.status_code == 400
        assert response.json()["error"] == f"the event has no {field}"

    def test_an_event_without_any_id_is_a_400(self, client, adobe):
        event = make_event(1)
        del event["eventid"], event["event_id"], event["id"]
        response = adobe.deliver(client, event)
        assert response.status_code == 400
        assert "eventid" in response.json()["error"]

    def test_one_bad_event_refuses_the_whole_batch(self, client, adobe):
        bad = make_event(2)
        del bad["type"]
        response = adobe.deliver(client, [make_event(1), bad])
        assert response.status_code == 400
        assert response.json()["error"] == "event [1] has no type"
        assert Event.objects.count() == 0

    def test_a_wrong_recipient_is_a_401(self, client, adobe):
        event = make_event(1, recipientclientid="someone-else", recipient_client_id="someone-else")
        response = adobe.deliver(client, event)
        assert response.status_code == 401
        assert "not addressed to this client" in response.json()["error"]
        assert Event.objects.count() == 0

    def test_a_batch_with_one_wrong_recipient_is_a_401(self, client, adobe):
        response = adobe.deliver(client, [make_event(1), make_event(2, recipientclientid="x", recipient_client_id="x")])
        assert response.status_code == 401
        assert "event [1]" in response.json()["error"]

    @pytest.mark.parametrize("depth", [65, 900, 100_000])
    @pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
    def test_deeply_nested_json_is_a_400_saying_so(self, client, adobe, depth, opening, closing):
        nested = (opening * depth + "1" + closing * depth).encode()
        for body in (nested, b'{"type": "x", "data": ' + nested + b"}"):
            response = client.post("/webhooks/aem", body, content_type="application/json", **adobe.headers(body))
            assert response.status_code == 400
            assert "nested more than 64 levels deep" in response.json()["error"]
        assert Event.objects.count() == 0

    def test_an_event_nested_64_levels_deep_is_accepted(self, client, adobe):
        event = make_event(1)
        nested: object = "deep"
        for _ in range(62):  # the event object is level 1, "data" level 2
            nested = [nested]
        event["data"]["deep"] = nested
        assert adobe.deliver(client, event).status_code == 200

    def test_a_body_over_the_limit_is_a_413(self, client, adobe, settings):
        body = b"[" + b" " * settings.PIMSYNC_WEBHOOK_MAX_BYTES + b"]"
        response = client.post("/webhooks/aem", body, content_type="application/json", **adobe.headers(body))
        assert response.status_code == 413
        assert Event.objects.count() == 0

    def test_other_methods_are_refused(self, client):
        assert client.put("/webhooks/aem").status_code == 405

    def test_storage_failure_is_a_retryable_503(self, client, adobe):
        def database_down(execute, sql, params, many, context):
            if sql.startswith("INSERT"):
                raise OperationalError("server closed the connection unexpectedly")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(database_down):
            response = adobe.deliver(client, make_event(1))
        assert response.status_code == 503
        assert Event.objects.count() == 0
        assert wake_ups() == 0

    def test_an_event_is_stored_and_queued_together_or_not_at_all(self, client, adobe):
        def broker_down(execute, sql, params, many, context):
            if sql.startswith('INSERT INTO "django_q_ormq"'):
                raise OperationalError("broker table unavailable")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(broker_down):
            response = adobe.deliver(client, make_event(1))
        assert response.status_code == 503  # Adobe delivers it again later
        assert Event.objects.count() == 0
        assert adobe.deliver(client, make_event(1)).status_code == 200
        assert wake_ups() == 1


def test_the_webhook_calls_nothing_but_the_key_server(client, adobe, settings, second_server):
    """PIM, AEM and IMS live on a second loopback server that must see no request at all."""
    elsewhere = second_server
    base = elsewhere.url_for("").rstrip("/")
    settings.AEM_AUTHOR_URL = settings.PIM_BASE_URL = base
    settings.ADOBE_IMS_TOKEN_URL = base + "/ims/token/v3"
    adobe.deliver(client, [make_event(n) for n in range(5)])
    adobe.deliver(client, fixture_bytes("aem.assets.asset.metadata_updated.json"))
    adobe.deliver(client, fixture_bytes("aem.assets.asset.deleted.json"))
    assert Event.objects.count() == 7
    assert elsewhere.log == []
    assert {request.path for request, _ in adobe.httpserver.log} == {KEY1_PATH}


def test_a_delivery_builds_no_message_storage(client, adobe, db):
    """Django's message storage (a cookie and a session store) was 4% of a delivery's CPU, for a
    request that never shows a message: it is built only on first use."""
    response = adobe.deliver(client, make_event(1))
    assert response.status_code == 200
    assert response.wsgi_request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_the_headers_are_read_by_the_names_django_gives_them_lower_cased(rf):
    request = rf.post(
        "/webhooks/aem",
        data=b"{}",
        content_type="application/cloudevents+json; charset=UTF-8",
        HTTP_X_ADOBE_DIGITAL_SIGNATURE_1="c2lnbmF0dXJl",
        HTTP_X_ADOBE_DELIVERY_ID="18abfb47",
    )
    headers = inbound.lowercase_headers(request)

    assert headers == {name.lower(): value for name, value in request.headers.items()}
    assert headers["x-adobe-digital-signature-1"] == "c2lnbmF0dXJl"
    assert headers["content-type"] == "application/cloudevents+json; charset=UTF-8"
