"""The one place pimsync makes outbound HTTP calls: one client module per external system
(`aem`, `ims`, `pim`), all over this small base.

Every client goes through `request()`: a total deadline on every call (connecting, the status
line, the headers and the body together) and a cap on the answer's size, one keep-alive session
per thread, a host allow-list built from the configured base URLs (nothing is ever sent to a host
taken from an event), one error type that says whether trying again later can help, and URLs in
messages with their credentials blanked out.
"""

from __future__ import annotations

import functools
import heapq
import logging
import os
import socket
import threading
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings
from django.utils import timezone
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers, get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pimsync.outbound import headers as header_block
from pimsync.outbound import throttle
from pimsync.outbound.redaction import origin, redact_url

# Statuses worth another try later: rate limiting, timeouts and server faults (but not
# "505 HTTP Version Not Supported" or "501 Not Implemented", which will not change).
RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
BODY_EXCERPT_CHARS = 2000
# A product, an asset's metadata, a token or a public key is a few kilobytes; an answer this big
# is a fault (or an attack) and must not be held in a worker's memory.
MAX_BODY_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 64 * 1024

_local = threading.local()
log = logging.getLogger(__name__)


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


def allowed_origins() -> frozenset[str]:
    """Scheme://host:port of every base URL pimsync is configured to talk to."""
    urls = (
        settings.AEM_AUTHOR_URL,
        settings.ADOBE_IMS_TOKEN_URL,
        settings.ADOBE_EVENTS_KEY_BASE_URL,
        settings.PIM_BASE_URL,
        # Alerts are posted there; only when configured.
        settings.PIMSYNC_ALERT_WEBHOOK_URL,
        settings.ADOBE_JOURNAL_URL,
    )
    return _origins_of(urls)


@functools.lru_cache(maxsize=16)
def _origins_of(urls: tuple[str, ...]) -> frozenset[str]:
    """The origins of `urls`, parsed once per set of settings (every outbound call asks)."""
    # Read by the parser `requests` connects with (`origin`), so an allowed origin is where the call goes.
    return frozenset({origin(url) for url in urls if url} - {""})


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host and port, as `requests` reads them."""
    return origin(url) == origin(other)


class _Watchdog:
    """One thread per process that ends the calls whose deadline has passed.

    A timer thread per call cost a thread's start and end on every PIM and AEM call (about a tenth
    of a worker's CPU per asset in a py-spy profile); this thread sleeps until the earliest
    deadline instead. A call that ends in time is only marked done and dropped when its deadline
    comes up. A forked child (django-q2's workers) starts over with a lock and a thread of its
    own (`os.register_at_fork`): the parent's lock may have been held by another thread at the fork.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._count = 0
        self._wake = threading.Condition()
        self._running = False

    def watch(self, deadline: _Deadline) -> None:
        with self._wake:
            if not self._running:
                # Marked running only once started: a failed start is tried again by the next call.
                threading.Thread(target=self._run, name="pimsync-http-deadlines", daemon=True).start()
                self._running = True
            self._count += 1
            heapq.heappush(self._heap, (deadline.at, self._count, deadline))
            if self._heap[0][2] is deadline:  # earlier than what the thread sleeps until
                self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    try:
                        heapq.heappop(self._heap)[2].expire()
                    except Exception:  # this thread must outlive any one call's failure
                        log.exception("could not end an outbound call at its deadline")
                self._wake.wait(self._heap[0][0] - now if self._heap else None)


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog._reset)


class _Deadline:
    """Ends a call at its deadline, whatever stage it is in.

    A socket timeout bounds each read, not the call: a server that sends one byte every second
    never trips it. So at the deadline the watchdog shuts the connection's socket down; the
    blocked read returns at once and the call ends with a timeout. The connection classes below
    tell the deadline of the calling thread which socket it is using."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._connection = None
        self._socket = None
        self._lock = threading.Lock()

    def __enter__(self) -> _Deadline:
        _local.deadline = self
        _watchdog.watch(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _local.deadline = None
        with self._lock:
            self._done = True
        if self.expired and self._connection is not None:
            # Never hand a half-read connection back for the next call.
            self._connection.close()
        # The watchdog keeps this object until its deadline: not the connection and its socket.
        self._connection = self._socket = None

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch_socket(self, sock) -> None:
        """The plain socket of a new connection, before any TLS handshake on it."""
        with self._lock:
            self._socket = sock
            if self.expired:
                _shut(sock)

    def watch(self, connection) -> None:
        with self._lock:
            self._connection = connection
            # Kept apart from the connection: an answer without a length is read until the
            # server closes, and http.client detaches such a socket from its connection.
            self._socket = connection.sock or self._socket
            if self.expired:
                _shut(self._socket)

    def expire(self) -> None:
        """The deadline has passed: shut the socket of a call still running (the watchdog calls it)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            _shut(self._socket)


