"""WSGI entry point for gunicorn: `gunicorn pimsync.wsgi`.

Django's application, with Adobe's deliveries taken the short way (pimsync/webhook_shortcut.py).

gunicorn runs no system checks of its own, so a configuration that `manage.py check` reports as an
error (a sandbox beside a real AEM, an unreadable setting, retention below a week) would otherwise
half-work. The process refuses to start instead, naming each problem.
"""

import os

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pimsync.settings")
django_application = get_wsgi_application()

# Only now: the view it imports needs the app registry get_wsgi_application() set up.
from pimsync.webhook_shortcut import WebhookShortcut  # noqa: E402

application = WebhookShortcut(django_application)

_errors = [problem for problem in checks.run_checks() if problem.is_serious() and problem.id.startswith("pimsync.")]
if _errors:
    raise ImproperlyConfigured("pimsync refuses to start:\n" + "\n".join(str(problem) for problem in _errors))
