"""Named actors for the tests: Adobe's key server on loopback and a signer holding its private keys."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from pytest_httpserver import HTTPServer

from dashboard import overview
from pimsync import enrichment, inbound, mapping, wakeups
from pimsync.adobe import signatures
from pimsync.outbound import throttle
from standins.adobe import AemStub, ImsStub
from standins.akeneo import AkeneoStub
from standins.pim import PimStub

# CI replays the same examples every run (a red CI must be reproducible); a developer's `make test`
# keeps exploring new ones.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

FIXTURES = Path(__file__).parent / "fixtures"


def needs(service: str, available: bool) -> None:
    """A test that needs Redis or Chromium: skipped on a bare laptop, a failure in CI, where
    `.ci/run` starts or installs them and sets PIMSYNC_REQUIRE_SERVICES=1."""
    if available:
        return
    if os.environ.get("PIMSYNC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{service} is not available, and .ci/run requires it")
    pytest.skip(f"{service} is not available here (CI runs this test)")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# One Chromium for the session, shared by every browser test module: Playwright's sync API runs
# one event loop, so a second module's own session fixture could not start another.
@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    needs("Chromium (apt-get install chromium)", Path(CHROMIUM).exists())
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


KEY1_PATH = "/prod/keys/pub-key-test1.pem"
KEY2_PATH = "/prod/keys/pub-key-test2.pem"


def fixture_bytes(name: str) -> bytes:
    """The exact bytes of a real-shaped payload (tests/fixtures: AEM event bodies as Adobe delivers them)."""
    return (FIXTURES / name).read_bytes()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_bytes(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


@pytest.fixture(autouse=True)
def _forget_process_caches():
    """Per-process caches (the drain's promise, the mapping rules, the table statistics, the pauses
    read) do not outlive a test."""
    wakeups.DrainPromise.forget()
    mapping.forget()
    overview.forget_table_statistics()
    throttle.forget()
    enrichment.forget()


@pytest.fixture(autouse=True)
def _refusals_written_at_once(monkeypatch):
    """Webhook refusals are counted from zero in each test and written at once: the counter's
    timer thread would write after its test ended."""
    monkeypatch.setattr(inbound, "REFUSALS", inbound.RefusalCounter(flush_seconds=0))


@pytest.fixture
def people(db) -> dict[str, User]:
    """One staff user per role, made by `setup_roles` as an operator would."""
    call_command("setup_roles", stdout=io.StringIO())
    users = {}
    for role in ("Viewers", "Support", "Mapping editors"):
        user = User.objects.create_user(role.split()[0].lower(), password="pw-for-tests-1", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    return users


def run_queued_tasks(func: str = "", rounds: int = 20) -> list[str]:
    """Run the tasks queued with the ORM broker (only those of `func` when given) in this process,
    as a worker would, until none are left; their results."""
    results = []
    for _ in range(rounds):
        queued = [row for row in OrmQ.objects.all() if not func or row.task["func"] == func]
        if not queued:
            return results
        for row in queued:
            task = row.task
            row.delete()
            results.append(import_string(task["func"])(*task["args"]))
    raise AssertionError("the queued tasks did not end")


@pytest.fixture(scope="session")
def test_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return new_key(), new_key()


@dataclass
class Adobe:
    """Adobe I/O Events as the webhook sees it: a key server and deliveries signed by its keys."""

    httpserver: object
    key1: rsa.RSAPrivateKey
    key2: rsa.RSAPrivateKey

    def serve_key(self, path: str, key: rsa.RSAPrivateKey) -> None:
        self.httpserver.expect_request(path, method="GET").respond_with_data(
            public_pem(key), content_type="application/x-pem-file"
        )

    def key_fetches(self) -> int:
        return sum(1 for request, _ in self.httpserver.log if "/keys/" in request.path)

    def headers(self, body: bytes, *, key1=None, key2=None, **extra) -> dict[str, str]:
        """Delivery headers as Django's test client takes them (HTTP_… names)."""
        headers = {
            "HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": sign_bytes(key1 or self.key1, body),
            "HTTP_X_ADOBE_DIGITAL_SIGNATURE_2": sign_bytes(key2 or self.key2, body),
            "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": KEY1_PATH,
            "HTTP_X_ADOBE_PUBLIC_KEY2_PATH": KEY2_PATH,
            "HTTP_X_ADOBE_DELIVERY_ID": "18abfb47-0000-4684-ade8-f442a3444033",
        }
        for name, value in extra.items():
            header = "HTTP_" + name.upper().replace("-", "_")
            if value is None:
                headers.pop(header, None)
            else:
                headers[header] = value
        return headers

    def deliver(self, client, body: bytes | dict | list, **headers):
        """POST a signed delivery to the webhook, the way Adobe does."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return client.post(
            "/webhooks/aem",
            data=body,
            content_type="application/cloudevents+json; charset=UTF-8",
            **self.headers(body, **headers),
        )


@pytest.fixture
def adobe(httpserver, settings, test_keys) -> Adobe:
    """Adobe's key server on loopback, with an empty key cache in this process."""
    settings.ADOBE_EVENTS_KEY_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.no_handler_status_code = 404  # what Adobe's static key host answers for no such key
    signatures.keys.clear()
    actor = Adobe(httpserver, *test_keys)
    actor.serve_key(KEY1_PATH, actor.key1)
    actor.serve_key(KEY2_PATH, actor.key2)
    yield actor
    signatures.keys.clear()


