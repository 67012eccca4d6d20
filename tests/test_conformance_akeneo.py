"""Akeneo as Akeneo documents itself: its published examples (`standins/akeneo_examples.py`, each
with its api.akeneo.com page and its file in akeneo/pim-api-docs) replayed through pimsync's real
code: the Akeneo connector against a loopback Akeneo serving the documented bodies byte for byte,
and `/webhooks/akeneo` receiving the documented notifications signed as Akeneo says it signs them.

Where our earlier reading of Akeneo differed from Akeneo's own examples, theirs wins, and the test
says what we had read differently."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from pimsync.models import AccessToken, PimNotification
from pimsync.outbound import http, throttle
from pimsync.pim import akeneo as client
from pimsync.pim import connectors
from standins import akeneo_examples as examples
from standins.akeneo import event_platform_headers, legacy_headers
from tests.conftest import akeneo_product

pytestmark = pytest.mark.django_db

TOKEN_PATH = "/api/oauth/v1/token"
PRIMARY, SECONDARY = "subscriber-primary-secret", "subscriber-secondary-secret"


def connector() -> client.AkeneoConnector:
    return connectors.connector()


def documented(text: str) -> dict:
    return json.loads(text)


# --- the Akeneo examples themselves ---------------------------------------------------------------


def test_akeneos_event_platform_samples_are_not_json_as_published_and_one_comma_fixes_them():
    for published, fixed in (
        (examples.EVENT_PLATFORM_UPDATED_AS_PUBLISHED, examples.EVENT_PLATFORM_UPDATED),
        (examples.EVENT_PLATFORM_DELETED_AS_PUBLISHED, examples.EVENT_PLATFORM_DELETED),
    ):
        with pytest.raises(ValueError, match="Expecting ',' delimiter"):
            json.loads(published)
        assert len(fixed) == len(published) + 1 and fixed.replace("},\n", "}\n") == published.replace("},\n", "}\n")
        assert set(json.loads(fixed)["data"]) == {"product", "author"}


# --- tokens ---------------------------------------------------------------------------------------


@pytest.fixture
def documented_connection(akeneo, settings):
    """The Connection of Akeneo's authentication example: its client id, secret, user, password."""
    akeneo.CLIENT_ID, akeneo.SECRET = examples.TOKEN_REQUEST_CLIENT_ID, examples.TOKEN_REQUEST_SECRET
    akeneo.USERNAME = examples.TOKEN_REQUEST_BODY["username"]
    akeneo.PASSWORD = examples.TOKEN_REQUEST_BODY["password"]
    settings.AKENEO_CLIENT_ID, settings.AKENEO_SECRET = akeneo.CLIENT_ID, akeneo.SECRET
    settings.AKENEO_USERNAME, settings.AKENEO_PASSWORD = akeneo.USERNAME, akeneo.PASSWORD
    akeneo_product(akeneo, "SKU-1")
    return akeneo


def test_the_token_request_is_akeneos_example_and_its_answer_is_used(documented_connection):
    akeneo = documented_connection
    akeneo.serve("POST", 200, examples.TOKEN_ANSWER, path=TOKEN_PATH)
    assert connector().get_product("SKU-1")["uuid"]
    asked, then = akeneo.raw_requests[0], akeneo.raw_requests[1]
    assert (asked.method, asked.path) == ("POST", TOKEN_PATH)
    assert asked.headers["Authorization"] == examples.TOKEN_REQUEST_AUTHORIZATION  # byte for byte
    assert asked.mimetype == "application/json"
    assert json.loads(asked.get_data()) == examples.TOKEN_REQUEST_BODY
    assert then.headers["Authorization"] == "Bearer " + documented(examples.TOKEN_ANSWER)["access_token"]


def test_the_refresh_sends_the_documented_refresh_token_and_keeps_the_new_one(documented_connection):
    """Akeneo's refresh answer carries "a new access_token and a new refresh_token": the next
    refresh must send the new one."""
    akeneo = documented_connection
    akeneo.serve("POST", 200, examples.TOKEN_ANSWER, path=TOKEN_PATH)
    connector().get_product("SKU-1")
    soon = timezone.now() + timedelta(minutes=4)  # inside the 5 minutes' renewal margin
    AccessToken.objects.filter(name="akeneo").update(expires_at=soon)
    client._token.forget()
    akeneo.serve("POST", 200, examples.REFRESH_ANSWER, path=TOKEN_PATH)
    connector().get_product("SKU-1")
    refresh = [r for r in akeneo.raw_requests if r.path == TOKEN_PATH][1]
    assert json.loads(refresh.get_data()) == {
        "grant_type": "refresh_token",
        "refresh_token": documented(examples.TOKEN_ANSWER)["refresh_token"],
    }
    assert akeneo.raw_requests[-1].headers["Authorization"] == (
        "Bearer " + documented(examples.REFRESH_ANSWER)["access_token"]
    )

    AccessToken.objects.filter(name="akeneo").update(expires_at=soon)
    client._token.forget()
    connector().get_product("SKU-1")
    again = [r for r in akeneo.raw_requests if r.path == TOKEN_PATH][2]
    assert json.loads(again.get_data())["refresh_token"] == documented(examples.REFRESH_ANSWER)["refresh_token"]