def _shut(sock) -> None:
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for TLS: it wakes a reader blocked in another thread
        # without touching the TLS state that thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError):
        pass


def _watched(connection) -> None:
    deadline = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


class _Watched:
    """Mixin for urllib3's connections: report the socket to this thread's deadline whenever it
    connects, sends or waits for an answer (a pooled connection is reused without connecting)."""

    def _new_conn(self):
        # The TCP socket as soon as it exists, so that a TLS handshake dripped byte by byte is
        # under the deadline too (`connect` reports the wrapped socket only after the handshake).
        sock = super()._new_conn()
        deadline = getattr(_local, "deadline", None)
        if deadline is not None:
            deadline.watch_socket(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _watched(self)

    def request(self, *args, **kwargs):
        _watched(self)
        return super().request(*args, **kwargs)

    def getresponse(self, *args, **kwargs):
        _watched(self)
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Watched, HTTPConnection):
    response_class = header_block.Response  # the answer's headers read without the e-mail parser


class _HTTPSConnection(_Watched, HTTPSConnection):
    response_class = header_block.Response


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter with three steps of each call made cheaper for the only way pimsync calls:
    no proxy, no client certificate, the system's CA bundle, no cookies kept. Finding the pool
    (parsing the URL again and building urllib3's pool key), the path (looking for a proxy first)
    and building the answer (a cookie jar filled from every answer) were a fifth of the adapter's
    CPU per call in a py-spy profile of the worker. A call through a proxy, with a client
    certificate or another CA bundle finds its pool and path by requests' own steps; no answer
    fills a cookie jar."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        # Each thread has its own session and so its own adapter: no lock needed.
        self._pools: dict[str, HTTPConnectionPool] = {}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies or cert is not None or verify is not True:
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        # A prepared URL is "scheme://authority/path…": the pool is the authority's.
        key = request.url[: request.url.find("/", request.url.find("//") + 2)]
        # Held here until close(): a pool the manager drops (past its ten) is not closed by it
        # (urllib3 2 closes pools when they are collected), so it serves on.
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, cert=cert)
        return pool

    def request_url(self, request, proxies) -> str:
        if proxies:
            return super().request_url(request, proxies)
        # requests' own without a proxy: the path, a leading "//" made one "/".
        url = request.path_url
        return f"/{url.lstrip('/')}" if url.startswith("//") else url

    def build_response(self, req, resp) -> requests.Response:
        # requests' own, less the cookie jar: no peer of pimsync needs a cookie it set.
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        super().close()
        self._pools.clear()


def session() -> requests.Session:
    """This thread's keep-alive session."""
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
        # Proxies from the environment would route loopback stubs and AEM alike through
        # whatever the shell had set; pimsync talks to its configured hosts directly.
        _local.session.trust_env = False
        for prefix in ("http://", "https://"):
            _local.session.mount(prefix, _Adapter())
    return _local.session


# The headers `requests.Session` adds to every request (User-Agent, Accept, Accept-Encoding,
# Connection), sent as before; a caller's header of the same name wins.
_DEFAULT_HEADERS = tuple(default_headers().items())