def make_event(
    n: int = 0,
    *,
    type: str = "aem.assets.asset.processing_completed",
    name: str | None = None,
    asset_id: str | None = None,
    folder: str = "/content/dam/products",
    **overrides,
) -> dict:
    """A real-shaped event (the processing_completed fixture) for asset number `n`."""
    event = json.loads(fixture_bytes("aem.assets.asset.processing_completed.json"))
    event["type"] = type
    event["eventid"] = event["event_id"] = f"evt-{n:06d}-{type.rsplit('.', 1)[-1]}"
    event["id"] = f"ce-{n:06d}"
    asset_id = asset_id or f"urn:aaid:aem:00000000-0000-4000-8000-{n:012d}"
    name = name or f"SKU-{100000 + n}_front.png"
    event["data"]["assetId"] = asset_id
    repo = event["data"]["repositoryMetadata"]
    repo.update({"repo:assetId": asset_id, "repo:name": name, "repo:path": f"{folder}/{name}"})
    event.update(overrides)
    return event


@pytest.fixture(scope="session")
def _second_server_process():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def second_server(_second_server_process):
    """Another loopback HTTP server (IMS, AEM and the PIM), cleared after each test."""
    yield _second_server_process
    _second_server_process.clear()


STANDARD_MAPPING = {
    "product_key": {"from": "asset_name", "pattern": "^(?P<key>[^_.]+)"},
    "rules": [
        {"pim_field": "SKUID", "metadata_path": "wknd-skuid"},
        {"pim_field": "SupplierName", "metadata_path": "wknd-suppliername", "transform": "upper"},
        {"pim_field": "values.name[?locale=='en_US'].data | [0]", "metadata_path": "dc:title", "default": ""},
        {"pim_field": "colours", "metadata_path": "pim:colours", "transform": "join"},
    ],
}


def product(sku: str, name: str = "Trail backpack 35L", supplier: str = "Nordwand Outdoor") -> dict:
    return {
        "SKUID": sku,
        "SupplierName": supplier,
        "values": {"name": [{"locale": "en_US", "data": name}, {"locale": "de_DE", "data": "Rucksack"}]},
        "colours": ["black", "red"],
    }


@dataclass
class World:
    """Adobe, IMS, AEM and the PIM on loopback, and a way to run what the worker would run."""

    adobe: Adobe
    ims: object
    aem: object
    pim: object

    def drain(self, rounds: int = 20) -> list[str]:
        """Run the queued django-q2 tasks in this process, as a worker would, until none are left."""
        return run_queued_tasks(rounds=rounds)

    def upload(self, client, n: int, sku: str | None = None, **kwargs):
        """An asset appears in AEM and AEM says it finished processing."""
        event = make_event(n, name=f"{sku or f'SKU-{100000 + n}'}_front.png", **kwargs)
        self.aem.add_asset(event["data"]["assetId"], {"dc:format": "image/png"})
        return event


