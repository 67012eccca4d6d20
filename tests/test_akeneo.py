"""Akeneo as the PIM: the Connection's tokens, both lookup styles, the attribute list, the limits,
and an uploaded asset enriched from an Akeneo product, all against a loopback Akeneo."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from pimsync.checks import configuration
from pimsync.models import AccessToken, Event, Status
from pimsync.outbound import http
from pimsync.pim import akeneo as client
from pimsync.pim import connectors
from standins import akeneo_examples
from standins.akeneo import AkeneoStub
from tests.conftest import akeneo_product, make_event

pytestmark = pytest.mark.django_db


def lookup(key: str) -> dict | None:
    return connectors.connector().get_product(key)


# --- the connection ---------------------------------------------------------------------------


def test_processes_share_one_token_pair_stored_encrypted(akeneo):
    akeneo_product(akeneo, "SKU-1")
    assert lookup("SKU-1")["uuid"]
    client._token.forget()  # a second worker process starts with an empty memory
    assert lookup("SKU-1")["uuid"]
    assert akeneo.token_grants == ["password"]
    stored = bytes(AccessToken.objects.get(name="akeneo").encrypted)
    assert b"akeneo-access-1" not in stored and b"akeneo-refresh-1" not in stored


def test_a_token_about_to_expire_is_refreshed_with_the_refresh_token(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    AccessToken.objects.filter(name="akeneo").update(expires_at=timezone.now() + timedelta(minutes=4))
    client._token.forget()
    lookup("SKU-1")
    assert akeneo.token_grants == ["password", "refresh_token"]


def test_a_short_lived_token_is_used_for_most_of_its_life_not_renewed_at_each_call(akeneo):
    akeneo.expires_in = 120  # shorter than the 5 minutes' renewal margin
    akeneo_product(akeneo, "SKU-1")
    for _ in range(3):
        lookup("SKU-1")
        client._token.forget()  # as another worker process would, from the shared row
    assert akeneo.token_grants == ["password"]


def test_a_401_renews_the_token_once_and_retries_the_call(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    akeneo.revoke_access_tokens()  # e.g. expired early on Akeneo's side
    assert lookup("SKU-1")["uuid"]
    assert akeneo.token_grants == ["password", "refresh_token"]
    assert akeneo.calls("GET", "/api/rest/v1/products-uuid") == 3  # lookup, refused lookup, retry


def test_a_second_401_in_a_row_is_not_retried_again(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    akeneo.faults.add("GET", 401, times=2)
    with pytest.raises(http.HttpError) as raised:
        lookup("SKU-1")
    assert raised.value.status == 401
    assert akeneo.token_grants == ["password", "refresh_token"]


def test_a_refresh_token_that_stopped_working_falls_back_to_the_password(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    akeneo.revoke_refresh_tokens()
    akeneo.revoke_access_tokens()
    assert lookup("SKU-1")["uuid"]
    assert akeneo.token_grants == ["password", "password"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("AKENEO_PASSWORD", "AKENEO_USERNAME and AKENEO_PASSWORD"),
        ("AKENEO_SECRET", "AKENEO_CLIENT_ID and AKENEO_SECRET"),
    ],
)
def test_wrong_credentials_name_the_setting_and_never_the_secret(akeneo, settings, caplog, setting, named):
    setattr(settings, setting, "wrong-value-7f3a")
    with pytest.raises(http.HttpError) as raised:
        lookup("SKU-1")
    error = raised.value
    assert error.retryable is False
    assert error.error_class == "pim_credentials"
    assert named in error.message
    assert "wrong-value-7f3a" not in error.message + error.body + caplog.text
    assert AkeneoStub.PASSWORD not in error.message + error.body + caplog.text


def test_an_event_fails_with_the_credentials_reason(client, akeneo_world, settings):
    settings.AKENEO_PASSWORD = "wrong-value-7f3a"
    akeneo_product(akeneo_world.akeneo, "SKU-100001")
    akeneo_world.adobe.deliver(client, akeneo_world.upload(client, 1))
    akeneo_world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert "check AKENEO_USERNAME and AKENEO_PASSWORD" in event.reason
    assert "wrong-value-7f3a" not in event.reason
    assert akeneo_world.aem.patches == []


# --- the checks and the overview ----------------------------------------------------------------


def test_the_checks_name_the_missing_variables(settings):
    settings.PIM_CONNECTOR = "akeneo"
    settings.PIM_BASE_URL = "https://acme.cloud.akeneo.com"
    settings.AKENEO_CLIENT_ID, settings.AKENEO_SECRET = "id", ""
    settings.AKENEO_USERNAME, settings.AKENEO_PASSWORD = "pimsync", ""
    messages = [m.msg for m in configuration(None)]
    assert "PIM_CONNECTOR=akeneo needs AKENEO_SECRET, AKENEO_PASSWORD: no product can be looked up" in messages
    assert not any("reserved" in m for m in messages)


def test_a_complete_akeneo_configuration_passes_the_checks(akeneo, settings):
    settings.AKENEO_EVENT_SECRETS = ["s1"]
    assert not [m for m in configuration(None) if "AKENEO" in m.msg or "akeneo" in m.msg]


def test_check_deploy_says_when_akeneo_refuses_the_connection(akeneo, settings):
    settings.AKENEO_PASSWORD = "wrong-value-7f3a"
    from pimsync.checks import akeneo_connection

    [error] = akeneo_connection(None)
    assert "cannot use Akeneo" in error.msg and "check AKENEO_USERNAME and AKENEO_PASSWORD" in error.msg
    assert "wrong-value-7f3a" not in error.msg


def test_the_overview_says_why_akeneo_cannot_be_used_and_asks_once_per_few_minutes(akeneo, settings, people):
    from django.test import Client

    settings.AKENEO_PASSWORD = "wrong-value-7f3a"
    browser = Client()
    browser.force_login(people["Viewers"])
    for _ in range(2):
        page = browser.get("/admin/").content.decode()
        assert "Cannot use Akeneo at" in page and "check AKENEO_USERNAME and AKENEO_PASSWORD" in page
    assert len(akeneo.requests) == 1  # one token request for both page views


def test_the_overview_never_shows_credentials_written_in_pim_base_url(akeneo, settings, people):
    from django.test import Client

    settings.PIM_BASE_URL = akeneo.url.replace("http://", "http://proxyuser:url-secret-93b1@")
    settings.AKENEO_PASSWORD = "wrong-value-7f3a"
    browser = Client()
    browser.force_login(people["Viewers"])
    page = browser.get("/admin/").content.decode()
    assert f"Cannot use Akeneo at {akeneo.url}:" in page
    assert "url-secret-93b1" not in page


# --- lookup -------------------------------------------------------------------------------------


def test_a_product_is_found_by_its_identifier_on_the_uuid_api_with_option_labels(akeneo):
    akeneo.add_attribute("color", "pim_catalog_simpleselect", options={"red": {"en_US": "Red"}})
    stored = akeneo_product(akeneo, "SKU-1")
    product = lookup("SKU-1")
    assert product["uuid"] == stored["uuid"]
    assert product["values"]["sku"] == [{"locale": None, "scope": None, "data": "SKU-1"}]
    [colour] = product["values"]["color"]
    assert colour["linked_data"] == {"attribute": "color", "code": "red", "labels": {"en_US": "Red"}}
    [(_, _, query, _)] = [r for r in akeneo.requests if "search" in r[2]]
    assert query["search"] == '{"sku":[{"operator":"IN","value":["SKU-1"]}]}'
    assert query["with_attribute_options"] == "true"


def test_a_6x_server_is_detected_once_and_asked_by_code(_akeneo_server_process, akeneo):
    _akeneo_server_process.clear()
    old = AkeneoStub(_akeneo_server_process, uuid_api=False)
    old.add_attribute("color", "pim_catalog_simpleselect", options={"red": {"en_US": "Red"}})
    akeneo_product(old, "SKU 1")
    akeneo_product(old, "SKU-2")
    product = lookup("SKU 1")
    assert product["identifier"] == "SKU 1" and "uuid" not in product
    assert product["values"]["color"][0]["linked_data"]["labels"] == {"en_US": "Red"}
    assert lookup("SKU-2")["identifier"] == "SKU-2"
    assert lookup("SKU-3") is None
    assert old.calls("GET", "/api/rest/v1/products-uuid") == 1  # the first lookup found out, once per process
    assert old.calls("GET", "/api/rest/v1/products/SKU 1") == 1


def test_an_unknown_product_is_none(akeneo):
    assert lookup("SKU-404") is None


def test_an_unknown_product_fails_the_event_saying_it_is_not_in_akeneo(client, akeneo_world):
    akeneo_world.adobe.deliver(client, akeneo_world.upload(client, 1))
    akeneo_world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason == "product 'SKU-100001' is not in Akeneo"
    assert akeneo_world.aem.calls == []


def test_an_uploaded_asset_is_enriched_from_an_akeneo_product(client, akeneo_world, settings):
    settings.PIM_ASSET_LINK_ATTRIBUTE = ""
    akeneo_product(akeneo_world.akeneo, "SKU-100001", name="Trail boot")
    akeneo_world.adobe.deliver(client, akeneo_world.upload(client, 1))
    akeneo_world.drain()
    assert Event.objects.get().status == Status.SUCCEEDED
    [patch] = akeneo_world.aem.patches
    assert patch["operations"] == [
        {"op": "add", "path": "/dc:title", "value": "Trail boot"},
        {"op": "add", "path": "/pim:colour", "value": "Red"},
    ]


def test_an_answer_nested_100000_deep_fails_the_event_for_good_without_a_crash(
    client, akeneo_world, _akeneo_server_process
):
    akeneo_product(akeneo_world.akeneo, "SKU-100001")
    lookup("SKU-100001")  # the token and the API style, before the hostile answer
    deep = b'{"_embedded":{"items":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}}"
    _akeneo_server_process.expect_oneshot_request("/api/rest/v1/products-uuid").respond_with_data(
        deep, content_type="application/json"
    )
    akeneo_world.adobe.deliver(client, akeneo_world.upload(client, 1))
    akeneo_world.drain()
    event = Event.objects.get()
    assert event.status == Status.FAILED
    assert event.reason.startswith("The PIM answered with something pimsync cannot read")
    assert event.attempt_set.get().message == "Akeneo (product search) answered with JSON nested too deeply to read"
    assert akeneo_world.aem.patches == []


# --- the attribute list -------------------------------------------------------------------------


def test_the_attribute_list_follows_pages_and_is_cached(akeneo):
    for n in range(149):
        akeneo.add_attribute(f"attr_{n}", "pim_catalog_text", localizable=n % 2 == 0, labels={"en_US": f"A {n}"})
    akeneo.add_attribute("weight", "pim_catalog_metric", metric_family="Weight", decimals_allowed=True)
    found = connectors.connector().attributes()
    assert len(found) == 151  # with the identifier attribute
    assert found[1] == {
        "code": "attr_0",
        "type": "pim_catalog_text",
        "localizable": True,
        "scopable": False,
        "labels": {"en_US": "A 0"},
    }
    assert found[-1]["metric_family"] == "Weight" and found[-1]["decimals_allowed"] is True
    assert connectors.connector().attributes() == found
    assert akeneo.calls("GET", "/api/rest/v1/attributes") == 2


def test_a_next_page_on_another_host_is_not_followed(akeneo):
    for n in range(120):
        akeneo.add_attribute(f"attr_{n}", "pim_catalog_text")
    akeneo.next_base = "https://evil.example"
    assert len(connectors.connector().attributes()) == 100
    assert akeneo.calls("GET", "/api/rest/v1/attributes") == 1


@pytest.mark.parametrize(
    "prefix",
    [
        "http://{elsewhere}\\@{pim}",  # the PIM to urlsplit, the other host to urllib3, which connects
        "http://user:pw@{pim}",
        "http://{pim}/ ",
        "http://{pim}/\t",
    ],
    ids=["backslash", "userinfo", "space", "control"],
)
def test_a_next_link_that_another_parser_could_read_as_another_host_is_not_followed(akeneo, httpserver, prefix):
    for n in range(120):
        akeneo.add_attribute(f"attr_{n}", "pim_catalog_text")
    pim = akeneo.url.removeprefix("http://")
    akeneo.next_base = prefix.format(elsewhere=f"{httpserver.host}:{httpserver.port}", pim=pim)
    assert len(connectors.connector().attributes()) == 100
    assert httpserver.log == []  # the other host never saw a request, nor the bearer token
    assert akeneo.calls("GET", "/api/rest/v1/attributes") == 1


def test_a_next_link_keeps_only_its_path_and_query_on_the_configured_base(akeneo):
    for n in range(120):
        akeneo.add_attribute(f"attr_{n}", "pim_catalog_text")
    akeneo.next_base = akeneo.url.replace("http://", "HTTP://")  # the same origin, written otherwise
    assert len(connectors.connector().attributes()) == 121
    assert akeneo.calls("GET", "/api/rest/v1/attributes") == 2


def test_other_connectors_have_no_attribute_list(settings):
    settings.PIM_CONNECTOR = "demo"
    assert connectors.connector().attributes() is None


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the threads take slots on connections of their own
def test_no_more_than_four_calls_are_in_flight_at_once(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")  # token and API style, before the crowd
    akeneo.latency = 0.2

    def lookup_on_a_thread() -> None:
        try:
            lookup("SKU-1")
        finally:
            connection.close()  # the thread's own connection

    threads = [threading.Thread(target=lookup_on_a_thread) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= akeneo.max_in_flight <= client.MAX_IN_FLIGHT
    assert akeneo.calls("GET") == 1 + 12


def test_a_429_pauses_every_process_for_the_retry_after(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    akeneo.faults.add("GET", 429, headers={"Retry-After": "30"})
    for _ in range(2):
        with pytest.raises(http.HttpError) as raised:
            lookup("SKU-1")
        assert raised.value.retryable and 25 < raised.value.retry_after <= 30
        client.forget()  # the next lookup as another worker process, with an empty memory, makes it
    assert raised.value.error_class == "akeneo_paused"
    assert akeneo.calls("GET") == 2  # the second lookup did not call Akeneo


def test_only_the_configured_akeneo_host_is_called(akeneo, settings):
    assert akeneo.url in http.allowed_origins()
    with pytest.raises(http.HttpError) as raised:
        client._call("GET", "https://evil.example/api/rest/v1/attributes")
    assert raised.value.error_class == "config"


def test_check_names_missing_variables_and_only_check_deploy_calls_akeneo(akeneo, settings):
    from django.core.management.base import SystemCheckError

    settings.AKENEO_EVENT_SECRETS = ["s1"]
    settings.AKENEO_PASSWORD = ""
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert "PIM_CONNECTOR=akeneo needs AKENEO_PASSWORD" in str(raised.value)

    settings.AKENEO_PASSWORD = "wrong-value-7f3a"
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())  # every manage.py command runs these
    assert akeneo.requests == []  # no error, and Akeneo was not asked
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", "--deploy", stdout=io.StringIO(), stderr=io.StringIO())
    said = str(raised.value)
    assert f"cannot use Akeneo at {akeneo.url}" in said and "check AKENEO_USERNAME and AKENEO_PASSWORD" in said
    assert "wrong-value-7f3a" not in said


# --- write-back: the product's AEM asset links ----------------------------------------------------


def links_in(akeneo, sku: str) -> str:
    values = akeneo.product(sku)["values"].get("aem_links") or [{"data": ""}]
    return values[0]["data"]


def link(world, path: str) -> str:
    return f"{world.aem.url}/ui#/aem/assetdetails.html{path}"


def only_updates(akeneo) -> bool:
    """Every PATCH pimsync sent updated a product it had just read (never created one: 201)."""
    answered = [query["_answered"] for method, _, query, _ in akeneo.requests if method == "PATCH"]
    return all(status == 204 for status in answered)


def resync_all(world) -> None:
    from pimsync import resync

    resync.start(None, {"all": True}, "test")
    world.drain()


def test_the_product_lists_the_links_of_its_assets(client, akeneo_world):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED
    assert "1 asset link written to Akeneo (aem_links)" in event.reason
    assert links_in(akeneo, "SKU-100001") == link(world, "/content/dam/products/SKU-100001_front.png")
    [(path, body)] = akeneo.patches()
    assert path == f"/api/rest/v1/products-uuid/{akeneo.product('SKU-100001')['uuid']}"
    assert body["values"]["aem_links"][0]["locale"] is None and body["values"]["aem_links"][0]["scope"] is None
    assert only_updates(akeneo)


def test_a_second_enrichment_with_nothing_changed_writes_nothing(client, akeneo_world):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    written = links_in(akeneo, "SKU-100001")
    reads = akeneo.calls("GET", "/api/rest/v1/products")
    resync_all(world)
    assert Event.objects.filter(status=Status.UNCHANGED).count() == 1
    assert akeneo.calls("GET", "/api/rest/v1/products") == reads + 1  # the product was read again…
    assert akeneo.calls("PATCH") == 1  # …and its links, already right, were not sent again
    assert links_in(akeneo, "SKU-100001") == written == link(world, "/content/dam/products/SKU-100001_front.png")
    assert len(world.aem.patches) == 1


def test_a_second_asset_of_the_product_adds_a_sorted_line_and_a_deletion_removes_it(client, akeneo_world):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    first = world.upload(client, 1, folder="/content/dam/z-shop")
    world.adobe.deliver(client, first)
    world.drain()
    second = world.upload(client, 2, sku="SKU-100001", folder="/content/dam/a-catalog")
    world.adobe.deliver(client, second)
    world.drain()
    both = [
        link(world, "/content/dam/a-catalog/SKU-100001_front.png"),
        link(world, "/content/dam/z-shop/SKU-100001_front.png"),
    ]
    assert links_in(akeneo, "SKU-100001") == "\n".join(both)
    assert len(akeneo.patches()) == 2

    deleted = make_event(3, type="aem.assets.asset.deleted", asset_id=second["data"]["assetId"])
    world.adobe.deliver(client, deleted)
    world.drain()
    assert links_in(akeneo, "SKU-100001") == both[1]
    assert "1 asset link written to Akeneo" in Event.objects.get(event_id=deleted["eventid"]).reason
    assert only_updates(akeneo)


def enrich_on_a_thread(asset_id: str) -> None:
    from django.db import connection

    from pimsync import pipeline

    try:
        pipeline.process_asset(asset_id)
    finally:
        connection.close()


# Transactional: the two enrichments run on threads with connections of their own.
@pytest.mark.django_db(transaction=True)
def test_two_assets_of_one_product_enriched_at_once_are_both_listed(client, akeneo_world):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    uploads = [
        world.upload(client, 1, folder="/content/dam/a-catalog"),
        world.upload(client, 2, sku="SKU-100001", folder="/content/dam/z-shop"),
    ]
    for upload in uploads:
        world.adobe.deliver(client, upload)
    both_read = threading.Barrier(2, timeout=10)
    akeneo.before_list = [both_read.wait, both_read.wait]  # each lookup answered once both asked
    akeneo.latency = 0.2  # so both work out their lists before either is recorded
    threads = [threading.Thread(target=enrich_on_a_thread, args=(u["data"]["assetId"],)) for u in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Event.objects.filter(status=Status.SUCCEEDED).count() == 2
    assert links_in(akeneo, "SKU-100001") == "\n".join(
        [
            link(world, "/content/dam/a-catalog/SKU-100001_front.png"),
            link(world, "/content/dam/z-shop/SKU-100001_front.png"),
        ]
    )
    assert only_updates(akeneo)


def test_a_product_gone_from_akeneo_is_never_patched(client, akeneo_world):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    upload = world.upload(client, 1)
    world.adobe.deliver(client, upload)
    world.drain()
    akeneo.products.clear()  # deleted in Akeneo since
    world.adobe.deliver(client, make_event(3, type="aem.assets.asset.deleted", asset_id=upload["data"]["assetId"]))
    resync_all(world)
    world.drain()
    assert len(akeneo.patches()) == 1  # the first write only
    assert akeneo.products == {}
    assert only_updates(akeneo)


def test_a_refused_link_attribute_is_recorded_without_failing_the_aem_write(client, akeneo_world, settings):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    settings.PIM_ASSET_LINK_ATTRIBUTE = "no_such_attribute"
    akeneo_product(akeneo, "SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED
    assert len(world.aem.patches) == 1
    assert "asset links not written to Akeneo: no_such_attribute was refused (422: " in event.reason
    assert "check PIM_ASSET_LINK_ATTRIBUTE" in event.reason
    assert event.attempt_set.get().message == event.reason


@pytest.mark.parametrize(
    ("documented", "shown"),
    [
        (akeneo_examples.VALIDATION_FAILED, "The tommh value is not in the brand attribute option list. (brand)"),
        # No `errors` list: the message is at the top level, with a documentation link.
        (
            akeneo_examples.UNRECOGNIZED_PROPERTY,
            "Property 'extra_property' does not exist. Check the standard format documentation.; see "
            "https://docs.akeneo.com/master/reference/standard_format/other_entities.html#category",
        ),
        (
            akeneo_examples.UNKNOWN_DATA,
            "The sunglasses category does not exist in your PIM. Check the expected format on the API "
            "documentation.; see http://api.akeneo.com/api-reference.html#post_products_uuid",
        ),
    ],
)
def test_akeneos_422_is_shown_in_the_reason_whichever_form_it_takes(client, akeneo_world, documented, shown):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    akeneo_product(akeneo, "SKU-100001")
    akeneo.serve("PATCH", 422, documented)  # the body exactly as api.akeneo.com shows it
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED  # the AEM side is done either way
    assert f"aem_links was refused (422: {shown}); check PIM_ASSET_LINK_ATTRIBUTE" in event.reason


def test_without_a_link_attribute_nothing_is_written_to_akeneo(client, akeneo_world, settings):
    world, akeneo = akeneo_world, akeneo_world.akeneo
    settings.PIM_ASSET_LINK_ATTRIBUTE = ""
    akeneo_product(akeneo, "SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    assert akeneo.calls("PATCH") == 0


# --- polling ------------------------------------------------------------------------------------


def known_asset(key: str, n: int) -> None:
    from pimsync.models import Asset, SyncState

    Asset.objects.create(
        asset_id=f"urn:aaid:aem:{n:08d}", path=f"/content/dam/{key}.png", product_key=key, state=SyncState.IN_STEP
    )


def resynced_keys() -> list[str]:
    """The keys of known assets' products the re-syncs were started for, once per start."""
    from pimsync.models import Asset, Job

    known = set(Asset.objects.values_list("product_key", flat=True))
    return sorted(key for job in Job.objects.all() for key in job.assets["product_keys"] if key in known)


