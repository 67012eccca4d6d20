"""Settings read from the environment: bad values are reported by name, production's documented
settings pass `check --deploy`, the proxy header is trusted only when asked, and sandbox mode
refuses to run beside a real AEM. Each runs in a fresh process, as a deployment reads them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_sandbox import fresh_settings

ROOT = Path(__file__).resolve().parent.parent
REAL_AEM = "https://author-p12345-e67890.adobeaemcloud.com"


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`manage.py …` in a new process that sees `env` alone (no .env file)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "PIMSYNC_READ_DOTENV": "0", "SECRET_KEY": "x", **env},
    )


def test_a_value_that_is_not_a_number_is_reported_by_name_and_value_not_a_crash():
    result = manage(
        {"PIMSYNC_DRAIN_LINGER_SECONDS": "abc", "PIMSYNC_MAX_ATTEMPTS": "eight", "SECURE_SSL_REDIRECT": "maybe"},
        "check",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "(pimsync.E002) PIMSYNC_DRAIN_LINGER_SECONDS='abc' is not a number" in output
    assert "(pimsync.E002) PIMSYNC_MAX_ATTEMPTS='eight' is not a whole number" in output
    assert "(pimsync.E002) SECURE_SSL_REDIRECT='maybe' is not 1/true/yes/on or 0/false/no/off" in output


def test_a_number_below_its_minimum_is_reported_and_the_default_kept():
    result = manage({"PIMSYNC_MAX_ATTEMPTS": "0"}, "check")
    assert result.returncode != 0
    assert "(pimsync.E002) PIMSYNC_MAX_ATTEMPTS='0' is not a whole number of at least 1" in result.stderr
    assert fresh_settings({"PIMSYNC_MAX_ATTEMPTS": "0"}, "print(settings.PIMSYNC_MAX_ATTEMPTS)") == "8"


def test_a_bad_value_of_a_secret_is_reported_without_the_value(monkeypatch):
    from pimsync import settings as module

    monkeypatch.setattr(module, "PIMSYNC_ENV_PROBLEMS", [])
    monkeypatch.setenv("PIMSYNC_EXAMPLE_TOKEN", "hunter2-secret")
    assert module.env_int("PIMSYNC_EXAMPLE_TOKEN", 5) == 5
    assert module.PIMSYNC_ENV_PROBLEMS == [("PIMSYNC_EXAMPLE_TOKEN", "(hidden)", "a whole number")]


def production_env() -> dict:
    """Exactly the variables docs/deployment.md's "Run in production" exports, with its placeholders filled."""
    readme = (ROOT / "docs" / "deployment.md").read_text()
    section = readme.split("## Run in production", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    env = {}
    for line in block.splitlines():
        if not line.startswith("export "):
            continue
        for name, value in re.findall(r"([A-Z_]+)=(\S+)", line.split("#", 1)[0]):
            env[name] = value
    assert {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"} <= set(env)
    for name, value in env.items():
        if "…" in value:  # a placeholder the operator fills in
            env[name] = "x"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DATABASE_URL"] = "sqlite:///" + str(ROOT / "var" / "check-deploy.sqlite3")  # never connected to
    return env


def test_check_deploy_is_clean_with_exactly_the_documented_production_settings():
    env = production_env()
    assert env["DEBUG"] == "0"
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_the_https_settings():
    env = production_env()
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        env.pop(name)
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


IS_SECURE = (
    "from django.test import RequestFactory; "
    "print(RequestFactory().get('/', HTTP_X_FORWARDED_PROTO='https').is_secure())"
)


@pytest.mark.parametrize(
    "trust, secure",
    [
        ({}, "False"),  # gunicorn reachable directly: anyone could claim https
        ({"PIMSYNC_TRUST_X_FORWARDED_PROTO": "1"}, "True"),  # only a proxy that sets it reaches gunicorn
    ],
)
def test_x_forwarded_proto_is_trusted_only_when_the_operator_says_so(trust, secure):
    env = {"DEBUG": "0", "ALLOWED_HOSTS": "testserver", **trust}
    assert fresh_settings(env, IS_SECURE) == secure


@pytest.mark.django_db
def test_the_ssl_redirect_spares_health_checks_and_scrapes(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    page = client.get("/admin/")
    assert page.status_code == 301 and page["Location"].startswith("https://")
    assert client.post("/webhooks/aem", data=b"{}", content_type="application/json").status_code == 301
    assert client.get("/healthz").status_code in (200, 503)  # load balancers probe over plain http
    assert client.get("/healthz/ready").status_code == 200
    assert client.get("/metrics").status_code == 200  # Prometheus scrapes the private address
    assert client.get("/admin/", secure=True).status_code == 302  # https: on to the login


def test_sandbox_mode_beside_a_real_aem_refuses_to_start():
    result = manage({"PIMSYNC_SANDBOX": "1", "AEM_AUTHOR_URL": REAL_AEM}, "check")
    assert result.returncode != 0
    assert "(pimsync.E007) PIMSYNC_SANDBOX=1 with AEM_AUTHOR_URL set to a real AEM" in result.stderr
    printed = fresh_settings(
        {"PIMSYNC_SANDBOX": "1", "AEM_AUTHOR_URL": REAL_AEM},
        "print(settings.PIMSYNC_SANDBOX, settings.ADOBE_EVENTS_KEY_BASE_URL, settings.ADOBE_CLIENT_ID or '-')",
    )
    # Nothing of the sandbox is swapped in beside the real AEM: Adobe's key server, no client id.
    assert printed == "False https://static.adobeioevents.com -"


def test_sandbox_mode_on_its_own_endpoints_still_starts():
    env = {"PIMSYNC_SANDBOX": "1", "DEBUG": "1"}
    assert manage(env, "check").returncode == 0
    own = {**env, "AEM_AUTHOR_URL": "http://127.0.0.1:8000/sandbox/aem"}
    assert manage(own, "check").returncode == 0


def test_gunicorn_refuses_to_load_the_application_beside_a_configuration_error():
    env = {"PATH": os.environ["PATH"], "PIMSYNC_READ_DOTENV": "0", "SECRET_KEY": "x", "ALLOWED_HOSTS": "x"}
    load = [sys.executable, "-c", "import pimsync.wsgi"]
    refused = subprocess.run(
        load,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PIMSYNC_SANDBOX": "1", "AEM_AUTHOR_URL": REAL_AEM},
    )
    assert refused.returncode != 0
    assert "pimsync refuses to start" in refused.stderr and "pimsync.E007" in refused.stderr
    fine = subprocess.run(load, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert fine.returncode == 0, fine.stderr


def test_sandbox_mode_beside_akeneo_with_write_back_refuses_to_start():
    akeneo = {
        "PIMSYNC_SANDBOX": "1",
        "DEBUG": "1",
        "PIM_CONNECTOR": "akeneo",
        "PIM_BASE_URL": "https://acme.cloud.akeneo.com",
        "PIM_ASSET_LINK_ATTRIBUTE": "aem_links",
    }
    result = manage(akeneo, "check")
    assert result.returncode != 0
    assert "(pimsync.E007) PIMSYNC_SANDBOX=1 with PIM_CONNECTOR=akeneo and PIM_ASSET_LINK_ATTRIBUTE" in result.stderr
    assert fresh_settings(akeneo, "print(settings.PIMSYNC_SANDBOX, bool(settings.PIM_WEBHOOK_SECRET))") == "False False"


def test_the_sandbox_pim_webhook_secret_applies_only_with_the_demo_pim():
    show = "print(settings.PIMSYNC_SANDBOX, settings.PIM_CONNECTOR, bool(settings.PIM_WEBHOOK_SECRET))"
    assert fresh_settings({"DEBUG": "1"}, show) == "True demo True"
    real_pim = {"DEBUG": "1", "PIM_BASE_URL": "https://pim.example.com/api"}
    assert fresh_settings(real_pim, show) == "True rest False"
    akeneo = {**real_pim, "PIM_CONNECTOR": "akeneo"}  # no write-back: sandbox mode may run beside it
    assert fresh_settings(akeneo, show) == "True akeneo False"


def deploy_warnings() -> set[str]:
    from pimsync.checks import exposure

    return {problem.id for problem in exposure(None)}


@pytest.mark.django_db
def test_check_deploy_warns_of_an_open_metrics_page_weak_secrets_and_akeneo_over_http(settings):
    settings.DEBUG = False
    settings.PIMSYNC_METRICS_TOKEN = ""
    settings.PIM_WEBHOOK_SECRET = "a-long-random-secret-0123456789, short"
    settings.AKENEO_EVENT_SECRETS = ["tiny"]
    settings.PIM_CONNECTOR, settings.PIM_BASE_URL = "akeneo", "http://akeneo.internal"
    assert {"pimsync.W050", "pimsync.W051", "pimsync.W052"} <= deploy_warnings()
    from pimsync.checks import exposure

    messages = " ".join(problem.msg for problem in exposure(None))
    assert "short" not in messages.replace("shorter", "") and "tiny" not in messages  # named, never shown

    settings.PIMSYNC_METRICS_TOKEN = "scrape-token-7f3a"
    settings.PIM_WEBHOOK_SECRET = "a-long-random-secret-0123456789"
    settings.AKENEO_EVENT_SECRETS = ["another-long-random-secret-42"]
    settings.PIM_BASE_URL = "https://akeneo.example.com"
    assert deploy_warnings() == set()
    settings.DEBUG, settings.PIMSYNC_METRICS_TOKEN = True, ""
    assert deploy_warnings() == set()  # a laptop


@pytest.mark.django_db
def test_akeneo_event_secrets_with_another_connector_is_a_warning(settings):
    from pimsync.checks import configuration

    settings.AKENEO_EVENT_SECRETS = ["another-long-random-secret-42"]
    settings.PIM_CONNECTOR = "demo"
    assert "pimsync.W009" in {problem.id for problem in configuration(None)}
    settings.PIM_CONNECTOR = "akeneo"
    assert "pimsync.W009" not in {problem.id for problem in configuration(None)}
