"""Settings for pimsync, read from the environment (and a `.env` file in the project root).

Every variable is listed in docs/configuration.md. Misconfiguration never crashes the import:
it is reported by the system checks in `pimsync/checks.py` and on the dashboard; a value that
cannot be read as its type keeps the default and is reported by `pimsync.E002`.
"""

import math
import os
import re
import zoneinfo
from pathlib import Path

import dj_database_url
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
# A real environment variable wins over the .env file. Tests skip the file so that a developer's
# real credentials can never leak into a test run.
if os.environ.get("PIMSYNC_READ_DOTENV", "1") != "0":
    load_dotenv(BASE_DIR / ".env", override=False)


# Values that could not be read as their type: (variable, value as shown, what was expected).
# Each is reported by the `pimsync.E002` system check; the setting keeps its default meanwhile, so a
# typo never crashes the import (and with it every `manage.py` command that could explain it).
PIMSYNC_ENV_PROBLEMS: list[tuple[str, str, str]] = []
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


def _bad_value(name: str, raw: str, expected: str) -> None:
    shown = "(hidden)" if any(word in name for word in _SECRET_WORDS) else repr(raw[:40])
    PIMSYNC_ENV_PROBLEMS.append((name, shown, expected))


def env_str(name: str, default: str = "") -> str:
    """A string variable, stripped; the default when unset."""
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    """1/true/yes/on or 0/false/no/off; anything else is reported and the default used."""
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    _bad_value(name, os.environ[name], "1/true/yes/on or 0/false/no/off")
    return default


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """A whole number (at least `minimum`); anything else is reported and the default used."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum):
        _bad_value(name, raw, "a whole number" + (f" of at least {minimum}" if minimum is not None else ""))
        return default
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """A finite number (at least `minimum`); anything else is reported and the default used."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (minimum is not None and value < minimum):
        _bad_value(name, raw, "a number" + (f" of at least {minimum:g}" if minimum is not None else ""))
        return default
    return value


def env_time_zone(name: str, default: str = "UTC") -> str:
    """An IANA time zone name (`Europe/Berlin`); anything else is reported and the default used."""
    raw = env_str(name)
    if raw == "":
        return default
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _bad_value(name, raw, "a time zone name such as UTC or Europe/Berlin")
        return default
    return raw


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list, items stripped, empty items dropped."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=False)
# Only a development machine may run without a secret key of its own.
SECRET_KEY = env_str("SECRET_KEY") or ("insecure-dev-only-key" if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "pimsync.apps.PimsyncConfig",
    "dashboard.apps.DashboardConfig",
    "dashboard.apps.PimsyncAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
]

