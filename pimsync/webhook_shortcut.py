"""Adobe's deliveries the short way through Django: `POST /webhooks/aem` goes straight to its view,
past the middleware that has nothing to do for it; every other request takes Django's whole stack.

On a single delivery Django's handler and its eleven middleware were a fifth of the web process's
CPU (py-spy, `python -m bench cpu`), as much as storing the event. The short way answers what
the long way answers, header for header (tests/test_webhook_shortcut.py compares the two):

- `request_started` and `request_finished` are sent as Django sends them: they look after the
  database connections (their age, their health).
- The host check, the refused user agents (CommonMiddleware) and the HTTPS redirect
  (SecurityMiddleware) run first. A request one of them turns away is handed to Django whole,
  before its body is read, so that answer is Django's own.
- The answer gets the headers SecurityMiddleware, XFrameOptionsMiddleware and CommonMiddleware
  give it, in Django's order.
- An exception goes to DatabaseUnavailableMiddleware (503 while the database is away), then to
  Django's own handling (logged, 500). 4xx and 5xx answers are logged as Django logs them.
- The request's Content-Type is parsed once per distinct value (`_DeliveryRequest`), as Django
  parses it: Adobe sends `application/cloudevents+json; charset=UTF-8` on every delivery, and
  Django reads a value with parameters through `email.message` each time (5% of a delivery's CPU).
- Skipped, because none of them acts on this view: static files, health probes, sessions, CSRF
  (the view is exempt), the user, messages. A multipart body takes the long way, where the
  upload limit answers it, and so does a request with cookies (Adobe sends none).
"""

from __future__ import annotations

import codecs
import functools
import logging

from django.conf import settings
from django.core import signals
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.http import parse_header_parameters
from django.utils.log import log_response

from pimsync.adobe.webhook import aem_webhook
from pimsync.middleware import DatabaseUnavailableMiddleware

log = logging.getLogger(__name__)

# The paths urls.py gives the webhook (with and without the slash).
PATHS = frozenset({"/webhooks/aem", "/webhooks/aem/"})

# Every middleware of settings.MIDDLEWARE, and what the short way does with it. A middleware added
# there does not see Adobe's deliveries until it is weighed here too (a test holds the two lists
# together).
MIDDLEWARE = {
    "django.middleware.security.SecurityMiddleware": "kept: the HTTPS redirect and the security headers",
    "whitenoise.middleware.WhiteNoiseMiddleware": "skipped: serves static files only",
    "pimsync.middleware.HealthProbeMiddleware": "skipped: answers the health probes' paths only",
    "django.contrib.sessions.middleware.SessionMiddleware": "skipped: the webhook has no session",
    "django.middleware.common.CommonMiddleware": "kept: the host check, refused user agents, Content-Length",
    "pimsync.middleware.UploadLimitMiddleware": "skipped: multipart bodies take the long way",
    "django.middleware.csrf.CsrfViewMiddleware": "skipped: the webhook is exempt (signed by Adobe)",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "skipped: the webhook has no user",
    "pimsync.middleware.LazyMessageMiddleware": "skipped: the webhook shows no messages",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "kept: X-Frame-Options",
    "pimsync.middleware.DatabaseUnavailableMiddleware": "kept: 503 while the database is away",
}


@functools.lru_cache(maxsize=16)
def _content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...], str | None]:
    """A Content-Type as `HttpRequest._set_content_type_params` reads it: the type, its parameters
    and the charset it names, if Python knows it. A few values recur; a sender cycling through
    new ones costs what Django's own parse costs, and the cache never holds more than 16."""
    content_type, params = parse_header_parameters(value)
    charset = params.get("charset")
    try:
        known = charset is not None and bool(codecs.lookup(charset))
    except LookupError:
        known = False
    return content_type, tuple(params.items()), charset if known else None


class _DeliveryRequest(WSGIRequest):
    """Django's request, its Content-Type parsed through `_content_type`."""

    def _set_content_type_params(self, meta) -> None:
        self.content_type, params, charset = _content_type(meta.get("CONTENT_TYPE", ""))
        self.content_params = dict(params)  # a dict of its own: a view may change it
        if charset is not None:
            self.encoding = charset


def _never_called(request):  # the middleware below are only asked for their hooks
    raise AssertionError("the webhook's short way calls the middleware's hooks, not the chain")


class WebhookShortcut:
    """A WSGI application: Adobe's deliveries the short way, the rest through `django_application`.

    While settings.MIDDLEWARE is not exactly the list weighed in `MIDDLEWARE` above, or a database
    wraps each request in a transaction (ATOMIC_REQUESTS), every request takes Django's whole
    stack: a middleware added later is never skipped unseen."""

    def __init__(self, django_application) -> None:
        self.django = django_application
        self.enabled = list(settings.MIDDLEWARE) == list(MIDDLEWARE) and not any(
            database.get("ATOMIC_REQUESTS") for database in settings.DATABASES.values()
        )
        if not self.enabled:
            log.warning(
                "Adobe's deliveries take Django's whole middleware stack: settings.MIDDLEWARE is not the "
                "list pimsync.webhook_shortcut has weighed, or ATOMIC_REQUESTS is on"
            )
        self.security = SecurityMiddleware(_never_called)
        self.common = CommonMiddleware(_never_called)
        self.frame = XFrameOptionsMiddleware(_never_called)
        self.database = DatabaseUnavailableMiddleware(_never_called)

    def takes(self, environ: dict) -> bool:
        """Whether the request goes the short way: a POST to the webhook, neither a multipart form
        (the upload limit answers that) nor one with cookies (the session and CSRF middleware
        answer stale ones; Adobe sends none)."""
        return (
            self.enabled
            and environ.get("REQUEST_METHOD") == "POST"
            and environ.get("PATH_INFO") in PATHS
            and not environ.get("CONTENT_TYPE", "").lstrip().lower().startswith("multipart/")
            and not environ.get("HTTP_COOKIE")
        )

    def __call__(self, environ: dict, start_response):
        if not self.takes(environ):
            return self.django(environ, start_response)
        as_given = environ.get("PATH_INFO"), environ.get("SCRIPT_NAME")
        set_script_prefix(get_script_name(environ))
        request = _DeliveryRequest(environ)
        try:
            turned_away = self.security.process_request(request) or self.common.process_request(request)
        except Exception:  # noqa: BLE001 (a wrong host, a refused agent…: Django answers it below)
            turned_away = True
        if turned_away:
            # Nothing read yet, so Django answers it all, from the environ as the server gave it
            # (WSGIRequest decoded its paths in place).
            environ["PATH_INFO"], environ["SCRIPT_NAME"] = as_given
            return self.django(environ, start_response)

        signals.request_started.send(sender=WSGIHandler, environ=environ)
        response = self._respond(request)
        response._handler_class = WSGIHandler  # the sender of request_finished, as Django's
        response._resource_closers.append(request.close)
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(status, headers)
        # The WSGI server calls response.close() once it has sent the answer: request_finished.
        return response

    def _respond(self, request: WSGIRequest):
        """The view's answer with the middleware's headers, as Django's handler would give it: an
        exception in the view or in a hook becomes the answer Django would make of it."""
        try:
            response = aem_webhook(request)
        except Exception as exc:  # noqa: BLE001 (what Django's handler does with any exception)
            response = self.database.process_exception(request, exc) or response_for_exception(request, exc)
        for hook in (self.frame.process_response, self.common.process_response, self.security.process_response):
            try:
                response = hook(request, response)
            except Exception as exc:  # noqa: BLE001 (as Django's wrapper around each middleware)
                response = response_for_exception(request, exc)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response
