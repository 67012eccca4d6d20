"""Settings for pimsync, read from the environment (and a `.env` file in the project root).

Every variable is listed in SPEC §2 and the README. Misconfiguration never crashes the import:
it is reported by the system checks in `pimsync/checks.py` and on the dashboard.
"""

import os
import re
from pathlib import Path

import dj_database_url
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
# A real environment variable wins over the .env file. Tests skip the file so that a developer's
# real credentials can never leak into a test run.
if os.environ.get("PIMSYNC_READ_DOTENV", "1") != "0":
    load_dotenv(BASE_DIR / ".env", override=False)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        # Reported by the `pimsync.E002` system check instead of crashing the import.
        return default


def env_list(name: str, default: str = "") -> list[str]:
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

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    # No per-request health check: it is one more round trip on the webhook's hot path. A connection
    # broken by a database restart fails one request (503, which Adobe retries) and is replaced.
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=False)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share one SQLite file: WAL lets readers run beside the
    # writer, and IMMEDIATE transactions take the write lock up front instead of failing with
    # "database is locked" half-way (django-q2#144).
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
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

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

AEM_AUTHOR_URL = env_str("AEM_AUTHOR_URL").rstrip("/")


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

# --- Pipeline -------------------------------------------------------------------------------
PIMSYNC_MAX_ATTEMPTS = env_int("PIMSYNC_MAX_ATTEMPTS", 8)
PIMSYNC_RETRY_BASE_SECONDS = env_int("PIMSYNC_RETRY_BASE_SECONDS", 30)
PIMSYNC_RETRY_MAX_SECONDS = env_int("PIMSYNC_RETRY_MAX_SECONDS", 3600)
PIMSYNC_TASK_TIMEOUT_SECONDS = env_int("PIMSYNC_TASK_TIMEOUT_SECONDS", 120)
# Outbound HTTP timeout per call (connect, read) in seconds.
PIMSYNC_HTTP_TIMEOUT_SECONDS = env_int("PIMSYNC_HTTP_TIMEOUT_SECONDS", 15)
# Adobe batches hold at most 20 events / 2 MB (PROTOCOLS §1.4).
PIMSYNC_WEBHOOK_MAX_BYTES = env_int("PIMSYNC_WEBHOOK_MAX_BYTES", 2 * 1024 * 1024)
PIMSYNC_WEBHOOK_MAX_EVENTS = 20
PIMSYNC_BROKER_URL = env_str("PIMSYNC_BROKER_URL")
# A drain that runs dry keeps polling this long before it ends; while it does, webhooks need not
# queue wake-ups of their own (see pimsync.tasks.drain_will_poll).
PIMSYNC_DRAIN_LINGER_SECONDS = float(os.environ.get("PIMSYNC_DRAIN_LINGER_SECONDS") or 3)
PIMSYNC_WORKERS = env_int("PIMSYNC_WORKERS", 2)
# Assets each worker process enriches at once (threads; the work waits on PIM and AEM). SQLite
# allows one writer at a time, so the embedded default keeps it low.
PIMSYNC_WORKER_THREADS = env_int(
    "PIMSYNC_WORKER_THREADS", 2 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 16
)

# --- Retention ------------------------------------------------------------------------------
# Days a finished event (with its attempts) is kept, counted from when it finished; failed ones
# longer, so support can still look at them. Never below 8 (pimsync.retention.MINIMUM_DAYS):
# redelivery dedupe needs the event ids of the last week. Purged daily (`purge_events`).
PIMSYNC_RETENTION_DAYS = env_int("PIMSYNC_RETENTION_DAYS", 30)
PIMSYNC_RETENTION_FAILED_DAYS = env_int("PIMSYNC_RETENTION_FAILED_DAYS", 90)

# Sandbox (SPEC §7-§8): with no AEM_AUTHOR_URL pimsync serves an AEM and IMS stand-in itself.
# It must never switch on by accident in production, so DEBUG off needs PIMSYNC_SANDBOX=1.
PIMSYNC_SANDBOX = env_bool("PIMSYNC_SANDBOX", default=not AEM_AUTHOR_URL and DEBUG)
PIMSYNC_PUBLIC_URL = env_str("PIMSYNC_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
if PIMSYNC_SANDBOX:
    from pimsync.sandbox_defaults import apply_sandbox_defaults

    apply_sandbox_defaults(globals())

# --- django-q2 ------------------------------------------------------------------------------
# Our Event rows are the source of truth for attempts and retries (STYLE habit 4); django-q2 is
# the transport. So django-q2 never retries on its own (max_attempts=1), failures are
# acknowledged, and `retry` stays above `timeout` so a running task is never handed out twice.
Q_CLUSTER = {
    "name": "pimsync",
    "workers": PIMSYNC_WORKERS,
    "timeout": PIMSYNC_TASK_TIMEOUT_SECONDS,
    "retry": PIMSYNC_TASK_TIMEOUT_SECONDS + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 200,
    "recycle": 500,
    "catch_up": False,
    "poll": 0.2,
    "label": "Task queue",
}
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
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