def test_akeneos_401_renews_the_token_once_and_the_call_is_made_again(akeneo):
    akeneo_product(akeneo, "SKU-1")
    connector().get_product("SKU-1")
    akeneo.serve("GET", 401, examples.UNAUTHORIZED)
    assert connector().get_product("SKU-1")["uuid"]
    assert akeneo.token_grants == ["password", "refresh_token"]


# --- pages ----------------------------------------------------------------------------------------


def test_search_after_pages_are_followed_by_their_next_link_exactly_as_given(akeneo):
    """ "This query parameter should never be set manually": the second request is the `next`
    link of Akeneo's example, path and query untouched."""
    akeneo_product(akeneo, "SKU-1")
    connector().get_product("SKU-1")  # the server's API style is known
    product = examples.documented_product()
    akeneo.serve("GET", 200, examples.search_after_page(akeneo.url, [product]), path="/api/rest/v1/products-uuid")
    documented_next = documented(examples.search_after_page(akeneo.url, []))["_links"]["next"]["href"]
    second = documented_next.removeprefix(akeneo.url)
    akeneo.serve("GET", 200, examples.search_after_page(akeneo.url, [product], last=True), path=second)

    pages = list(connector().changed_since({"since": "2020-10-20 09:00:00", "zone": 0}))

    assert [page.keys for page in pages] == [["1111111304"], ["1111111304"]]
    assert pages[0].cursor["next"] == documented_next
    assert akeneo.raw_requests[-1].full_path == second
    assert pages[1].cursor == {"since": pages[1].cursor["since"], "zone": 0}  # the pass is over


def test_a_page_with_no_items_keeps_the_documented_structure_and_ends_the_pass(akeneo):
    akeneo_product(akeneo, "SKU-1")
    connector().get_product("SKU-1")
    empty = examples.search_after_page(akeneo.url, [], last=True)
    akeneo.serve("GET", 200, empty, path="/api/rest/v1/products-uuid")
    pages = list(connector().changed_since({"since": "2020-10-20 09:00:00", "zone": 0}))
    assert [page.keys for page in pages] == [[]]


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (examples.VALIDATION_FAILED, "The tommh value is not in the brand attribute option list. (brand)"),
        (examples.UNRECOGNIZED_PROPERTY, "Property 'extra_property' does not exist."),
        (examples.UNKNOWN_DATA, "The sunglasses category does not exist in your PIM."),
    ],
)
def test_every_documented_422_says_what_akeneo_said(akeneo, body, said):
    """Our earlier reading knew only the 422 with an `errors` list; Akeneo documents two more whose
    message is at the top level, with a link to its documentation. Theirs wins: both are shown."""
    product = akeneo_product(akeneo, "SKU-1")
    akeneo.serve("PATCH", 422, body)
    with pytest.raises(http.HttpError) as raised:
        connector().write_text(product, "aem_links", "https://aem.example/a")
    assert raised.value.status == 422 and not raised.value.retryable
    assert said in raised.value.message
    assert said in connector().refusal(raised.value)
    link = documented(body).get("_links", {}).get("documentation", {}).get("href")
    if link:
        assert f"see {link}" in raised.value.message


def test_the_documented_429_pauses_every_process_for_its_retry_after(akeneo):
    akeneo_product(akeneo, "SKU-1")
    connector().get_product("SKU-1")
    akeneo.serve("GET", 429, None, examples.TOO_MANY_REQUESTS_HEADERS)  # no body, as documented
    with pytest.raises(http.HttpError) as raised:
        connector().get_product("SKU-1")
    assert (raised.value.status, raised.value.retryable, raised.value.retry_after) == (429, True, 15)
    assert 13 <= throttle.remaining("akeneo")[0] <= 15
    calls = len(akeneo.requests)
    with pytest.raises(http.HttpError) as refused:
        connector().get_product("SKU-1")
    assert refused.value.error_class == "akeneo_paused" and len(akeneo.requests) == calls


# --- notifications: the Event Platform ------------------------------------------------------------


@pytest.fixture
def secrets(settings):
    settings.AKENEO_EVENT_SECRETS = [PRIMARY, SECONDARY]


@pytest.fixture
def when_sent():
    """The moment Akeneo's CloudEvent samples say they were sent (their `time`): a CloudEvent
    older than the days its id is remembered is refused as a possible replay."""
    sent = datetime.fromisoformat(json.loads(examples.EVENT_PLATFORM_UPDATED)["time"])
    with time_machine.travel(sent + timedelta(seconds=1), tick=True):
        yield


def post(client, raw: bytes, headers: dict[str, str]):
    extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    content_type = extra.pop("HTTP_CONTENT_TYPE")
    return client.post("/webhooks/akeneo", data=raw, content_type=content_type, **extra)


def compact(text: str) -> bytes:
    """The JSON as a serializer sends it, without the page's indentation."""
    return json.dumps(json.loads(text), separators=(",", ":")).encode()


