"""Middleware: health probes answered whatever host they name, and 503 (never 500) without a database.

While the database cannot be reached, every page answers 503 with `Retry-After`, never a 500.

Adobe retries a webhook delivery on 5xx, so the 503 loses nothing; a browser or a load balancer
reads it as "try again shortly". A connection that broke underneath (the database restarted) is
replaced by Django's own health check at the start of the next request (`CONN_HEALTH_CHECKS`).
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse

from pimsync import operations

log = logging.getLogger(__name__)


class HealthProbeMiddleware:
    """Serve `/healthz` and `/healthz/ready` before anything validates the Host header.

    Load balancers and container health checks probe by IP address (`Host: 10.0.0.5:8000`), which
    `ALLOWED_HOSTS` rightly does not list; Django checks the host lazily, in the first
    `request.get_host()` (CommonMiddleware, CSRF), so answering here, before those run, accepts the
    probe without loosening the check anywhere else. Neither page reveals a secret or builds a URL
    from the host. Placed after SecurityMiddleware (whose redirect exempts these paths).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.probes = {"/healthz": operations.healthz, "/healthz/ready": operations.ready}

    def __call__(self, request: HttpRequest):
        probe = self.probes.get(request.path_info)
        if probe is not None:
            return probe(request)
        return self.get_response(request)


RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """Turn a lost database connection into 503 + Retry-After."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        """503 for OperationalError/InterfaceError (connection lost, server starting, locked)."""
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        # Only the class: the message may hold a host name or a user name.
        log.error("database unavailable (%s) for %s %s", type(exception).__name__, request.method, request.path)
        response = JsonResponse({"error": "pimsync cannot reach its database right now; try again shortly"}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