def _send(
    method: str, url: str, timeout: float, *, headers=None, data=None, json=None, params=None, auth=None, verify=True
):
    """One request through this thread's keep-alive adapter, without `Session.request`'s merging
    of session settings, environment, cookies and hooks, none of which pimsync uses (trust_env is
    off, redirects are not followed, and no peer needs a cookie it set, so none is kept from one
    call to the next): that merging was a third of each call's CPU in a py-spy profile of the
    worker. The answer is left unread (streamed)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, params)
    merged = CaseInsensitiveDict(_DEFAULT_HEADERS)
    merged.update(headers or {})
    prepared.prepare_headers(merged)
    prepared.prepare_body(data, None, json)
    if auth is not None or "@" in prepared.url:
        # Credentials, given or in the URL, as Basic auth (requests' step reads the URL again
        # for them on every call, which was 3% of a call's CPU, to find none).
        prepared.prepare_auth(auth, url)
    adapter = session().get_adapter(prepared.url)
    return adapter.send(prepared, stream=True, timeout=timeout, verify=verify, cert=None, proxies={})


# A Retry-After longer than this is taken as this: a server's answer must not park work for years.
RETRY_AFTER_CAP_SECONDS = 24 * 3600


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds, at most a day: delta-seconds or an HTTP date (RFC 9110 §10.2.3);
    None for anything else (the header comes from a server we do not control)."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return float(min(int(value), RETRY_AFTER_CAP_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone said; Python leaves it naive
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - timezone.now()).total_seconds()), RETRY_AFTER_CAP_SECONDS)


def request(
    method: str,
    url: str,
    *,
    expected: tuple[int, ...] = (200,),
    error_class: str = "http",
    timeout: float | None = None,
    pause_key: str | None = None,
    **kwargs,
) -> requests.Response:
    """Send one request to an allowed host within `timeout` seconds in total (default
    PIMSYNC_HTTP_TIMEOUT_SECONDS); raise HttpError unless the status is expected.

    With a `pause_key` (the system: "aem", "pim"…) the call honours the pause every process shares
    (`pimsync.outbound.throttle`): while the system's pause runs nothing is sent (a retryable
    `<key>_paused` error says for how long), and a 429 answer pauses the system for its
    Retry-After (`throttle.DEFAULT_SECONDS` without one)."""
    if origin(url) not in allowed_origins():
        raise HttpError(
            f"refusing to call {origin(url) or 'an unreadable URL'}: not one of the configured hosts",
            retryable=False,
            error_class="config",
        )
    timeout = min(timeout or settings.PIMSYNC_HTTP_TIMEOUT_SECONDS, settings.PIMSYNC_HTTP_TIMEOUT_SECONDS)
    call = _Call(method, url)
    if pause_key:
        refuse_while_paused(pause_key, call)
    deadline = _Deadline(timeout)
    try:
        with deadline:
            response = _send(method, url, timeout, **kwargs)
            _read_body(response, deadline, call, error_class)
    except requests.RequestException as exc:
        if deadline.passed() or isinstance(exc, requests.Timeout):
            raise HttpError(
                f"{call} timed out after {timeout}s", retryable=True, error_class=f"{error_class}_timeout"
            ) from None
        raise HttpError(
            f"{call} failed: {type(exc).__name__}", retryable=True, error_class=f"{error_class}_unreachable"
        ) from None
    if response.status_code not in expected:
        error = _unexpected(str(call), response, error_class)
        if pause_key and response.status_code == 429:
            _pause(pause_key, error)
        raise error
    return response


class _Call:
    """A call as messages name it, `METHOD <URL with its secrets redacted>`, made when first shown:
    every call has one and few are shown (redacting each URL was 1–2% of a worker's CPU)."""

    __slots__ = ("method", "url", "text")

    def __init__(self, method: str, url: str) -> None:
        self.method, self.url, self.text = method, url, ""

    def __str__(self) -> str:
        if not self.text:
            self.text = f"{self.method} {redact_url(self.url)}"
        return self.text


def refuse_while_paused(pause_key: str, call: str | _Call) -> None:
    """Raise the retryable `<key>_paused` error while the system's pause runs (`call`: what is not sent)."""
    left, until = throttle.remaining(pause_key)
    if left:
        raise HttpError(
            f"{call} not sent: {throttle.label(pause_key)} asked to slow down (429); "
            f"no calls until {until:%H:%M:%S} UTC",
            retryable=True,
            retry_after=left,
            error_class=f"{pause_key}_paused",
        )


def _pause(pause_key: str, error: HttpError) -> None:
    """Pause every call to the system for the 429's Retry-After (already capped), or the default;
    the error's own event waits as long."""
    seconds = error.retry_after if error.retry_after is not None else throttle.DEFAULT_SECONDS
    throttle.extend(pause_key, seconds, reason=error.message)
    error.retry_after = seconds


def _unexpected(call: str, response: requests.Response, error_class: str) -> HttpError:
    """The error for an answer whose status the caller did not expect (RETRYABLE_STATUSES may be retried)."""
    return HttpError(
        f"{call} answered {response.status_code}",
        retryable=response.status_code in RETRYABLE_STATUSES,
        status=response.status_code,
        body=response.text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        error_class=f"{error_class}_{response.status_code}",
    )


def _read_body(response: requests.Response, deadline: _Deadline, call: _Call, error_class: str) -> None:
    """Read the whole answer into `response.content`, up to MAX_BODY_BYTES and the deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        response.close()
        raise _too_large(call, error_class)
    chunks, size = [], 0
    for chunk in response.iter_content(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            response.close()
            raise _too_large(call, error_class)
        if deadline.passed():
            raise requests.Timeout(str(call))
        chunks.append(chunk)
    if deadline.passed():
        # The deadline shut the socket: what arrived may look complete but is cut short.
        raise requests.Timeout(str(call))
    response._content = b"".join(chunks)


def _too_large(call: _Call, error_class: str) -> HttpError:
    return HttpError(
        f"{call} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MB",
        retryable=False,
        error_class=f"{error_class}_too_large",
    )


def json_object(response: requests.Response, *, who: str, error_class: str, retryable: bool) -> dict:
    """The response's JSON object, or an HttpError saying the system answered something else.
    JSON nested deeper than Python's recursion limit is such an answer too (never retried: the
    same request would get the same answer)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    except RecursionError:
        raise HttpError(
            f"{who} answered with JSON nested too deeply to read",
            retryable=False,
            status=response.status_code,
            body=response.text[:1000],
            error_class=error_class,
        ) from None
    if not isinstance(body, dict):
        raise HttpError(
            f"{who} answered with something that is not a JSON object",
            retryable=retryable,
            status=response.status_code,
            body=response.text,
            error_class=error_class,
        )
    return body
