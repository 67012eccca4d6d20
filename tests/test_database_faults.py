"""The database goes away under a running pimsync: no page and no webhook answers 500.

The real fault runs on PostgreSQL: a gunicorn process holds persistent connections, the test ends
their server-side sessions (what a database restart does to them), and then closes the database
to new connections (what a database that is down does)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from django.db import OperationalError, close_old_connections, connection, connections

from tests.conftest import make_event

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "0123456789abcdef0123456789abcdef"


def test_the_dashboard_answers_503_with_retry_after_while_the_database_fails(admin_client):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("could not connect to server: Connection refused")

    with connection.execute_wrapper(database_down):
        response = admin_client.get("/admin/pimsync/event/")
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert "Connection refused" not in response.content.decode()


def test_the_webhook_answers_503_while_the_database_fails(client, adobe, db):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(database_down):
        response = adobe.deliver(client, make_event(1))
    assert response.status_code == 503


class Gunicorn:
    """`gunicorn pimsync.wsgi` on loopback against the test database, configured like a deployment."""

    def __init__(self, settings, key_base_url: str, port: int) -> None:
        from tests.test_worker_processes import database_url

        self.url = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ["PATH"],
            "PIMSYNC_READ_DOTENV": "0",
            "DEBUG": "1",  # static files without collectstatic; the database settings are production's
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url(),
            "ADOBE_CLIENT_ID": CLIENT_ID,
            "ADOBE_EVENTS_KEY_BASE_URL": key_base_url,
            "AEM_AUTHOR_URL": "http://127.0.0.1:9",
            "AEM_EVENT_SOURCE": settings.AEM_EVENT_SOURCE,
            "LOG_LEVEL": "CRITICAL",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "pimsync.wsgi", "--bind", f"127.0.0.1:{port}"]
            + ["--worker-class", "gthread", "--workers", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                # The first answer waits for the worker to boot: seconds on a busy machine.
                requests.get(self.url + "/healthz", timeout=30)
                return
            except requests.ConnectionError:
                assert self.process.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def end_other_sessions() -> int:
    """End every other session on the test database, as a PostgreSQL restart does: a restart is
    over only once they have all exited, so this waits for that too (up to 5 s each)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def allow_connections(allowed: bool) -> None:
    """Open or close the test database to new connections (from the maintenance database: a
    database cannot close itself)."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = "postgres"
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'true' if allowed else 'false'}")


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_after_a_database_restart_neither_the_dashboard_nor_the_webhook_answers_500(
    client, admin_user, adobe, settings
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server: its connections are a file that a restart cannot break")
    from tests.test_sandbox import free_port

    client.force_login(admin_user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    server = Gunicorn(settings, adobe.httpserver.url_for("").rstrip("/"), free_port())
    numbers = iter(range(1, 1000))

    def deliver() -> requests.Response:
        body = json.dumps(make_event(next(numbers))).encode()
        headers = {
            name[5:].replace("_", "-"): value for name, value in adobe.headers(body).items() if name.startswith("HTTP_")
        }
        headers["Content-Type"] = "application/cloudevents+json"
        return requests.post(server.url + "/webhooks/aem", data=body, headers=headers, timeout=30)

    def dashboard() -> requests.Response:
        return requests.get(server.url + "/admin/pimsync/event/", cookies=cookies, timeout=30)

    try:
        for _ in range(4):  # both threads hold a connection of their own
            assert dashboard().status_code == 200
            assert deliver().status_code == 200

        assert end_other_sessions() >= 1  # the server's persistent connections are gone
        after_restart = [dashboard().status_code for _ in range(4)] + [deliver().status_code for _ in range(4)]
        assert after_restart == [200] * 8

        allow_connections(False)  # the database is down: new connections are refused
        try:
            end_other_sessions()
            while_down = [dashboard().status_code for _ in range(3)] + [deliver().status_code for _ in range(3)]
        finally:
            allow_connections(True)
        assert while_down == [503] * 6

        assert dashboard().status_code == 200 and deliver().status_code == 200  # and back
    finally:
        server.stop()


def _traced(run) -> str:
    """What this process's connection sent and received while `run()` ran, as libpq traces it."""
    with tempfile.TemporaryFile() as trace:
        pgconn = connection.connection.pgconn
        pgconn.trace(trace.fileno())
        try:
            run()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return trace.read().decode()


def _next_request() -> int:
    """What a new request or task does with the persistent connection (close_old_connections), then
    one query; the server's pid of the session that answered it."""
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_quiet_persistent_connection_is_reused_without_a_health_check_query():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to ask")
    first = _next_request()
    pids = []
    sent = _traced(lambda: pids.append(_next_request()))
    assert pids == [first]  # the same session
    queries = [line for line in sent.splitlines() if "\tF\t" in line and ("Query" in line or "Parse" in line)]
    assert len(queries) == 1 and "pg_backend_pid" in queries[0], sent  # no `SELECT 1` before it


@pytest.mark.django_db(transaction=True)
def test_a_connection_idle_for_a_while_is_checked_with_a_query(monkeypatch):
    """A server that went away without a word (its address moved to a new primary) leaves the
    socket quiet: after a pause in use, the check asks the server, as Django's does."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to ask")
    _next_request()
    monkeypatch.setattr(type(connections["default"]), "QUIET_SECONDS", 0.0)
    sent = _traced(_next_request)
    queries = [line for line in sent.splitlines() if "\tF\t" in line and ("Query" in line or "Parse" in line)]
    assert len(queries) == 2 and "SELECT 1" in queries[0], sent


@pytest.mark.django_db(transaction=True)
def test_a_session_the_server_ended_is_replaced_before_the_first_query():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server: its connections are a file that a restart cannot break")
    first = _next_request()
    end_session(first)
    assert select.select([connection.connection.fileno()], [], [], 0)[0]  # the server's FATAL, or EOF
    second = _next_request()  # would raise "terminating connection due to administrator command"
    assert second != first


def end_session(pid: int) -> None:
    """End the server session `pid` from another connection, as a restart or an idle timeout does,
    and wait until it has exited."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        # With a timeout, pg_terminate_backend returns once the session has exited.
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
