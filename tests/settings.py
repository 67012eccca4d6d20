"""Test settings: pimsync's own settings with hermetic values, never a developer's `.env`."""

import hashlib
import os

os.environ["PIMSYNC_READ_DOTENV"] = "0"
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ["PIMSYNC_SANDBOX"] = "0"
for name in ("AEM_AUTHOR_URL", "PIM_BASE_URL", "PIMSYNC_BROKER_URL", "AEM_EVENT_SOURCE", "PIM_CONNECTOR"):
    os.environ.pop(name, None)

from pimsync.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
ADOBE_CLIENT_ID = "0123456789abcdef0123456789abcdef"  # the recipient client id of the events in tests/fixtures
ADOBE_CLIENT_SECRET = "test-client-secret"
AEM_EVENT_SOURCE = "acct:aem-p12345-e67890@adobe.com"
ADOBE_TECHNICAL_ACCOUNT_EMAIL = "0a1b2c3d-0000-4000-8000-000000000000@techacct.adobe.com"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_AUTOREFRESH = True  # no collectstatic before tests

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: tests that start real worker processes share the database with them.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}  # noqa: F405
    (BASE_DIR / "var").mkdir(exist_ok=True)  # noqa: F405
else:
    # One test database per checkout: suites of two checkouts on one server (a worktree beside
    # the main one) never drop each other's database mid-run.
    _checkout = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_checkout}"}  # noqa: F405
PIMSYNC_WORKER_THREADS = 0  # the drain runs inline, inside each test's transaction
PIMSYNC_DRAIN_LINGER_SECONDS = 0
