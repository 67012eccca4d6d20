"""deploy/: the Prometheus rules and scrape config pass promtool, every metric the rules and the
Grafana dashboard use is one /metrics exposes, gunicorn's config logs JSON, the systemd units
verify, and the proxy example admits what pimsync accepts."""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone
from gunicorn.config import Config

from pimsync.gunicorn_logging import AccessLogger
from pimsync.logging import AccessJsonFormatter
from pimsync.models import Pause
from tests.conftest import needs

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    needs("promtool (Debian's prometheus package)", shutil.which("promtool") is not None)
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_pass_promtool():
    result = promtool("check", "rules", "pimsync-alerts.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_scrape_config_passes_promtool_with_its_token_file(tmp_path):
    for path in PROMETHEUS.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "pimsync-metrics-token").write_text("scrape-token\n")  # what the operator provides
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def metric_names(expression: str) -> set[str]:
    """The pimsync metric families an expression reads (histogram suffixes folded into the family)."""
    names = set(re.findall(r"\bpimsync_[a-z_]+", expression))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def used_metrics() -> dict[str, set[str]]:
    """Every pimsync metric family the alert rules and the Grafana dashboard read, and where."""
    used: dict[str, set[str]] = {}
    rules = (PROMETHEUS / "pimsync-alerts.yml").read_text()
    for expression in re.findall(r"^\s*expr:\s*(.+)$", rules, flags=re.M):
        for name in metric_names(expression):
            used.setdefault(name, set()).add("pimsync-alerts.yml")
    dashboard = json.loads((DEPLOY / "grafana" / "pimsync-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                used.setdefault(name, set()).add(f"dashboard panel {panel['title']!r}")
    return used


@pytest.mark.django_db
def test_every_metric_the_rules_and_the_dashboard_use_is_exposed(client, settings):
    settings.ADOBE_JOURNAL_URL = "https://events-va6.adobe.io/events/organizations/o/integrations/i/r"
    Pause.objects.create(name="aem", until=timezone.now(), reason="429")
    exposed = set(re.findall(r"^# TYPE (\S+) ", client.get("/metrics").content.decode(), flags=re.M))
    used = used_metrics()
    assert len(used) >= 8  # the files were read at all
    missing = {name: sorted(where) for name, where in used.items() if name not in exposed}
    assert not missing, f"not in /metrics: {missing}"


def test_the_dashboard_asks_for_its_datasource_rather_than_naming_one():
    dashboard = json.loads((DEPLOY / "grafana" / "pimsync-dashboard.json").read_text())
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert uids == {"${datasource}"}
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_with_the_shipped_config_logs_json_lines_without_headers(tmp_path):
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PIMSYNC_READ_DOTENV": "0",
        "SECRET_KEY": "gunicorn-config-test",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "pimsync.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PIMSYNC_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py", "pimsync.wsgi"]
    server = subprocess.Popen(gunicorn, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/healthz/ready?probe=1",
            headers={"Authorization": "Bearer do-not-log-me", "Cookie": "sessionid=do-not-log-me"},
        )
        for _ in range(300):  # until gunicorn listens; then one request, however long it takes
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not listen")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200  # by IP, though ALLOWED_HOSTS names only the host name
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    access = [json.loads(line) for line in out.splitlines()]
    assert len(access) == 1, out
    assert access[0] | {"time": None, "duration_ms": None, "user_agent": None} == {
        "time": None,
        "level": "INFO",
        "logger": "gunicorn.access",
        "message": "GET /healthz/ready 200",
        "method": "GET",
        "path": "/healthz/ready",
        "query": "probe=1",
        "status": 200,
        "duration_ms": None,
        "bytes": 42,
        "remote_addr": "127.0.0.1",
        "user_agent": None,
    }
    errors = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(entry["logger"] == "gunicorn.error" and "Listening at" in entry["message"] for entry in errors), err
    assert "do-not-log-me" not in out + err


def test_gunicorns_access_records_hold_no_header_and_what_the_json_line_writes():
    resp = SimpleNamespace(status="201 Created", sent=42, headers=[("Set-Cookie", "sessionid=do-not-log-me")])
    req = SimpleNamespace(headers=[("AUTHORIZATION", "Bearer do-not-log-me"), ("COOKIE", "csrftoken=do-not-log-me")])
    environ = {
        "REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/aem", "QUERY_STRING": "",
        "HTTP_USER_AGENT": "Adobe/1.0", "HTTP_AUTHORIZATION": "Bearer do-not-log-me", "RAW_URI": "/webhooks/aem",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }  # fmt: skip
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert config["logger_class"] == "pimsync.gunicorn_logging.AccessLogger"
    atoms = AccessLogger(Config()).atoms(resp, req, environ, timedelta(seconds=1, microseconds=234_567))
    assert "do-not-log-me" not in repr(atoms)
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "%(h)s %(r)s %(s)s", (atoms,), None)
    assert json.loads(AccessJsonFormatter().format(record)) | {"time": None} == {
        "time": None,
        "level": "INFO",
        "logger": "gunicorn.access",
        "message": "POST /webhooks/aem 201",
        "method": "POST",
        "path": "/webhooks/aem",
        "query": "",
        "status": 201,
        "duration_ms": 1234,
        "bytes": 42,
        "remote_addr": "10.0.0.7",
        "user_agent": "Adobe/1.0",
    }