def on_akeneos_clock(akeneo):
    """Our clock and the stand-in's `Date` header stopped at the stand-in's clock (its `updated` times)."""
    return time_machine.travel(akeneo.now, tick=False)


def updated_searches(akeneo) -> list[str]:
    return [
        r[2]["search"]
        for r in akeneo.requests
        if r[1] == "/api/rest/v1/products-uuid" and "updated" in r[2].get("search", "")
    ]


def test_polling_hands_changed_products_on_page_by_page_and_moves_the_cursor(akeneo):
    from pimsync.models import Job, PimCursor
    from pimsync.pim import poll

    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 10:00:00"})
    for n in range(150):
        akeneo_product(akeneo, f"SKU-{n:03d}")
    for n in (3, 77, 149):
        known_asset(f"SKU-{n:03d}", n)

    with on_akeneos_clock(akeneo):  # 10:02:30, the last product's change
        assert "polled 1 page(s)" in poll.poll(max_pages=1)
        first = PimCursor.objects.get().cursor
        assert first["since"] == "2026-11-27 10:00:00" and "search_after=" in first["next"]
        after_first_page = resynced_keys()
        assert 1 <= len(after_first_page) < 3  # the page holds some of the three, in uuid order

        poll.poll()
        assert resynced_keys() == ["SKU-003", "SKU-077", "SKU-149"]
        cursor = PimCursor.objects.get().cursor
        # The pass started at 10:02:30 by the server's Date, less the first call's time (rounded
        # up to a second) and the 1 s overlap; the offset of `updated` says the server is on UTC.
        assert cursor == {"since": "2026-11-27 10:02:28", "zone": 0}

        # Those re-syncs end; a change after them needs a new one (a waiting one would read it).
        for job in Job.objects.all():
            job.cancel()
        akeneo.set_value("SKU-077", "name", "Renamed", locale="en_US")
        poll.poll()
    assert resynced_keys().count("SKU-077") == 2
    searches = updated_searches(akeneo)
    assert searches[0] == '{"updated":[{"operator":">","value":"2026-11-27 10:00:00"}]}'
    assert searches[-1] == '{"updated":[{"operator":">","value":"2026-11-27 10:02:28"}]}'
    [(_, _, query, _)] = [r for r in akeneo.requests if "updated" in r[2].get("search", "")][:1]
    assert query["pagination_type"] == "search_after" and query["limit"] == "100"