def make_world(adobe: Adobe, server, settings, pim_stub: type[PimStub] = PimStub) -> World:
    """IMS, AEM and the PIM (`pim_stub`, a PimStub or a subclass) on `server`, pimsync pointed at
    them, and the standard mapping."""
    from pimsync import mapping
    from pimsync.adobe import ims

    ims_stub = ImsStub(server)
    aem_stub = AemStub(server, ims_stub)
    pim = pim_stub(server)
    settings.ADOBE_IMS_TOKEN_URL = ims_stub.url
    settings.AEM_AUTHOR_URL = aem_stub.url
    settings.PIM_BASE_URL = pim.url
    settings.PIM_CONNECTOR = "rest"
    settings.PIM_API_TOKEN = PimStub.TOKEN
    settings.PIMSYNC_RETRY_BASE_SECONDS = 30
    ims.forget()
    mapping.import_config(STANDARD_MAPPING)
    return World(adobe, ims_stub, aem_stub, pim)


@contextmanager
def threaded_world(adobe: Adobe, settings, pim_stub: type[PimStub] = PimStub):
    """`make_world` on a server of its own that answers calls at once, as real peers do (the
    shared one answers one call after the other)."""
    from pimsync.adobe import ims

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield make_world(adobe, server, settings, pim_stub)
    finally:
        server.stop()
        ims.forget()


@pytest.fixture
def world(adobe, second_server, settings, db) -> World:
    from pimsync.adobe import ims

    yield make_world(adobe, second_server, settings)
    ims.forget()


@pytest.fixture(scope="session")
def _akeneo_server_process():
    # Threaded: concurrent calls reach the stand-in at once (the in-flight limit is observable).
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def akeneo(_akeneo_server_process, settings, db):
    """Akeneo on loopback (standins/akeneo.py) as the PIM, with its Connection's credentials set
    and nothing of an earlier test remembered by the client."""
    from pimsync.pim import akeneo as client

    stub = AkeneoStub(_akeneo_server_process)
    settings.PIM_CONNECTOR = "akeneo"
    settings.PIM_BASE_URL = stub.url
    settings.AKENEO_CLIENT_ID, settings.AKENEO_SECRET = AkeneoStub.CLIENT_ID, AkeneoStub.SECRET
    settings.AKENEO_USERNAME, settings.AKENEO_PASSWORD = AkeneoStub.USERNAME, AkeneoStub.PASSWORD
    settings.AKENEO_IDENTIFIER_ATTRIBUTE = "sku"
    client.forget()
    client.forget_connection_test()
    yield stub
    _akeneo_server_process.clear()
    client.forget()
    client.forget_connection_test()


AKENEO_MAPPING = {
    "product_key": {"from": "asset_name", "pattern": "^(?P<key>[^_.]+)"},
    "rules": [
        {"pim_field": "values.name[?locale=='en_US'].data | [0]", "metadata_path": "dc:title", "default": ""},
        {"pim_field": "values.color[0].linked_data.labels.en_US", "metadata_path": "pim:colour", "default": ""},
    ],
}


@pytest.fixture
def akeneo_world(world, akeneo, settings) -> World:
    """The loopback world with Akeneo as its PIM (`world.akeneo`), AEM's asset links written back
    into the text attribute `aem_links`, and a mapping that reads Akeneo's values."""
    from pimsync import mapping

    akeneo.add_attribute("name", "pim_catalog_text", localizable=True, labels={"en_US": "Name"})
    akeneo.add_attribute("color", "pim_catalog_simpleselect", options={"red": {"en_US": "Red"}})
    akeneo.add_attribute("aem_links", "pim_catalog_textarea", labels={"en_US": "AEM assets"})
    settings.PIM_CONNECTOR = "akeneo"
    settings.PIM_BASE_URL = akeneo.url
    settings.PIM_ASSET_LINK_ATTRIBUTE = "aem_links"
    mapping.import_config(AKENEO_MAPPING)
    world.akeneo = akeneo
    return world


def akeneo_product(akeneo, sku: str, name: str = "Trail boot") -> dict:
    """A product with an English and a German name and a colour option."""
    return akeneo.add_product(
        sku,
        {
            "name": [
                {"locale": "en_US", "scope": None, "data": name},
                {"locale": "de_DE", "scope": None, "data": "Wanderschuh"},
            ],
            "color": [{"locale": None, "scope": None, "data": "red"}],
        },
    )
