"""Middleware: health probes answered whatever host they name, 503 (never 500) without a database,
413 for an upload larger than its page takes, before Django reads it, and the message storage
built only for a request that uses it.

While the database cannot be reached, every page answers 503 with `Retry-After`, never a 500.

Adobe retries a webhook delivery on 5xx, so the 503 loses nothing; a browser or a load balancer
reads it as "try again shortly". A connection that broke underneath (the database restarted) is
replaced by Django's own health check at the start of the next request (`CONN_HEALTH_CHECKS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject, empty

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
# What a multipart form adds to its file: the boundaries, each part's headers, the CSRF token and
# a checkbox or two.
FORM_OVERHEAD_BYTES = 64 * 1024


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


def upload_limit(max_bytes: int) -> Callable:
    """Mark a view as taking an upload of at most `max_bytes` (UploadLimitMiddleware reads the mark;
    the admin's view wrappers copy it)."""

    def mark(view):
        view.upload_limit = max_bytes
        return view

    return mark


class UploadLimitMiddleware:
    """Refuse a multipart body larger than its view takes (`upload_limit`; a view without the mark
    takes no file, so no more than DATA_UPLOAD_MAX_MEMORY_SIZE) before anything reads it.

    Django stores each file of a form it parses, in memory and above FILE_UPLOAD_MAX_MEMORY_SIZE in
    a temporary file, and only DATA_UPLOAD_MAX_MEMORY_SIZE bounds the rest of the form; the CSRF
    check parses the form before any view runs, so this middleware comes before it. The declared
    Content-Length is what Django reads, never more."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if request.content_type != "multipart/form-data":
            return None
        limit = getattr(view_func, "upload_limit", settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads nothing of a body whose length it cannot read
        if limit is None or length <= limit + FORM_OVERHEAD_BYTES:
            return None
        message = (
            f"This upload is {_megabytes(length)} MB; this page takes at most {_megabytes(limit)} MB. "
            "Nothing was stored."
        )
        return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


def _megabytes(size: int | float) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


class LazyMessageMiddleware(MessageMiddleware):
    """Django's MessageMiddleware with the message storage built on first use.

    Django builds it for every request (a cookie and a session store, and the cookie signer):
    4% of a webhook delivery's CPU in py-spy, for a request that never shows or adds a message.
    A storage nobody touched has nothing to save, so the response is left as it is."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)