@pytest.mark.parametrize("as_sent", [compact, str.encode], ids=["compact", "as-indented-on-the-page"])
def test_the_documented_product_updated_cloudevent_is_stored(client, secrets, when_sent, as_sent):
    raw = as_sent(examples.EVENT_PLATFORM_UPDATED)
    answer = post(client, raw, event_platform_headers(raw, PRIMARY, SECONDARY))
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "duplicates": 0}
    row = PimNotification.objects.get()
    assert (row.notification_id, row.kind, row.status) == (
        "018e197c-dfe2-70f8-9346-1a8e016f5fbb",
        "product.updated",
        PimNotification.State.RECEIVED,
    )
    assert (row.product_uuid, row.product_key) == ("3444ec1b-058e-4208-9b6c-284f47a7aa17", "")
    assert row.author == "b238e9f7-fcec-45bd-9431-d43cd624b244 (api)"


@pytest.mark.parametrize("content_type", ["application/json", "application/cloudevents+json"])
def test_a_delivery_is_verified_on_its_raw_body_whatever_its_content_type(client, secrets, when_sent, content_type):
    """Akeneo does not say which content type a structured-mode CloudEvent comes with."""
    raw = compact(examples.EVENT_PLATFORM_UPDATED)
    headers = {**event_platform_headers(raw, PRIMARY), "Content-Type": content_type}
    assert post(client, raw, headers).status_code == 200


def test_either_signature_suffices_so_a_secret_can_be_rotated(client, secrets, when_sent, settings):
    """Akeneo signs with the primary secret and with the secondary one "if you have one"."""
    raw = compact(examples.EVENT_PLATFORM_UPDATED)
    only_secondary_known = event_platform_headers(raw, "a-primary-pimsync-has-not-been-given", SECONDARY)
    assert post(client, raw, only_secondary_known).status_code == 200
    settings.AKENEO_EVENT_SECRETS = [PRIMARY]
    no_secondary = event_platform_headers(raw, PRIMARY)
    assert examples.SIGNATURE_SECONDARY not in no_secondary
    assert post(client, raw, no_secondary).json() == {"accepted": 0, "duplicates": 1}


def test_the_documented_product_deleted_cloudevent_keeps_the_identifier_when_sent(client, secrets, when_sent):
    raw = compact(examples.EVENT_PLATFORM_DELETED)
    assert post(client, raw, event_platform_headers(raw, PRIMARY, SECONDARY)).status_code == 200
    row = PimNotification.objects.get()
    assert (row.kind, row.product_key, row.product_uuid) == (
        "product.deleted",
        "my-product-identifier",
        "3444ec1b-058e-4208-9b6c-284f47a7aa17",
    )


# --- notifications: the legacy Events API ---------------------------------------------------------


def test_the_documented_product_updated_request_is_stored_as_published(client, secrets):
    raw = examples.LEGACY_PRODUCT_UPDATED.encode()  # the page's bytes, indentation and all
    answer = post(client, raw, legacy_headers(raw, PRIMARY, int(time.time())))
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "duplicates": 0}
    row = PimNotification.objects.get()
    assert (row.notification_id, row.kind, row.author) == (
        "c306e088-fb76-479c-bbc0-18fef19da75d",
        "product.updated",
        "peter",
    )
    assert (row.product_key, row.product_uuid) == ("1111111304", "1fd20ad8-ef95-49d7-a581-fb9f8ac0c5ad")


def test_the_documented_product_removed_request_is_stored(client, secrets):
    raw = compact(examples.LEGACY_PRODUCT_REMOVED)
    assert post(client, raw, legacy_headers(raw, SECONDARY, int(time.time()))).status_code == 200
    row = PimNotification.objects.get()
    assert (row.kind, row.product_key, row.product_uuid) == (
        "product.removed",
        "1111111304",
        "cb02315b-a8f6-4580-beee-7624c02c1384",
    )


def test_a_request_of_ten_full_products_is_stored_whole(client, secrets):
    """Akeneo's log sample shows a request of ten events; each carries the full product data."""
    raw = json.dumps(examples.legacy_batch(), separators=(",", ":")).encode()
    answer = post(client, raw, legacy_headers(raw, PRIMARY, int(time.time())))
    assert answer.status_code == 200 and answer.json() == {"accepted": 10, "duplicates": 0}
    logged = {event["event_id"]: event["product_identifier"] for event in examples.LOG_SAMPLE_EVENTS}
    stored = dict(PimNotification.objects.values_list("notification_id", "product_key"))
    assert stored == logged


def test_the_signature_covers_the_timestamp_as_documented(client, secrets):
    """ "<timestamp>.<body>": the same body under another timestamp is refused."""
    raw = compact(examples.LEGACY_PRODUCT_UPDATED)
    now = int(time.time())
    headers = legacy_headers(raw, PRIMARY, now)
    headers[examples.REQUEST_TIMESTAMP] = str(now - 1)
    assert post(client, raw, headers).status_code == 401
    assert PimNotification.objects.count() == 0
