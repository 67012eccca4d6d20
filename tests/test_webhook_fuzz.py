"""Property: whatever arrives, the webhook never answers 5xx and stores nothing unauthenticated."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pimsync.adobe import signatures
from pimsync.models import Event
from tests.conftest import make_event

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
event_fields = st.sampled_from(["type", "source", "eventid", "event_id", "recipientclientid", "data", "id", "time"])


@st.composite
def bodies(draw) -> bytes:
    """Random bytes, random JSON, or a real-shaped event with fields removed or replaced."""
    kind = draw(st.sampled_from(["bytes", "json", "deep", "event", "batch"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        # Nesting around an event or a value, up to past json's own recursion limit.
        depth = draw(st.integers(1, 3000))
        inner = json.dumps(make_event(0) if draw(st.booleans()) else draw(json_values))
        wrappers = draw(st.lists(st.sampled_from(["list", "dict"]), min_size=1, max_size=2))
        text = inner
        for n in range(depth):
            text = f"[{text}]" if wrappers[n % len(wrappers)] == "list" else f'{{"k": {text}}}'
        return text.encode()
    events = [
        make_event(draw(st.integers(0, 50))) for _ in range(draw(st.integers(1, 3) if kind == "batch" else st.just(1)))
    ]
    for event in events:
        for name in draw(st.lists(event_fields, max_size=3)):
            if draw(st.booleans()):
                event.pop(name, None)
            else:
                event[name] = draw(json_values)
    return json.dumps(events if kind == "batch" else events[0]).encode()


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
# Key paths near the accepted shape, and long runs that made the old path pattern backtrack.
key_paths = st.one_of(
    header_values,
    st.builds(lambda name: f"/prod/keys/{name}.pem", header_values),
    st.builds(
        lambda start, char, n, end: start + char * n + end,
        st.sampled_from(["/", "/prod/keys/", "/prod/keys/pub-key-"]),
        st.sampled_from(["a", "a.", "a/", "-"]),
        st.integers(0, 60),
        st.sampled_from(["!", ".pem", ".pem!", "/", ""]),
    ),
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies(),
    signing=st.sampled_from(["valid", "forged", "garbage", "none"]),
    extra=st.dictionaries(
        st.sampled_from(
            ["x-adobe-public-key1-path", "x-adobe-public-key2-path", "x-adobe-event-id", "x-adobe-retry-count"]
        ),
        key_paths,
        max_size=2,
    ),
)
def test_no_5xx_and_nothing_stored_unless_signed(client, adobe, body, signing, extra):
    # Each example starts with a fresh key store: the per-minute key fetch budget (whose 503 has
    # its own test) would otherwise run out over 150 examples.
    signatures.keys.clear()
    before = Event.objects.count()
    if signing == "none":
        headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in extra.items()}
    else:
        headers = adobe.headers(body, **extra)
        if signing == "forged":
            headers["HTTP_X_ADOBE_DIGITAL_SIGNATURE_1"] = headers["HTTP_X_ADOBE_DIGITAL_SIGNATURE_2"] = adobe.headers(
                body + b" "
            )["HTTP_X_ADOBE_DIGITAL_SIGNATURE_1"]
        elif signing == "garbage":
            headers["HTTP_X_ADOBE_DIGITAL_SIGNATURE_1"] = extra.get("x-adobe-event-id", "x")
            headers.pop("HTTP_X_ADOBE_DIGITAL_SIGNATURE_2")
    response = client.post("/webhooks/aem", body, content_type="application/cloudevents+json", **headers)

    assert response.status_code < 500, response.content
    assert response.status_code in {200, 400, 401, 413}
    assert response["Content-Type"] == "application/json"
    if signing != "valid":
        assert Event.objects.count() == before
    if response.status_code != 200:
        assert Event.objects.count() == before