def test_a_product_changed_on_a_page_already_read_is_found_by_the_next_poll(akeneo):
    from pimsync.models import PimCursor
    from pimsync.pim import poll

    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 10:00:00"})
    for n in range(150):
        akeneo_product(akeneo, f"SKU-{n:03d}")
        known_asset(f"SKU-{n:03d}", n)
    uuids = sorted(akeneo.products)
    first_page = akeneo.products[uuids[0]]["values"]["sku"][0]["data"]
    last_page = akeneo.products[uuids[-1]]["values"]["sku"][0]["data"]

    def edits_between_pages():
        akeneo.set_value(first_page, "name", "Renamed", locale="en_US")  # its page was read
        akeneo.advance(5)
        akeneo.set_value(last_page, "name", "Renamed", locale="en_US")  # its page is still to come

    with on_akeneos_clock(akeneo):
        akeneo.before_list = [None, edits_between_pages]
        poll.poll()
        assert resynced_keys().count(first_page) == 1  # the pass read it before the change
        poll.poll()
    assert resynced_keys().count(first_page) == 2


def test_on_a_server_outside_utc_the_next_pass_asks_in_the_servers_time_zone(akeneo):
    from datetime import timezone as tz

    from pimsync.models import PimCursor
    from pimsync.pim import poll

    akeneo.zone = tz(timedelta(hours=-5))  # an on-premise server in New York
    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 04:00:00"})
    akeneo_product(akeneo, "SKU-001")  # updated 2026-11-27T05:00:01-05:00, 10:00:01 UTC
    known_asset("SKU-001", 1)
    with on_akeneos_clock(akeneo):
        poll.poll()
    assert resynced_keys() == ["SKU-001"]
    assert PimCursor.objects.get().cursor == {"since": "2026-11-27 04:59:59", "zone": -300}