UNITS = sorted((DEPLOY / "systemd").iterdir())


def test_the_systemd_units_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    # Installed as docs/deployment.md says: the checkout in /opt/pimsync; here, this checkout.
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/pimsync", str(ROOT)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / unit.name) for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "pimsync" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_the_units_run_commands_this_version_has():
    from django.core.management import get_commands

    commands = set(get_commands())
    for unit in UNITS:
        for line in re.findall(r"^ExecStart=(.+)$", unit.read_text(), flags=re.M):
            if "manage.py" in line:
                assert line.split("manage.py")[1].split()[0] in commands, line
            if "--config" in line:
                assert (ROOT / line.split("--config")[1].split()[0]).exists(), line
    timer = (DEPLOY / "systemd" / "pimsync-check-alerts.timer").read_text()
    assert "OnUnitActiveSec=" in timer and (DEPLOY / "systemd" / "pimsync-check-alerts.service").exists()


def test_the_worker_weighs_less_than_the_web_where_they_share_a_machine():
    # Between two systemd units or two containers the kernel shares the CPU by cgroup weight; a
    # Nice= would order threads only inside the worker's own unit.
    def weight(unit: str) -> int:
        found = re.findall(r"^CPUWeight=(\d+)$", (DEPLOY / "systemd" / unit).read_text(), flags=re.M)
        return int(found[0]) if found else 100  # systemd's default

    assert weight("pimsync-worker.service") < weight("pimsync-web.service")
    # compose.yaml's services, each up to the next one (two spaces in, under `services:`).
    blocks = dict(
        re.findall(r"^  (\w[\w-]*):\n(.*?)(?=^  \w|\Z)", (ROOT / "compose.yaml").read_text(), flags=re.M | re.S)
    )

    def shares(service: str) -> int:
        found = re.findall(r"^    cpu_shares: (\d+)$", blocks[service], flags=re.M)
        return int(found[0]) if found else 1024  # Docker's default

    assert shares("worker") < shares("web")


def body_limits(config: str) -> dict[str, int]:
    """client_max_body_size per location ('server' for the server's own), in bytes."""
    units = {"k": 1024, "m": 1024 * 1024, "": 1}
    limits, where = {}, "server"
    for line in config.splitlines():
        location = re.match(r"\s*location\s+(?:=\s+)?(\S+)\s*\{", line)
        if location:
            where = location.group(1)
        size = re.match(r"\s*client_max_body_size\s+(\d+)([km]?);", line)
        if size:
            limits[where] = int(size.group(1)) * units[size.group(2)]
        if re.match(r"\s*}\s*$", line) and where != "server":
            where = "server"
    return limits


def test_the_proxy_example_admits_adobes_batches_and_the_backfill_upload(settings):
    config = (DEPLOY / "nginx" / "pimsync.conf").read_text()
    limits = body_limits(config)
    # The webhook's own limit answers an oversized batch with pimsync's 413, not the proxy's.
    assert limits["server"] > settings.PIMSYNC_WEBHOOK_MAX_BYTES >= 2 * 1024 * 1024
    from dashboard.backfill import MAX_UPLOAD_BYTES

    assert limits[reverse("admin:pimsync_asset_backfill")] > MAX_UPLOAD_BYTES
    assert limits["/webhooks/akeneo"] > settings.AKENEO_EVENT_MAX_BYTES
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in config
