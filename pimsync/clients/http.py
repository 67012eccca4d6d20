"""The one place pimsync makes outbound HTTP calls (STYLE habit 5).

Every client goes through `request()`: a timeout on every call, one keep-alive session per thread,
a host allow-list built from the configured base URLs (nothing is ever sent to a host taken
from an event), and one error type that says whether trying again later can help.
"""

from __future__ import annotations

import threading
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils import timezone

# Statuses worth another try later: rate limiting, timeouts and server faults (but not
# "505 HTTP Version Not Supported" or "501 Not Implemented", which will not change).
RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
BODY_EXCERPT_CHARS = 2000

_local = threading.local()


class HttpError(Exception):
    """An outbound call that did not give the answer we needed."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        error_class: str = "http",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.body = body[:BODY_EXCERPT_CHARS]
        self.retry_after = retry_after
        self.error_class = error_class


def allowed_origins() -> set[str]:
    """Scheme://host:port of every base URL pimsync is configured to talk to."""
    urls = (
        settings.AEM_AUTHOR_URL,
        settings.ADOBE_IMS_TOKEN_URL,
        settings.ADOBE_EVENTS_KEY_BASE_URL,
        settings.PIM_BASE_URL,
    )
    return {_origin(url) for url in urls if url}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def session() -> requests.Session:
    """This thread's keep-alive session."""
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
        # Proxies from the environment would route loopback stubs and AEM alike through
        # whatever the shell had set; pimsync talks to its configured hosts directly.
        _local.session.trust_env = False
    return _local.session


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def request(
    method: str,
    url: str,
    *,
    expected: tuple[int, ...] = (200,),
    error_class: str = "http",
    timeout: float | None = None,
    **kwargs,
) -> requests.Response:
    """Send one request to an allowed host; raise HttpError unless the status is expected."""
    if _origin(url) not in allowed_origins():
        raise HttpError(
            f"refusing to call {_origin(url)}: not one of the configured hosts",
            retryable=False,
            error_class="config",
        )
    timeout = timeout or settings.PIMSYNC_HTTP_TIMEOUT_SECONDS
    try:
        response = session().request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise HttpError(
            f"{method} {url} timed out after {timeout}s", retryable=True, error_class=f"{error_class}_timeout"
        ) from None
    except requests.RequestException as exc:
        raise HttpError(
            f"{method} {url} failed: {type(exc).__name__}", retryable=True, error_class=f"{error_class}_unreachable"
        ) from None
    if response.status_code not in expected:
        raise HttpError(
            f"{method} {url} answered {response.status_code}",
            retryable=response.status_code in RETRYABLE_STATUSES,
            status=response.status_code,
            body=response.text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            error_class=f"{error_class}_{response.status_code}",
        )
    return response


def json_object(response: requests.Response, *, who: str, error_class: str, retryable: bool) -> dict:
    """The response's JSON object, or an HttpError saying the system answered something else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HttpError(
            f"{who} answered with something that is not a JSON object",
            retryable=retryable,
            status=response.status_code,
            body=response.text,
            error_class=error_class,
        )
    return body