def test_the_first_poll_starts_at_the_servers_time_now_even_hours_behind_utc(akeneo):
    from datetime import timezone as tz

    from pimsync.models import PimCursor
    from pimsync.pim import poll

    akeneo.zone = tz(timedelta(hours=-5))
    akeneo_product(akeneo, "SKU-001")  # changed before pimsync polled: not handed on
    known_asset("SKU-001", 1)
    akeneo.advance(60)
    with on_akeneos_clock(akeneo):  # 10:01:01 UTC, 05:01:01 on the server
        poll.poll()
        assert PimCursor.objects.get().cursor["since"] == "2026-11-27 05:00:59"
        assert resynced_keys() == []
        akeneo.set_value("SKU-001", "name", "Renamed", locale="en_US")  # 05:01:02 on the server
        poll.poll()
    assert resynced_keys() == ["SKU-001"]


def test_the_stand_in_refuses_an_iso_time_as_akeneo_does(akeneo):
    search = '{"updated":[{"operator":">","value":"2026-11-27T10:00:00Z"}]}'
    with pytest.raises(http.HttpError) as raised:
        client._call("GET", f"{client.API}/products-uuid?{urlencode({'search': search})}")
    assert raised.value.status == 422 and "yyyy-mm-dd H:i:s" in raised.value.body


