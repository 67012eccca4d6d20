"""WSGI entry point for gunicorn: `gunicorn pimsync.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pimsync.settings")
application = get_wsgi_application()
