"""The Akeneo PIM REST API (https://api.akeneo.com/api-reference-index.html) as a PIM connector.

- Connection: a Connection's client id and secret, and its API user's name and password, give an
  access token and a refresh token (https://api.akeneo.com/documentation/authentication.html).
  Both live encrypted in the shared `AccessToken` row "akeneo" (`tokens.SharedToken`): one
  renewal at a time for all processes, a refresh before expiry, the password again when the
  refresh token stopped working, one renewal and one retry after a 401.
- Lookup: 7.x and SaaS find a product by its identifier attribute on the UUID endpoints; 6.x has
  only `/products/{code}`. Which one the server has is found out once per process (the UUID list
  answering 404 means 6.x), never configured.
- Every call goes through `_call`: at most MAX_IN_FLIGHT at once from all processes on every node
  together (Akeneo allows 4 concurrent calls per Connection:
  https://api.akeneo.com/documentation/good-practices.html; `pimsync.outbound.slots`), the wait
  for a free slot counted in the call's deadline, and after a 429 no call from any process for as
  long as its Retry-After says (the shared "akeneo" pause, `pimsync.outbound.throttle`).
- A refusal says what Akeneo said: the messages of a 422's `errors` list, or its top-level
  `message` when it has no list (https://api.akeneo.com/documentation/responses.html shows both).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from django.conf import settings

from pimsync.outbound import http
from pimsync.outbound.redaction import UnsafeLink, follow, redact_url
from pimsync.outbound.slots import Slots
from pimsync.outbound.tokens import SharedToken
from pimsync.pim.connectors import ChangedPage, ConfigurationError, Connector, key_segment

log = logging.getLogger(__name__)

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"
# Renew this long before Akeneo says the token expires (tokens last an hour by default).
EXPIRY_MARGIN = timedelta(minutes=5)
MAX_IN_FLIGHT = 4
PAGE_SIZE = 100  # the largest `limit` Akeneo accepts (above: 422)
# The attribute list is read at most this often per process, and at most this much of it.
ATTRIBUTES_CACHE_SECONDS = 600
MAX_ATTRIBUTE_PAGES = 50
# Polling asks for products changed after the previous pass started less this: `updated` and the
# `Date` header both count whole seconds (what the overlap brings again is skipped by pimsync.pim.poll).
POLL_OVERLAP = timedelta(seconds=1)
AKENEO_TIME = "%Y-%m-%d %H:%M:%S"  # the only format the `updated` filter accepts

# Akeneo's calls in flight, counted across every process (the token requests too).
_in_flight = Slots("akeneo", MAX_IN_FLIGHT)
# The name of Akeneo's pause after a 429, shared by every process (`pimsync.outbound.throttle`).
PAUSE = "akeneo"
_state: dict = {"style": {}, "attributes": {}}
_state_lock = threading.Lock()

CREDENTIALS = ("AKENEO_CLIENT_ID", "AKENEO_SECRET", "AKENEO_USERNAME", "AKENEO_PASSWORD")


def missing_settings() -> list[str]:
    """The variables the connector needs that are not set, by name."""
    names = ["PIM_BASE_URL", *CREDENTIALS]
    return [name for name in names if not getattr(settings, name)]


# --- the connection ---------------------------------------------------------------------------


def _fetch_token(previous: dict | None) -> tuple[dict, int]:
    """A token pair: by the stored refresh token when there is one that still works, else by password."""
    missing = missing_settings()
    if missing:
        raise ConfigurationError(f"PIM_CONNECTOR=akeneo needs {', '.join(missing)}")
    if previous and previous.get("refresh_token"):
        try:
            return _grant({"grant_type": "refresh_token", "refresh_token": previous["refresh_token"]})
        except http.HttpError as exc:
            if exc.status not in (400, 401, 422):
                raise
            # Revoked, expired (14 days by default) or issued for other credentials.
            log.info("Akeneo refused the stored refresh token (%s); asking with the password", exc.status)
    try:
        return _grant(
            {"grant_type": "password", "username": settings.AKENEO_USERNAME, "password": settings.AKENEO_PASSWORD}
        )
    except http.HttpError as exc:
        if exc.status in (400, 401, 403, 422):
            raise _credentials_error(exc) from None
        raise


def _grant(body: dict) -> tuple[dict, int]:
    pair = f"{settings.AKENEO_CLIENT_ID}:{settings.AKENEO_SECRET}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(pair).decode(), "Accept": "application/json"}
    url = settings.PIM_BASE_URL + TOKEN_PATH
    deadline = time.monotonic() + settings.PIMSYNC_HTTP_TIMEOUT_SECONDS
    with _in_flight.held(deadline, f"POST {redact_url(url)}"):
        response = http.request(
            "POST", url, json=body, headers=headers, error_class="pim", pause_key=PAUSE, timeout=_left(deadline)
        )
    answer = http.json_object(response, who="Akeneo's token endpoint", error_class="pim_bad_response", retryable=True)
    token, refresh = answer.get("access_token"), answer.get("refresh_token")
    if not isinstance(token, str) or not token:
        raise http.HttpError(
            "Akeneo's token endpoint answered without an access_token", retryable=True, error_class="pim"
        )
    try:
        expires_in = max(60, int(answer.get("expires_in", 3600)))
    except (TypeError, ValueError):
        expires_in = 3600
    return {"access_token": token, "refresh_token": refresh if isinstance(refresh, str) else ""}, expires_in


def _credentials_error(exc: http.HttpError) -> http.HttpError:
    """Which setting Akeneo refused, in words, without any secret (nor Akeneo's body verbatim)."""
    said = _akeneo_message(exc.body).lower()
    if "client" in said or "secret" in said:
        which = "AKENEO_CLIENT_ID and AKENEO_SECRET (the Connection's client id and secret)"
    elif "user" in said or "password" in said:
        which = "AKENEO_USERNAME and AKENEO_PASSWORD (the Connection's API user)"
    else:
        which = ", ".join(CREDENTIALS)
    return http.HttpError(
        f"Akeneo refused the Connection's credentials ({exc.status}): check {which}",
        retryable=False,
        status=exc.status,
        error_class="pim_credentials",
    )


def _akeneo_message(body: str) -> str:
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return message if isinstance(message, str) else ""


_token = SharedToken("akeneo", _fetch_token, margin=EXPIRY_MARGIN)


def access_token() -> str:
    """The Connection's access token (shared by every process; `manage.py doctor` asks for it)."""
    return _token.get()


def forget() -> None:
    """Drop what this process remembers (token, API style, attributes): tests, or new credentials."""
    _token.forget()
    with _state_lock:
        _state.update(style={}, attributes={})


# --- every call -------------------------------------------------------------------------------


def _call(method: str, path_or_url: str, *, expected: tuple[int, ...] = (200,), **kwargs):
    """One authenticated call to Akeneo: under the in-flight limit, not while a 429's pause runs
    (not even a token renewal), and renewed-and-retried once after a 401 (a token revoked or
    expired early)."""
    url = path_or_url if path_or_url.startswith(("http://", "https://")) else settings.PIM_BASE_URL + path_or_url
    headers = kwargs.pop("headers", {})
    http.refuse_while_paused(PAUSE, f"{method} {redact_url(url)}")
    token = _token.get()
    try:
        return _send(method, url, token, headers, expected, kwargs)
    except http.HttpError as exc:
        if exc.status != 401:
            raise
    _token.invalidate(token)  # revoked, or expired early on Akeneo's side: renewed once for all processes
    return _send(method, url, _token.get(), headers, expected, kwargs)


def _send(method: str, url: str, token: str, headers: dict, expected: tuple[int, ...], kwargs: dict):
    """One call under the in-flight limit; its deadline (`timeout`, at most the HTTP timeout)
    covers the wait for a free slot. A 4xx says what Akeneo said."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **headers}
    kwargs = dict(kwargs)
    seconds = min(
        kwargs.pop("timeout", None) or settings.PIMSYNC_HTTP_TIMEOUT_SECONDS, settings.PIMSYNC_HTTP_TIMEOUT_SECONDS
    )
    deadline = time.monotonic() + seconds
    try:
        with _in_flight.held(deadline, f"{method} {redact_url(url)}"):
            return http.request(
                method,
                url,
                headers=headers,
                expected=expected,
                error_class="pim",
                pause_key=PAUSE,
                timeout=_left(deadline),
                **kwargs,
            )
    except http.HttpError as exc:
        said = refusal(exc.body) if exc.status and 400 <= exc.status < 500 else ""
        if said:
            exc.message = f"{exc.message}: {said}"
            exc.args = (exc.message,)
        raise


def _left(deadline: float) -> float:
    """What is left of a call's deadline after waiting for its slot (a little at least: a timeout
    of 0 would mean the default)."""
    return max(0.001, deadline - time.monotonic())


REFUSAL_CHARS = 300


def refusal(body: str) -> str:
    """What Akeneo said in an error body, as one line: the messages of its `errors` list (with the
    attribute each is about), or else its top-level `message` and documentation link; "" when the
    body says nothing readable. Both forms are Akeneo's own examples of a 422
    (https://api.akeneo.com/documentation/responses.html)."""
    try:
        document = json.loads(body)
    except (ValueError, TypeError, RecursionError):  # Akeneo's body, not ours
        return ""
    if not isinstance(document, dict):
        return ""
    errors = document.get("errors")
    said = []
    if isinstance(errors, list):
        for error in errors[:3]:
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                attribute = error.get("attribute")
                about = f" ({attribute})" if isinstance(attribute, str) and attribute else ""
                said.append(error["message"] + about)
    if not said and isinstance(document.get("message"), str):
        said.append(document["message"])
        link = _dig(document, "_links", "documentation", "href")
        if isinstance(link, str) and link.startswith(("https://", "http://")):
            said.append(f"see {link}")
    return re.sub(r"\s+", " ", "; ".join(said)).strip()[:REFUSAL_CHARS]


def _object(response, what: str) -> dict:
    return http.json_object(response, who=f"Akeneo ({what})", error_class="pim_bad_response", retryable=False)


def _dig(document: object, *names: str) -> object:
    """`document[names[0]][names[1]]…`, or None where a level is missing or not an object."""
    for name in names:
        document = document.get(name) if isinstance(document, dict) else None
    return document


def _next_link(body: dict) -> str | None:
    """`_links.next.href` as a URL on PIM_BASE_URL (only its path and query are taken); None for a
    link elsewhere, or one that another URL parser could read as elsewhere: it would get the token."""
    href = _dig(body, "_links", "next", "href")
    if not isinstance(href, str) or not href:
        return None
    try:
        return follow(href, settings.PIM_BASE_URL, settings.PIM_BASE_URL)
    except UnsafeLink as exc:
        log.warning("Akeneo's next page link is not followed: %s", exc)
        return None


def _items(body: dict) -> list[dict]:
    items = _dig(body, "_embedded", "items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


# --- which API the server has ---------------------------------------------------------------


def api_style() -> str:
    """ "uuid" (7.x, SaaS) or "code" (6.x), found out once per process: 6.x has no UUID endpoints."""
    style = _state["style"].get(settings.PIM_BASE_URL)
    if style:
        return style
    try:
        _call("GET", f"{API}/products-uuid?limit=1")
    except http.HttpError as exc:
        if exc.status != 404:
            raise
        return _remember_style("code")
    return _remember_style("uuid")


def _remember_style(style: str) -> str:
    with _state_lock:
        _state["style"][settings.PIM_BASE_URL] = style
    return style


def _search(criteria: dict) -> str:
    return json.dumps(criteria, separators=(",", ":"))


class AkeneoConnector(Connector):
    """Products, attributes and changes from Akeneo; the asset links written back (pimsync.pim.writeback)."""

    name = "akeneo"
    label = "Akeneo"
    writes_back = True
    polls = True

    def get_product(self, key: str) -> dict | None:
        """The product whose identifier is `key`, exactly as Akeneo answers it (with option labels)."""
        segment = key_segment(key)  # refuses "", "." and ".." for both styles
        if _state["style"].get(settings.PIM_BASE_URL) != "code":
            criteria = {settings.AKENEO_IDENTIFIER_ATTRIBUTE: [{"operator": "IN", "value": [key]}]}
            query = urlencode({"search": _search(criteria), "with_attribute_options": "true"})
            try:
                response = _call("GET", f"{API}/products-uuid?{query}")
            except http.HttpError as exc:
                # A list answering 404 is no list at all: a 6.x server (the first lookup finds out).
                if exc.status != 404 or _state["style"].get(settings.PIM_BASE_URL):
                    raise
                _remember_style("code")
            else:
                _remember_style("uuid")
                items = _items(_object(response, "product search"))
                return items[0] if items else None
        try:
            response = _call("GET", f"{API}/products/{segment}?with_attribute_options=true")
        except http.HttpError as exc:
            if exc.status == 404:
                return None
            raise
        return _object(response, "product")

    def get_product_by_uuid(self, uuid: str) -> dict | None:
        """The product with this UUID (7.x and SaaS), or None."""
        try:
            response = _call("GET", f"{API}/products-uuid/{key_segment(uuid)}?with_attribute_options=true")
        except http.HttpError as exc:
            if exc.status == 404:
                return None
            raise
        return _object(response, "product")

    def product_key(self, product: dict) -> str:
        """The product's identifier: the identifier attribute's value (UUID API) or `identifier` (6.x)."""
        for value in (product.get("values") or {}).get(settings.AKENEO_IDENTIFIER_ATTRIBUTE) or []:
            if isinstance(value, dict) and isinstance(value.get("data"), str):
                return value["data"]
        identifier = product.get("identifier")
        return identifier if isinstance(identifier, str) else ""

    def attributes(self) -> list[dict]:
        """Every attribute's code, type, localizable, scopable and labels (cached per process)."""
        base = settings.PIM_BASE_URL
        cached = _state["attributes"].get(base)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        found, url = [], f"{API}/attributes?limit={PAGE_SIZE}"
        for _page in range(MAX_ATTRIBUTE_PAGES):
            body = _object(_call("GET", url), "attributes")
            found.extend(_attribute(item) for item in _items(body) if isinstance(item.get("code"), str))
            url = _next_link(body)
            if not url:
                break
        with _state_lock:
            _state["attributes"][base] = (time.monotonic() + ATTRIBUTES_CACHE_SECONDS, found)
        return found

    def product_uuid(self, product: dict) -> str:
        """The product's uuid (7.x and SaaS; "" from 6.x, which has none)."""
        uuid = product.get("uuid")
        return uuid if isinstance(uuid, str) and len(uuid) <= 64 else ""

    def fingerprint_view(self, product: dict) -> dict:
        """The product without what changes when nothing pimsync maps from did: the time of the
        last change, the asset links pimsync writes itself, and `_links` (which a list item has and
        a single product may not)."""
        view = {name: value for name, value in product.items() if name not in ("updated", "_links")}
        if settings.PIM_ASSET_LINK_ATTRIBUTE and isinstance(product.get("values"), dict):
            values = dict(product["values"])
            values.pop(settings.PIM_ASSET_LINK_ATTRIBUTE, None)
            view["values"] = values
        return view

    def text_value(self, product: dict, attribute: str) -> str:
        """The attribute's value for no locale and no channel ("" when it has none)."""
        for value in (product.get("values") or {}).get(attribute) or []:
            if isinstance(value, dict) and value.get("locale") is None and value.get("scope") is None:
                data = value.get("data")
                return data if isinstance(data, str) else ""
        return ""

    def write_text(self, product: dict, attribute: str, text: str) -> None:
        """Set a text attribute of a product read just now. Only ever on a product just read:
        Akeneo's PATCH creates a product that does not exist."""
        if product.get("uuid"):
            path = f"{API}/products-uuid/{key_segment(product['uuid'])}"
        else:
            path = f"{API}/products/{key_segment(product.get('identifier') or '')}"
        body = {"values": {attribute: [{"locale": None, "scope": None, "data": text or None}]}}
        _call("PATCH", path, expected=(204,), json=body, headers={"Content-Type": "application/json"})

    def refusal(self, error: http.HttpError) -> str:
        """Akeneo's messages in the error's body (`refusal`)."""
        return refusal(error.body)

    def changed_since(self, cursor: dict) -> Iterator[ChangedPage]:
        """Pages of products changed since the cursor (`pimsync.pim.poll` saves each page's cursor)."""
        sweep = _Sweep(cursor if cursor.get("since") else _first_cursor(), self)
        while sweep.url:
            body = sweep.fetch()
            items = _items(body)
            keys = sweep.take(items)
            products = {self.product_key(item): item for item in items}
            yield ChangedPage(keys=keys, cursor=sweep.advance(_next_link(body)), products=products)


def _attribute(item: dict) -> dict:
    attribute = {
        "code": item["code"],
        "type": item.get("type", ""),
        "localizable": bool(item.get("localizable")),
        "scopable": bool(item.get("scopable")),
        "labels": item.get("labels") if isinstance(item.get("labels"), dict) else {},
    }
    for optional in ("decimals_allowed", "metric_family"):
        if item.get(optional) is not None:
            attribute[optional] = item[optional]
    return attribute


class _Sweep:
    """One pass over the products changed after `since`, page by page.

    The pages come in Akeneo's search_after order (by uuid), not by time: a product changed while
    the pass runs may sit on a page already read, while a later page holds products changed after
    it. So the next pass asks from the time this pass STARTED, less POLL_OVERLAP, never from the
    newest change seen. The start is the server's clock: the first page's `Date` header (our clock
    when it has none) less the time that call took, turned into the server's time zone by the
    offset of the `updated` values (the `updated` filter takes the server's wall-clock time).
    Until an offset was seen `since` stays where it is. Products changed in the overlap are
    handed on again; `pimsync.pim.poll` skips those whose data their assets already hold, so a
    second change in the same second is never taken for the first.
    """

    def __init__(self, cursor: dict, connector: AkeneoConnector) -> None:
        self.connector = connector
        self.since = cursor["since"]
        self.started = cursor.get("started") or ""  # the pass's start, UTC, ISO
        self.zone = cursor.get("zone")  # the server's offset from UTC in minutes (None: not seen yet)
        self.url = cursor.get("next") or self._first_url()

    def _first_url(self) -> str:
        path = "products-uuid" if api_style() == "uuid" else "products"
        query = urlencode(
            {
                "search": _search({"updated": [{"operator": ">", "value": self.since}]}),
                "pagination_type": "search_after",
                "limit": PAGE_SIZE,
                # As `get_product` reads them, so that their fingerprints compare (pimsync.pim.poll).
                "with_attribute_options": "true",
            }
        )
        return f"{API}/{path}?{query}"

    def fetch(self) -> dict:
        """The next page; the first one of a pass also says when the pass started."""
        started, response = _timed_get(self.url)
        self.started = self.started or started.isoformat()
        return _object(response, "changed products")

    def take(self, items: list[dict]) -> list[str]:
        """The keys of a page's products (and the server's time zone, from their `updated`)."""
        for item in items:
            offset = _offset_minutes(item.get("updated"))
            if offset is not None:
                self.zone = offset
                break
        return [key for key in map(self.connector.product_key, items) if key]

    def advance(self, next_url: str | None) -> dict:
        """The cursor once this page was handed on."""
        self.url = next_url
        if next_url:
            return {"since": self.since, "next": next_url, "started": self.started, "zone": self.zone}
        if self.zone is None or not self.started:
            return {"since": self.since}
        start = datetime.fromisoformat(self.started).astimezone(UTC).replace(tzinfo=None)
        since = start + timedelta(minutes=self.zone) - POLL_OVERLAP
        return {"since": _format(since), "zone": self.zone}


def _first_cursor() -> dict:
    """Where the very first poll starts: the server's time now, in its zone (told by one product's
    `updated`), less POLL_OVERLAP. Earlier changes are not polled. Our own clock in UTC could be
    hours ahead of a server's wall-clock time and skip every change made until it caught up; with
    no product to tell the zone, the earliest zone there is (UTC-12) is safe."""
    path = "products-uuid" if api_style() == "uuid" else "products"
    started, response = _timed_get(f"{API}/{path}?limit=1")
    items = _items(_object(response, "products"))
    zone = _offset_minutes(items[0].get("updated")) if items else None
    wall = started.astimezone(UTC).replace(tzinfo=None) + timedelta(minutes=-12 * 60 if zone is None else zone)
    return {"since": _format(wall - POLL_OVERLAP), "zone": zone}


def _timed_get(url: str):
    """(when the server began to answer, by its `Date` header, or our clock without one; the
    response). The call's duration is taken off, rounded up: `Date` is stamped as the answer leaves."""
    asked_at, clock = datetime.now(UTC), time.monotonic()
    response = _call("GET", url)
    took = timedelta(seconds=math.ceil(time.monotonic() - clock))
    return (_date_header(response) or asked_at) - took, response


def _format(moment: datetime) -> str:
    return moment.strftime(AKENEO_TIME)


def _date_header(response) -> datetime | None:
    """The server's clock from its `Date` header (always in GMT), or None."""
    try:
        moment = parsedate_to_datetime(response.headers.get("Date") or "")
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _offset_minutes(value: object) -> int | None:
    """The offset from UTC of Akeneo's `updated` ("2026-11-27T10:00:00+01:00" → 60), or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        offset = datetime.fromisoformat(value).utcoffset()
    except ValueError:
        return None
    return None if offset is None else int(offset.total_seconds() // 60)


# --- the overview's connection test -----------------------------------------------------------

CONNECTION_TEST_SECONDS = 300
_connection: dict = {"at": -1e9, "problem": None}


def connection_problem(*, cached: bool = True) -> str | None:
    """Why pimsync cannot use Akeneo now (None: a call just worked); the answer is kept
    CONNECTION_TEST_SECONDS per process, so a page that shows it does not call Akeneo each time."""
    if cached and time.monotonic() - _connection["at"] < CONNECTION_TEST_SECONDS:
        return _connection["problem"]
    try:
        _call("GET", f"{API}/attributes?limit=1", timeout=5)
        problem = None
    except ConfigurationError as exc:
        problem = str(exc)
    except http.HttpError as exc:
        problem = exc.message
    _connection.update(at=time.monotonic(), problem=problem)
    return problem


def forget_connection_test() -> None:
    _connection.update(at=-1e9, problem=None)