def test_a_failed_page_is_polled_again_from_the_saved_cursor(akeneo):
    from pimsync.models import PimCursor
    from pimsync.pim import poll

    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 10:00:00"})
    for n in range(150):
        akeneo_product(akeneo, f"SKU-{n:03d}")
        known_asset(f"SKU-{n:03d}", n)
    poll.poll(max_pages=1)
    akeneo.faults.add("GET", 500)
    assert "stopped" in poll.poll()
    saved = PimCursor.objects.get()
    assert "next" in saved.cursor and "500" in saved.last_error
    poll.poll()
    assert resynced_keys() == [f"SKU-{n:03d}" for n in range(150)]


def test_the_poll_skips_pimsyncs_own_write_back(client, akeneo_world):
    from pimsync.models import Job, PimCursor
    from pimsync.pim import poll

    world, akeneo = akeneo_world, akeneo_world.akeneo
    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 10:00:00"})
    akeneo_product(akeneo, "SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    assert len(akeneo.patches()) == 1  # the write-back changed the product's `updated`
    assert "0 changed product(s) to re-sync, 1 already in step" in poll.poll()
    assert not Job.objects.exists()


def test_poll_pim_command_runs_one_poll(akeneo):
    from pimsync.models import PimCursor

    PimCursor.objects.create(name="akeneo", cursor={"since": "2026-11-27 10:00:00"})
    akeneo_product(akeneo, "SKU-001")
    known_asset("SKU-001", 1)
    out = io.StringIO()
    call_command("poll_pim", stdout=out)
    assert "1 changed product(s) to re-sync" in out.getvalue()


def test_the_poll_schedule_does_nothing_without_akeneo(settings):
    from pimsync import tasks

    settings.PIM_CONNECTOR = "demo"
    assert tasks.poll_pim().startswith("not polling")


def test_an_event_fails_with_a_configuration_reason_while_credentials_are_missing(settings):
    from pimsync import enrichment

    settings.PIM_CONNECTOR, settings.PIM_BASE_URL = "akeneo", "https://acme.cloud.akeneo.com"
    settings.AKENEO_CLIENT_ID = settings.AKENEO_SECRET = settings.AKENEO_USERNAME = settings.AKENEO_PASSWORD = ""
    client.forget()
    outcome = enrichment.enrich(Event(asset_id="urn:aaid:aem:1", asset_name="SKU-1_front.png", payload={}))
    assert outcome.status == Status.FAILED and outcome.error_class == "config"
    assert outcome.reason == (
        "PIM_CONNECTOR=akeneo needs AKENEO_CLIENT_ID, AKENEO_SECRET, AKENEO_USERNAME, AKENEO_PASSWORD"
    )


def test_rules_see_prices_metrics_scoped_values_and_option_labels_as_akeneo_answers_them(akeneo):
    import jmespath

    akeneo.add_sample_catalog()
    product = lookup("SKU-SAMPLE")
    expressions = {
        "values.price[0].data[?currency=='EUR'].amount | [0]": "49.90",
        "values.weight[0].data.unit": "KILOGRAM",
        "values.description[?locale=='en_US' && scope=='ecommerce'].data | [0]": "A boot for the trail.",
        "values.sizes[0].linked_data.m.labels.en_US": "Medium",
        "values.color[0].linked_data.labels.de_DE": "Rot",
        "values.waterproof[0].data": True,
    }
    assert {expression: jmespath.search(expression, product) for expression in expressions} == expressions
    types = {a["code"]: a["type"] for a in connectors.connector().attributes()}
    assert types["price"] == "pim_catalog_price_collection" and types["sizes"] == "pim_catalog_multiselect"
