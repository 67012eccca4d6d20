"""The sandbox: `make run`'s steps on an empty database, `simulate_upload`, and the built-in
stand-ins for IMS, the key server and AEM."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from pimsync.models import Event, SandboxAsset, Status
from pimsync.sandbox import keys
from tests.conftest import needs

ROOT = Path(__file__).resolve().parent.parent
ASSET = "urn:aaid:aem:5a4d0000-0000-4000-8000-000000000001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sandbox_env(port: int, tmp_path) -> dict:
    from tests.test_worker_processes import database_url

    return {
        "PATH": os.environ["PATH"],
        "PIMSYNC_READ_DOTENV": "0",
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": "sandbox-test-secret",
        "PIMSYNC_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PIMSYNC_ADMIN_PASSWORD": "a-demo-password-42",
        "PIMSYNC_SANDBOX_KEY_FILE": str(tmp_path / "key.pem"),
    }


@contextlib.contextmanager
def serving(env: dict, port: int):
    """`manage.py serve` (web server and worker) on `port`, once it accepts connections; stopped
    (Ctrl-C, then SIGKILL after 30 s) when the block ends, unless the block stopped it."""
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web server did not start"
                time.sleep(0.2)
        yield server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


REDIS_TEST_URL = "redis://127.0.0.1:6379/5"  # a database of its own, emptied first


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_make_run_then_simulate_upload_enriches_the_sandbox_assets(client, tmp_path, broker):
    port = free_port()
    env = sandbox_env(port, tmp_path)
    if broker == "redis":  # what a deployment with PIMSYNC_BROKER_URL runs: web and worker on Redis
        import redis

        try:
            redis.from_url(REDIS_TEST_URL).flushdb()
        except redis.ConnectionError:
            needs("Redis on 127.0.0.1:6379", False)
        env["PIMSYNC_BROKER_URL"] = REDIS_TEST_URL
    manage(env, "migrate", "--noinput")
    seeded = manage(env, "seed")
    assert "Seeded 9 demo mapping rules" in seeded
    assert "as admin / from PIMSYNC_ADMIN_PASSWORD" in seeded
    assert "Seeded" not in manage(env, "seed")  # a second start changes nothing

    with serving(env, port) as server:
        out = manage(env, "simulate_upload", "--count", "20", "--seed", "5", "--duplicates")
        assert "20 event(s) accepted, 20 duplicate(s) recognised" in out
        if broker == "redis":  # the cluster really runs on Redis: it keeps its status there
            import redis

            assert redis.from_url(REDIS_TEST_URL).keys("django_q:pimsync:*")
        deadline = time.monotonic() + 60
        while Event.objects.filter(status__in=[Status.RECEIVED, Status.PROCESSING]).exists():
            assert time.monotonic() < deadline, "the worker did not finish the uploads"
            time.sleep(0.3)
        stopped = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C stops both processes
        server.wait(timeout=30)
        assert time.monotonic() - stopped < 30

    assert Event.objects.count() == 20
    succeeded = Event.objects.filter(status=Status.SUCCEEDED)
    failed = Event.objects.filter(status=Status.FAILED)
    assert succeeded.count() + failed.count() == 20
    assert succeeded.count() >= 12
    for event in failed:
        assert event.reason == f"product {event.product_key!r} is not in the PIM"
    for event in succeeded:
        metadata = SandboxAsset.objects.get(pk=event.asset_id).metadata
        assert metadata["wknd-skuid"] == event.product_key
        assert metadata["dc:title"] and metadata["wknd-suppliername"].isupper()
        assert ("pim:dimensions" in metadata) == event.asset_path.startswith("/content/dam/pimsync-demo/products/")

    client.force_login(User.objects.get(username="admin"))
    page = client.get("/admin/pimsync/event/").content.decode()
    assert page.count('class="badge badge-succeeded"') == succeeded.count()
    overview = client.get("/admin/").content.decode()
    assert "is not in the PIM" in overview or not failed.exists()


@pytest.fixture
def sandbox(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PIMSYNC_SANDBOX_KEY_FILE", str(tmp_path / "key.pem"))
    keys.private_key.cache_clear()
    settings.PIMSYNC_SANDBOX = True
    yield settings
    keys.private_key.cache_clear()


def token(client) -> str:
    response = client.post(
        "/sandbox/ims/token/v3",
        {
            "grant_type": "client_credentials",
            "client_id": "0123456789abcdef0123456789abcdef",
            "client_secret": "test-client-secret",
            "scope": "AdobeID,openid",
        },
    )
    assert response.status_code == 200
    return response.json()["access_token"]


def aem(client, method: str, bearer: str = "", **headers):
    headers = {
        "HTTP_AUTHORIZATION": f"Bearer {bearer}",
        "HTTP_X_API_KEY": "0123456789abcdef0123456789abcdef",
        "HTTP_X_ADOBE_ACCEPT_EXPERIMENTAL": "1",
        **headers,
    }
    url = f"/sandbox/aem/adobe/assets/{ASSET}/metadata"
    if method == "GET":
        return client.get(url, **headers)
    return client.patch(
        url,
        data=headers.pop("body", "[]"),
        content_type=headers.pop("content_type", "application/json-patch+json"),
        **headers,
    )


@pytest.mark.django_db
class TestSandboxContract:
    def test_ims_refuses_wrong_credentials(self, client, sandbox):
        response = client.post(
            "/sandbox/ims/token/v3", {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    def test_aem_needs_a_token_from_ims(self, client, sandbox):
        SandboxAsset.objects.create(asset_id=ASSET, path="/content/dam/a.png", name="a.png")
        assert aem(client, "GET", "forged").status_code == 401
        assert aem(client, "GET", token(client)).status_code == 200

    def test_patch_is_conditional_on_the_etag(self, client, sandbox):
        SandboxAsset.objects.create(asset_id=ASSET, path="/content/dam/a.png", name="a.png")
        bearer = token(client)
        etag = aem(client, "GET", bearer)["ETag"]
        body = '[{"op": "add", "path": "dc:title", "value": "A"}]'
        assert aem(client, "PATCH", bearer, body=body).status_code == 428
        assert (
            aem(client, "PATCH", bearer, body=body, content_type="application/json", HTTP_IF_MATCH=etag).status_code
            == 415
        )
        assert aem(client, "PATCH", bearer, body=body, HTTP_IF_MATCH=etag).status_code == 200
        assert aem(client, "PATCH", bearer, body=body, HTTP_IF_MATCH=etag).status_code == 412
        assert aem(client, "GET", bearer).json()["assetMetadata"] == {"dc:title": "A"}

    def test_remove_takes_a_property_off_and_a_missing_one_fails_the_whole_patch(self, client, sandbox):
        SandboxAsset.objects.create(asset_id=ASSET, path="/content/dam/a.png", name="a.png", metadata={"x:a": 1})
        bearer = token(client)
        etag = aem(client, "GET", bearer)["ETag"]
        body = '[{"op": "add", "path": "/x:b", "value": 2}, {"op": "remove", "path": "/x:gone"}]'
        refused = aem(client, "PATCH", bearer, body=body, HTTP_IF_MATCH=etag)
        assert refused.status_code == 400 and "remove: x:gone does not exist" in refused.content.decode()
        assert aem(client, "GET", bearer).json()["assetMetadata"] == {"x:a": 1}
        body = '[{"op": "remove", "path": "/assetMetadata/x:a"}]'
        assert aem(client, "PATCH", bearer, body=body, HTTP_IF_MATCH=etag).status_code == 200
        assert aem(client, "GET", bearer).json()["assetMetadata"] == {}

    def test_the_public_key_verifies_what_simulate_upload_signs(self, client, sandbox):
        from cryptography.hazmat.primitives import serialization

        pem = client.get("/sandbox/keys" + keys.KEY_PATH).content
        public = serialization.load_pem_public_key(pem)
        assert public.public_numbers() == keys.private_key().public_key().public_numbers()
        assert client.get("/sandbox/keys/prod/keys/other.pem").status_code == 404


@pytest.mark.django_db
def test_the_sandbox_does_not_answer_when_sandbox_mode_is_off(client, settings):
    settings.PIMSYNC_SANDBOX = False
    assert client.post("/sandbox/ims/token/v3", {"grant_type": "client_credentials"}).status_code == 404
    assert client.get(f"/sandbox/aem/adobe/assets/{ASSET}/metadata").status_code == 404


@pytest.mark.django_db
def test_simulate_upload_refuses_outside_sandbox_mode(settings):
    settings.PIMSYNC_SANDBOX = False
    with pytest.raises(CommandError, match="needs sandbox mode"):
        call_command("simulate_upload", stdout=io.StringIO())


def fresh_settings(env: dict, code: str) -> str:
    """What `code` prints in a new process that loads pimsync's own settings from `env` alone."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; " + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ["PATH"],
            "PIMSYNC_READ_DOTENV": "0",
            "SECRET_KEY": "x",
            "DJANGO_SETTINGS_MODULE": "pimsync.settings",
            **env,
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"DEBUG": "0"}, "False"),  # production settings with no AEM_AUTHOR_URL: no sandbox
        ({"DEBUG": "1"}, "True"),  # a laptop
        ({"DEBUG": "1", "AEM_AUTHOR_URL": "https://author-p1-e2.adobeaemcloud.com"}, "False"),
        ({"DEBUG": "0", "PIMSYNC_SANDBOX": "1"}, "True"),  # only when asked for explicitly
    ],
)
def test_sandbox_mode_never_switches_on_in_production_by_accident(env, expected):
    assert fresh_settings(env, "print(settings.PIMSYNC_SANDBOX)") == expected


@pytest.mark.parametrize(
    "env, broker",
    [
        ({}, "orm"),
        ({"PIMSYNC_BROKER_URL": "redis://127.0.0.1:6379/3"}, "redis"),
    ],
)
def test_the_broker_is_the_database_unless_a_redis_url_is_given(env, broker):
    printed = fresh_settings(
        env,
        "from django_q.brokers import get_broker; q = settings.Q_CLUSTER; "
        "print('redis' if 'redis' in q else 'orm', q['retry'] > q['timeout'], type(get_broker()).__name__)",
    )
    kind, retry_above_timeout, broker_class = printed.split()
    assert kind == broker and retry_above_timeout == "True"
    assert broker_class == ("Redis" if broker == "redis" else "ORM")
