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
- Skipped, because none of them acts on this view: static files, health probes, sessions, CSRF
  (the view is exempt), the user, messages. A multipart body takes the long way, where the
  upload limit answers it.
"""

from __future__ import annotations

from django.core import signals
from django.core.exceptions import DisallowedHost, PermissionDenied
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.log import log_response

from pimsync.adobe.webhook import aem_webhook
from pimsync.middleware import DatabaseUnavailableMiddleware

# The paths urls.py gives the webhook (with and without the slash).
PATHS = frozenset({"/webhooks/aem", "/webhooks/aem/"})


def _never_called(request):  # the middleware below are only asked for their hooks
    raise AssertionError("the webhook's short way calls the middleware's hooks, not the chain")


class WebhookShortcut:
    """A WSGI application: Adobe's deliveries the short way, the rest through `django_application`."""

    def __init__(self, django_application) -> None:
        self.django = django_application
        self.security = SecurityMiddleware(_never_called)
        self.common = CommonMiddleware(_never_called)
        self.frame = XFrameOptionsMiddleware(_never_called)
        self.database = DatabaseUnavailableMiddleware(_never_called)

    def __call__(self, environ: dict, start_response):
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or environ.get("PATH_INFO") not in PATHS
            or environ.get("CONTENT_TYPE", "").startswith("multipart/")
        ):
            return self.django(environ, start_response)
        set_script_prefix(get_script_name(environ))
        request = WSGIRequest(environ)
        try:
            turned_away = self.security.process_request(request) or self.common.process_request(request)
        except (DisallowedHost, PermissionDenied):
            turned_away = True
        if turned_away:
            return self.django(environ, start_response)  # nothing read yet: Django answers it all

        signals.request_started.send(sender=self.__class__, environ=environ)
        response = self._respond(request)
        response._resource_closers.append(request.close)
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(status, headers)
        # The WSGI server calls response.close() once it has sent the answer: request_finished.
        return response

    def _respond(self, request: WSGIRequest):
        """The view's answer with the middleware's headers, as Django's handler would give it."""
        try:
            response = aem_webhook(request)
        except Exception as exc:  # noqa: BLE001 (what Django's handler does with any exception)
            response = self.database.process_exception(request, exc) or response_for_exception(request, exc)
        response = self.frame.process_response(request, response)
        response = self.common.process_response(request, response)
        response = self.security.process_response(request, response)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response