# Django's own backend, with a user's and their groups' permissions read in one query instead of two.
AUTHENTICATION_BACKENDS = ["dashboard.permissions.PermissionsInOneQuery"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything that validates the Host header: probes by IP address (pimsync.middleware).
    "pimsync.middleware.HealthProbeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which reads (and so stores) an uploaded form.
    "pimsync.middleware.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's, with the message storage built only for a request that uses it (not the webhook).
    "pimsync.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pimsync.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "pimsync.urls"
WSGI_APPLICATION = "pimsync.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {
    # Persistent connections: the webhook is a hot path and a new PostgreSQL connection per
    # request costs more than the insert itself.
    # A health check before a reused connection's first query: without it every connection left
    # over from before a database restart fails one request. On PostgreSQL it asks the server
    # only when the socket has something to read or the connection sat idle for a few seconds
    # (pimsync/postgresql/base.py).
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check that needs no round trip on a connection in steady
    # use, and each statement planned with its parameters (pimsync/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "pimsync.postgresql"
    # Parameters bound by the server rather than spliced into the SQL text by psycopg in Python
    # (9% of a worker's CPU in a py-spy profile), and the statements a connection runs again and
    # again (the webhook's INSERT, the worker's lease, claim and updates) prepared after their
    # fifth run, so PostgreSQL no longer parses them each time (it still plans each run with its
    # parameters: pimsync.postgresql). Prepared statements need a direct connection or PgBouncer
    # 1.21+ with max_prepared_statements: behind an older pooler in transaction mode,
    # PIMSYNC_DB_PREPARED_STATEMENTS=0 turns them off.
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "server_side_binding": True,
        "prepare_threshold": 5 if env_bool("PIMSYNC_DB_PREPARED_STATEMENTS", default=True) else None,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share one SQLite file: WAL lets readers run beside the
    # writer, and IMMEDIATE transactions take the write lock up front instead of failing with
    # "database is locked" half-way (https://github.com/django-q2/django-q2/issues/144).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Every time on the dashboard is shown in this zone, with its name: "2026-12-01 19:15 UTC".
TIME_ZONE = env_time_zone("TIME_ZONE")
USE_I18N = True
USE_TZ = True
# Django's English formats ("Dec. 1, 2026, 7:15 p.m.") replaced by one format for every page.
FORMAT_MODULE_PATH = ["pimsync.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "admin:login"

# --- Adobe ----------------------------------------------------------------------------------
ADOBE_CLIENT_ID = env_str("ADOBE_CLIENT_ID")
ADOBE_CLIENT_SECRET = env_str("ADOBE_CLIENT_SECRET")
ADOBE_SCOPES = env_str("ADOBE_SCOPES", "AdobeID,openid,aem.folders,aem.assets.author")
ADOBE_TECHNICAL_ACCOUNT_EMAIL = env_str("ADOBE_TECHNICAL_ACCOUNT_EMAIL")
ADOBE_IMS_TOKEN_URL = env_str("ADOBE_IMS_TOKEN_URL", "https://ims-na1.adobelogin.com/ims/token/v3")
ADOBE_EVENTS_KEY_BASE_URL = env_str("ADOBE_EVENTS_KEY_BASE_URL", "https://static.adobeioevents.com").rstrip("/")
# Only key paths under this prefix are fetched (Adobe's look like /prod/keys/pub-key-<id>.pem); see
# docs/adobe-events.md.
ADOBE_EVENTS_KEY_PATH_PREFIX = env_str("ADOBE_EVENTS_KEY_PATH_PREFIX", "/prod/keys/")
# The registration's Journaling API endpoint, as Adobe Developer Console shows it (empty: no
# journal pulls). The webhook is the fast path; the journal keeps every event for 7 days, also
# while push delivery fails, so pulling it recovers what the webhook missed (docs/adobe-events.md).
ADOBE_JOURNAL_URL = env_str("ADOBE_JOURNAL_URL")
ADOBE_IMS_ORG_ID = env_str("ADOBE_IMS_ORG_ID")  # sent as x-ims-org-id, e.g. 1234ABCD@AdobeOrg
PIMSYNC_JOURNAL_POLL_SECONDS = env_int("PIMSYNC_JOURNAL_POLL_SECONDS", 60, minimum=1)
if ADOBE_JOURNAL_URL and not env_str("ADOBE_SCOPES"):
    # The Journaling API needs the I/O Management API's scope on the same credential.
    ADOBE_SCOPES += ",adobeio_api"

AEM_AUTHOR_URL = env_str("AEM_AUTHOR_URL").rstrip("/")
# How a metadata PATCH names a property: `pointer` (`/dc:title`, an RFC 6901 pointer as Adobe's
# current samples send), `asset-metadata` (`/assetMetadata/dc:title`, the full path of Adobe's
# metadata guide) or `bare` (`dc:title`, the 2024 tutorial). `manage.py doctor --write-test`
# finds out which ones an AEM accepts.
AEM_PATCH_PATH_STYLE = env_str("AEM_PATCH_PATH_STYLE", "pointer").strip().lower()
# An AEM service credential (AEM Developer Console → Integrations → technical account): its JSON,
# or the path of the file holding it. Used only for the classic endpoints a backfill reads
# (`<path>.json`, `/api/assets/…`), for which Adobe documents this credential and not the OAuth
# Server-to-Server one (pimsync.adobe.service_credentials). Never logged or shown.
AEM_SERVICE_CREDENTIALS = env_str("AEM_SERVICE_CREDENTIALS")


def derive_event_source(author_url: str) -> str:
    """`https://author-p12345-e67890.adobeaemcloud.com` → `acct:aem-p12345-e67890@adobe.com`."""
    match = re.search(r"author-p(\d+)-e(\d+)(-cmstg)?", author_url)
    if not match:
        return ""
    program, environment, cmstg = match.groups()
    return f"acct:aem{cmstg or ''}-p{program}-e{environment}@adobe.com"


AEM_EVENT_SOURCE = env_str("AEM_EVENT_SOURCE") or derive_event_source(AEM_AUTHOR_URL)

# --- PIM ------------------------------------------------------------------------------------
PIM_BASE_URL = env_str("PIM_BASE_URL").rstrip("/")
PIM_CONNECTOR = env_str("PIM_CONNECTOR") or ("rest" if PIM_BASE_URL else "demo")
PIM_PRODUCT_PATH = env_str("PIM_PRODUCT_PATH", "/products/{key}")
PIM_API_TOKEN = env_str("PIM_API_TOKEN")
# PIM_CONNECTOR=akeneo: an Akeneo Connection's credentials (docs/deployment.md, "Akeneo").
AKENEO_CLIENT_ID = env_str("AKENEO_CLIENT_ID")
AKENEO_SECRET = env_str("AKENEO_SECRET")
AKENEO_USERNAME = env_str("AKENEO_USERNAME")
AKENEO_PASSWORD = env_str("AKENEO_PASSWORD")
AKENEO_IDENTIFIER_ATTRIBUTE = env_str("AKENEO_IDENTIFIER_ATTRIBUTE") or "sku"
# The locale and channel an Akeneo attribute rule reads when it names none (pimsync.pim.akeneo_values).
AKENEO_LOCALE = env_str("AKENEO_LOCALE") or "en_US"
AKENEO_CHANNEL = env_str("AKENEO_CHANNEL") or "ecommerce"
# Signing secrets of the Event Platform subscription (primary, secondary) or the legacy Events API.
AKENEO_EVENT_SECRETS = env_list("AKENEO_EVENT_SECRETS")
# The largest body /webhooks/akeneo reads. A legacy Events API request holds up to 10 full products
# (https://api.akeneo.com/events-documentation/limits-and-scalability.html): Akeneo's documented
# product.updated event is 1.5 KB, a product with long texts in six locales and two channels about
# 100 KB, so ten of those about 1 MB; 4 MB leaves four times that. Kept apart from Adobe's limit.
AKENEO_EVENT_MAX_BYTES = env_int("AKENEO_EVENT_MAX_BYTES", 4 * 1024 * 1024, minimum=1)
# A text attribute that receives the product's AEM asset links (empty: nothing is written to the PIM).
PIM_ASSET_LINK_ATTRIBUTE = env_str("PIM_ASSET_LINK_ATTRIBUTE")

# --- Pipeline -------------------------------------------------------------------------------
PIMSYNC_MAX_ATTEMPTS = env_int("PIMSYNC_MAX_ATTEMPTS", 8, minimum=1)
PIMSYNC_RETRY_BASE_SECONDS = env_int("PIMSYNC_RETRY_BASE_SECONDS", 30, minimum=0)
PIMSYNC_RETRY_MAX_SECONDS = env_int("PIMSYNC_RETRY_MAX_SECONDS", 3600, minimum=0)
PIMSYNC_TASK_TIMEOUT_SECONDS = env_int("PIMSYNC_TASK_TIMEOUT_SECONDS", 120, minimum=1)
# Outbound HTTP timeout per call (connect, read) in seconds.
PIMSYNC_HTTP_TIMEOUT_SECONDS = env_int("PIMSYNC_HTTP_TIMEOUT_SECONDS", 15, minimum=1)
# Adobe's batch delivery holds at most 20 events and 2 MB (the "size of notifications in batch
# delivery style" in https://developer.adobe.com/events/docs/support/faq/).
PIMSYNC_WEBHOOK_MAX_BYTES = env_int("PIMSYNC_WEBHOOK_MAX_BYTES", 2 * 1024 * 1024, minimum=1)
PIMSYNC_WEBHOOK_MAX_EVENTS = 20
PIMSYNC_BROKER_URL = env_str("PIMSYNC_BROKER_URL")
# A drain that runs dry keeps polling this long before it ends; while it does, webhooks need not
# queue wake-ups of their own (see pimsync.wakeups.DrainPromise).
PIMSYNC_DRAIN_LINGER_SECONDS = env_float("PIMSYNC_DRAIN_LINGER_SECONDS", 3, minimum=0)
PIMSYNC_WORKERS = env_int("PIMSYNC_WORKERS", 2, minimum=1)
# Assets each worker process enriches at once (threads; the work waits on PIM and AEM). SQLite
# allows one writer at a time, so the embedded default keeps it low.
PIMSYNC_WORKER_THREADS = env_int(
    "PIMSYNC_WORKER_THREADS", 2 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 16
)
# Each enrichment on those threads asks AEM for the asset's metadata while the PIM answers
# (pimsync.read_ahead): two round trips of waiting per asset instead of three, for a little more
# CPU (a thread's hand-over per asset). Off: one call after the other.
PIMSYNC_READ_AHEAD = env_bool("PIMSYNC_READ_AHEAD", True)
# Assets a re-sync enriches per second, all workers together (pimsync.resync); live events from
# Adobe always go first.
PIMSYNC_RESYNC_RATE = env_float("PIMSYNC_RESYNC_RATE", 5, minimum=0.01)
# Shared secret of `POST /webhooks/pim` (unset: the endpoint answers 404); several, comma-separated,
# are all accepted while a secret is rotated (pimsync.pim.webhook).
PIM_WEBHOOK_SECRET = env_str("PIM_WEBHOOK_SECRET")

# --- Retention ------------------------------------------------------------------------------
# Days a finished event (with its attempts) is kept, counted from when it finished; failed ones
# longer, so support can still look at them. Never below 8 (pimsync.retention.MINIMUM_DAYS):
# redelivery dedupe needs the event ids of the last week. Purged daily (`purge_events`).
PIMSYNC_RETENTION_DAYS = env_int("PIMSYNC_RETENTION_DAYS", 30)
PIMSYNC_RETENTION_FAILED_DAYS = env_int("PIMSYNC_RETENTION_FAILED_DAYS", 90)

# Sandbox (`pimsync.sandbox`): with no AEM_AUTHOR_URL pimsync serves an AEM and IMS stand-in itself.
# It must never switch on by accident in production, so DEBUG off needs PIMSYNC_SANDBOX=1.
PIMSYNC_SANDBOX = env_bool("PIMSYNC_SANDBOX", default=not AEM_AUTHOR_URL and DEBUG)
PIMSYNC_PUBLIC_URL = env_str("PIMSYNC_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Why sandbox mode was asked for but refused (reported by the `pimsync.E007` system check).
PIMSYNC_SANDBOX_CONFLICT = ""
if PIMSYNC_SANDBOX:
    from pimsync.sandbox.defaults import apply_sandbox_defaults, sandbox_conflict

    PIMSYNC_SANDBOX_CONFLICT = sandbox_conflict(globals())
    if PIMSYNC_SANDBOX_CONFLICT:
        # Half a sandbox next to a real AEM (sandbox keys, sandbox client id) would accept forged
        # events or refuse real ones; run none of it and let the check stop every command.
        PIMSYNC_SANDBOX = False
    else:
        apply_sandbox_defaults(globals())

# --- django-q2 ------------------------------------------------------------------------------
# Our Event rows are the source of truth for attempts and retries; a django-q2 task carries no
# data, only "look at the rows", so a lost, repeated or late task never loses or doubles work.
# django-q2 is the transport: it never retries on its own, and failures are acknowledged.
# Each option below: what django-q2 does with it (as its `django_q.conf.Conf` says), then why
# this value. https://django-q2.readthedocs.io/en/master/configure.html lists them all.
Q_CLUSTER = {
    # The cluster's name; also the salt that signs queued tasks in the ORM broker and part of
    # the Redis keys, so every web and worker process of one deployment must share it.
    "name": "pimsync",
    # Worker processes per `qcluster`; each runs PIMSYNC_WORKER_THREADS enrichments at once.
    "workers": PIMSYNC_WORKERS,
    # Seconds a task may run before its worker is killed and replaced. A drain stops taking
    # new assets at half of it and hands over to a fresh task, so the kill stays a last resort.
    "timeout": PIMSYNC_TASK_TIMEOUT_SECONDS,
    # Seconds the ORM or Redis broker waits for a task's acknowledgement before handing it out
    # again. It must exceed `timeout`, or a task still running is handed out twice (the
    # `pimsync.E005` check says so); the minute above leaves room for the kill and the ack.
    "retry": PIMSYNC_TASK_TIMEOUT_SECONDS + 60,
    # Attempts per task before django-q2 gives up (0: forever). One: our rows decide retries,
    # with their own backoff and PIMSYNC_MAX_ATTEMPTS.
    "max_attempts": 1,
    # Acknowledge tasks that failed, removing them from the queue. A failed wake-up is not
    # worth redoing as such: the sweeper finds whatever it left in our rows.
    "ack_failures": True,
    # Successful tasks kept in django-q2's own table (failures are always kept). Our Attempt
    # rows are the history; these are only for a look at the transport in the admin.
    "save_limit": 200,
    # Tasks a worker process runs before it is replaced, releasing any memory it holds.
    # django-q2's default, written out so it is a choice.
    "recycle": 500,
    # Whether the scheduler runs every missed run of a schedule after downtime. The sweeper
    # (every minute) needs to run once on start-up, not once per minute the cluster was down.
    "catch_up": False,
    # Seconds between polls of the ORM broker for new tasks (the Redis broker blocks instead):
    # the delay a wake-up can wait for a worker when the database is the broker.
    "poll": 0.2,
    # The heading of django-q2's models in the admin.
    "label": "Task queue",
}
# The broker: Redis when PIMSYNC_BROKER_URL names one; otherwise the database itself, so a
# laptop or a small deployment needs nothing but the database.
if PIMSYNC_BROKER_URL:
    Q_CLUSTER["redis"] = PIMSYNC_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "pimsync.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain" if DEBUG else "json"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

# --- HTTPS ----------------------------------------------------------------------------------
# Standard Django settings, off by default (a laptop speaks plain http); docs/deployment.md "Run in production"
# lists the values that make `manage.py check --deploy` clean.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Load balancers and Prometheus usually probe the web nodes over plain http on the private network:
# a redirect would read as "down". Neither path takes credentials from a browser.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^healthz/ready$", r"^metrics$"]
# Anyone who reaches gunicorn directly can send `X-Forwarded-Proto: https`; trust it only when the
# operator says a proxy that sets it is the only way in.
PIMSYNC_TRUST_X_FORWARDED_PROTO = env_bool("PIMSYNC_TRUST_X_FORWARDED_PROTO", False)
if PIMSYNC_TRUST_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# `/metrics` asks for `Authorization: Bearer <token>` when this is set.
PIMSYNC_METRICS_TOKEN = env_str("PIMSYNC_METRICS_TOKEN")

# --- Alerts (pimsync.alerts.monitor): when something needs a person, tell one ---------------
# Thresholds, one per condition (docs/operations.md, "Alerts").
PIMSYNC_ALERT_FAILURES = env_int("PIMSYNC_ALERT_FAILURES", 10, minimum=0)
PIMSYNC_ALERT_FAILURES_MINUTES = env_int("PIMSYNC_ALERT_FAILURES_MINUTES", 15, minimum=1)
PIMSYNC_ALERT_DUE_MINUTES = env_int("PIMSYNC_ALERT_DUE_MINUTES", 15, minimum=1)
PIMSYNC_ALERT_SIGNATURE_FAILURES = env_int("PIMSYNC_ALERT_SIGNATURE_FAILURES", 20, minimum=0)
PIMSYNC_ALERT_UNREACHABLE_MINUTES = env_int("PIMSYNC_ALERT_UNREACHABLE_MINUTES", 10, minimum=1)
PIMSYNC_ALERT_JOURNAL_LAG_MINUTES = env_int("PIMSYNC_ALERT_JOURNAL_LAG_MINUTES", 15, minimum=1)
# Channels: e-mail to these addresses (Django's mail settings below), and a chat webhook that
# accepts {"text": ...} (Slack, Teams workflows, Mattermost), optionally HMAC-signed.
PIMSYNC_ALERT_EMAILS = env_list("PIMSYNC_ALERT_EMAILS")
PIMSYNC_ALERT_WEBHOOK_URL = env_str("PIMSYNC_ALERT_WEBHOOK_URL")
PIMSYNC_ALERT_WEBHOOK_SECRET = env_str("PIMSYNC_ALERT_WEBHOOK_SECRET")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "pimsync@localhost")
# A mail server that never answers must not hold the alert check past its task timeout.
EMAIL_TIMEOUT = PIMSYNC_HTTP_TIMEOUT_SECONDS
