"""A loopback Akeneo PIM, written from Akeneo's public REST API documentation
(https://api.akeneo.com/api-reference-index.html), independently of pimsync's client.

Mount it on a pytest-httpserver (`AkeneoStub(server)`; a threaded one to see concurrent calls)
and use it as a catalog:

    akeneo = AkeneoStub(server)                      # 7.x / SaaS: the UUID endpoints
    akeneo = AkeneoStub(server, uuid_api=False)      # 6.x: only /products/{code}
    akeneo.add_attribute("color", "pim_catalog_simpleselect", options={"red": {"en_US": "Red"}})
    akeneo.add_product("SKU-1", {"name": [{"locale": "en_US", "scope": None, "data": "Boot"}]})
    akeneo.product("SKU-1")                          # the stored product (values, uuid, updated)
    akeneo.faults.add("GET", 429, headers={"Retry-After": "30"})
    akeneo.serve("PATCH", 422, akeneo_examples.UNKNOWN_DATA)  # an answer exactly as Akeneo documents it
    akeneo.requests                                  # every call: (method, path, query, json body)

What it implements:
- `POST /api/oauth/v1/token`: Basic client id/secret, JSON (or form) body; the password grant
  and the refresh grant (which rotates the refresh token). Tokens expire after `expires_in`
  seconds of the stub's clock (`advance(seconds)`); `revoke_refresh_tokens()` makes refresh fail
  with 422, as an expired one does. Wrong client → 422, wrong user or password → 422.
- Products by UUID (`/products-uuid`, `/products-uuid/{uuid}`) and by code (`/products/{code}`):
  the identifier `IN` search, the `updated >` search with `search_after` pages, option labels
  (`linked_data`) with `with_attribute_options=true`, PATCH that updates (204) or, for a product
  that does not exist, creates it (201) as Akeneo does.
- An `updated` value not written "YYYY-MM-DD hh:mm:ss" is refused (422), as Akeneo does;
  `before_list` edits products between the pages of a poll.
- `/attributes` in pages of `limit` (offset pagination with `_links.next`).
- `latency` seconds on every API call, with `max_in_flight` counting the most calls answered at once.
- `event_platform_headers()`, `legacy_headers()`: Akeneo's change notifications signed as it
  documents, for a test or the benchmark to post to `/webhooks/akeneo`.
- `serve(...)`: the next call of a method (and path) answered with a given status, headers and body
  text, byte for byte: Akeneo's published examples (`standins/akeneo_examples.py`). A token served
  this way is honoured like one the stub issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid as uuid_module
from collections import deque
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlencode

from werkzeug import Request, Response

from standins import akeneo_examples
from standins.answers import Faults, InFlight, json_response

IDENTIFIER = "sku"
START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def _error(status: int, message: str, **extra) -> Response:
    return json_response(status, {"code": status, "message": message, **extra})


class AkeneoStub:
    """Akeneo's REST API for one Connection (CLIENT_ID, SECRET, USERNAME, PASSWORD)."""

    CLIENT_ID = "1_akeneo-client-id"
    SECRET = "akeneo-client-secret"
    USERNAME = "pimsync_1234"
    PASSWORD = "akeneo-user-password"

    def __init__(self, server, *, uuid_api: bool = True, identifier: str = IDENTIFIER) -> None:
        self.server = server
        self.uuid_api = uuid_api
        self.identifier = identifier
        self.products: dict[str, dict] = {}  # by uuid
        self.attributes: list[dict] = []
        self.options: dict[str, dict[str, dict]] = {}  # attribute -> option code -> labels
        self.faults = Faults()
        self._served: deque = deque()  # (method, path or None, status, body text, headers)
        self.requests: list[tuple[str, str, dict, object]] = []
        self.raw_requests: list[Request] = []  # as received: headers and body bytes
        self.token_grants: list[str] = []  # grant_type of every successful token request
        self.expires_in = 3600
        self.latency = 0.0
        self.next_base = ""  # where `_links.next` points ("": this server); another host tests the client
        self.in_flight = InFlight()
        self.now = START  # the stub's clock: product `updated` times and token expiry
        self.zone = UTC  # the server's time zone: `updated` is written (and filtered) in it
        # Run one each, in order, before a product list is answered: someone editing products
        # while a poll pages through them (None: nothing happens before that list).
        self.before_list: list = []
        self._access: dict[str, datetime] = {}
        self._refresh: set[str] = set()
        self._issued = 0
        self._lock = threading.Lock()
        self.add_attribute(identifier, "pim_catalog_identifier", labels={"en_US": "SKU"})
        server.expect_request(re.compile(r"^/api/.*")).respond_with_handler(self.handle)

    # --- the catalog ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def add_attribute(self, code: str, type: str, *, options: dict | None = None, **fields) -> dict:
        """An attribute (`fields`: localizable, scopable, labels, decimals_allowed, metric_family…)."""
        attribute = {"code": code, "type": type, "localizable": False, "scopable": False, "labels": {}, **fields}
        self.attributes.append(attribute)
        if options:
            self.options[code] = options
        return attribute

    def add_product(self, identifier: str, values: dict | None = None, *, uuid: str | None = None, **fields) -> dict:
        """A product whose identifier attribute holds `identifier`; returns it as stored."""
        uuid = uuid or str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, identifier))
        values = {**(values or {}), self.identifier: [{"locale": None, "scope": None, "data": identifier}]}
        stamp = self._stamp()
        product = {
            "uuid": uuid,
            "enabled": True,
            "family": fields.pop("family", "shoes"),
            "categories": [],
            "groups": [],
            "parent": None,
            "values": values,
            "created": stamp,
            "updated": stamp,
            **fields,
        }
        with self._lock:
            self.products[uuid] = product
        return product

    def add_sample_catalog(self) -> dict:
        """Attributes of every common type and one product using them all ("SKU-SAMPLE"): a
        localizable text, a scopable and localizable description, a price collection, a metric, a
        simple and a multi select with labels, a boolean. Returns the product as stored."""
        self.add_attribute("name", "pim_catalog_text", localizable=True, labels={"en_US": "Name", "de_DE": "Name"})
        self.add_attribute("description", "pim_catalog_textarea", localizable=True, scopable=True)
        self.add_attribute("price", "pim_catalog_price_collection", decimals_allowed=True, labels={"en_US": "Price"})
        self.add_attribute("weight", "pim_catalog_metric", metric_family="Weight", decimals_allowed=True)
        self.add_attribute("color", "pim_catalog_simpleselect", options={"red": {"en_US": "Red", "de_DE": "Rot"}})
        self.add_attribute(
            "sizes", "pim_catalog_multiselect", options={"s": {"en_US": "Small"}, "m": {"en_US": "Medium"}}
        )
        self.add_attribute("waterproof", "pim_catalog_boolean")
        return self.add_product(
            "SKU-SAMPLE",
            {
                "name": [
                    {"locale": "en_US", "scope": None, "data": "Trail boot"},
                    {"locale": "de_DE", "scope": None, "data": "Wanderschuh"},
                ],
                "description": [
                    {"locale": "en_US", "scope": "ecommerce", "data": "A boot for the trail."},
                    {"locale": "en_US", "scope": "print", "data": "Boot."},
                ],
                "price": [
                    {
                        "locale": None,
                        "scope": None,
                        "data": [{"amount": "49.90", "currency": "EUR"}, {"amount": "54.00", "currency": "USD"}],
                    }
                ],
                "weight": [{"locale": None, "scope": None, "data": {"amount": "1.2000", "unit": "KILOGRAM"}}],
                "color": [{"locale": None, "scope": None, "data": "red"}],
                "sizes": [{"locale": None, "scope": None, "data": ["s", "m"]}],
                "waterproof": [{"locale": None, "scope": None, "data": True}],
            },
        )

    def product(self, identifier: str) -> dict | None:
        """The stored product with this identifier (as the stub holds it, without linked_data)."""
        return next((p for p in self.products.values() if self._identifier_of(p) == identifier), None)

    def set_value(self, identifier: str, attribute: str, data, locale=None, scope=None) -> None:
        """Someone edits a product in Akeneo: the value changes and so does `updated`."""
        with self._lock:
            product = self.product(identifier)
            others = [v for v in product["values"].get(attribute, []) if (v["locale"], v["scope"]) != (locale, scope)]
            product["values"][attribute] = [*others, {"locale": locale, "scope": scope, "data": data}]
            product["updated"] = self._stamp()

    def advance(self, seconds: float) -> None:
        """Move the stub's clock (token expiry, `updated` of later changes)."""
        self.now += timedelta(seconds=seconds)

    def revoke_refresh_tokens(self) -> None:
        self._refresh.clear()

    def revoke_access_tokens(self) -> None:
        self._access.clear()

    def serve(
        self, method: str, status: int, body: str | None = None, headers: dict | None = None, *, path: str | None = None
    ) -> None:
        """Answer the next `method` call (to `path`, "/api/…?query" or without the query; any path
        when None) with `status`, `headers` and `body` exactly as given, in the order served."""
        self._served.append((method, path, status, body, headers or {}))

    def calls(self, method: str | None = None, path: str = "") -> int:
        """How many API calls (not token requests) had this method and a path starting with `path`."""
        return sum(
            1
            for m, p, _, _ in self.requests
            if (method is None or m == method) and p.startswith(path) and not p.startswith("/api/oauth")
        )

    def patches(self) -> list[tuple[str, dict]]:
        """(path, body) of every PATCH that was answered 201 or 204."""
        return [(p, body) for m, p, q, body in self.requests if m == "PATCH" and q.get("_answered") in (201, 204)]

    # --- the HTTP side -----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """One call: counted, maybe delayed or faulted, then routed."""
        request.get_data()  # kept: `raw_requests` shows the bytes as sent
        self.raw_requests.append(request)
        body = self._body(request)
        entry = (
            request.method,
            request.path,
            {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()},
            body,
        )
        self.requests.append(entry)
        with self.in_flight.answering(self.latency):
            response = self._answer(request, body)
        entry[2]["_answered"] = response.status_code
        return response

    @property
    def max_in_flight(self) -> int:
        """The most calls answered at once."""
        return self.in_flight.most

    def _answer(self, request: Request, body) -> Response:
        served = self._take_served(request)
        if served:
            return served
        fault = self.faults.take(request.method)
        if fault:
            status, headers, delay = fault
            time.sleep(delay)
            return json_response(status, {"code": status, "message": "injected"}, headers)
        if request.path == "/api/oauth/v1/token" and request.method == "POST":
            return self._token(request, body)
        if not self._authorized(request):
            return _error(401, "Authentication is required")
        return self._route(request, body)

    def _take_served(self, request: Request) -> Response | None:
        wanted = (None, request.path, request.full_path.rstrip("?"))
        with self._lock:
            found = next((s for s in self._served if s[0] == request.method and s[1] in wanted), None)
            if found is None:
                return None
            self._served.remove(found)
        _method, _path, status, body, headers = found
        if request.path == "/api/oauth/v1/token" and status == 200:
            issued = json.loads(body)
            with self._lock:
                self._access[issued["access_token"]] = self.now + timedelta(seconds=issued["expires_in"])
                self._refresh.add(issued["refresh_token"])
        kind = {"Content-Type": "application/json"} if body is not None else {}
        return Response(body, status=status, headers={**kind, **headers})

    @staticmethod
    def _body(request: Request):
        raw = request.get_data()
        if not raw:
            return None
        if request.mimetype == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def _route(self, request: Request, body) -> Response:
        path, method = request.path, request.method
        if path == "/api/rest/v1/attributes" and method == "GET":
            return self._attributes(request)
        match = re.fullmatch(r"/api/rest/v1/(products-uuid|products)(?:/([^/]+))?", path)
        if not match or (match[1] == "products-uuid" and not self.uuid_api):
            return _error(404, "Resource not found")
        by_uuid, ref = match[1] == "products-uuid", unquote(match[2]) if match[2] else None
        if ref is None and method == "GET":
            return self._list(request, by_uuid)
        if ref is not None and method == "GET":
            return self._get(request, by_uuid, ref)
        if ref is not None and method == "PATCH":
            return self._patch(request, body, by_uuid, ref)
        return _error(405, "Method not allowed")

    # --- authentication ------------------------------------------------------------------------

    def _token(self, request: Request, body) -> Response:
        basic = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.CLIENT_ID}:{self.SECRET}".encode()).decode()
        if basic != f"Basic {expected}":
            return _error(422, 'Parameter "client_id" is missing or does not match any client, or secret is invalid')
        body = body if isinstance(body, dict) else {}
        grant = body.get("grant_type")
        if grant == "password":
            if body.get("username") != self.USERNAME or body.get("password") != self.PASSWORD:
                return _error(422, "No user found for the given username and password")
        elif grant == "refresh_token":
            with self._lock:
                if body.get("refresh_token") not in self._refresh:
                    return _error(422, "Refresh token is invalid or has expired")
                self._refresh.discard(body["refresh_token"])  # rotated: the old one is spent
        else:
            return _error(422, "Parameter grant_type is missing or invalid")
        return self._issue(grant)

    def _issue(self, grant: str) -> Response:
        with self._lock:
            self._issued += 1
            access, refresh = f"akeneo-access-{self._issued}", f"akeneo-refresh-{self._issued}"
            self._access[access] = self.now + timedelta(seconds=self.expires_in)
            self._refresh.add(refresh)
            self.token_grants.append(grant)
        return json_response(
            200,
            {
                "access_token": access,
                "expires_in": self.expires_in,
                "token_type": "bearer",
                "scope": None,
                "refresh_token": refresh,
            },
        )

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("Authorization", "")
        expiry = self._access.get(auth[7:]) if auth.startswith("Bearer ") else None
        return expiry is not None and expiry > self.now

    # --- products ------------------------------------------------------------------------------

    def _identifier_of(self, product: dict) -> str:
        for value in product["values"].get(self.identifier, []):
            return value["data"]
        return ""

    def _shown(self, product: dict, request: Request, by_uuid: bool) -> dict:
        """The product as the API answers it: with `uuid` or with `identifier`, maybe `linked_data`."""
        shown = json.loads(json.dumps(product))
        if not by_uuid:
            shown.pop("uuid")
            shown = {"identifier": self._identifier_of(product), **shown}
            shown["values"].pop(self.identifier, None)  # 6.x holds it in `identifier`, not in values
        # A test may store a product whose values are not an object, to see a client survive it.
        if request.args.get("with_attribute_options") == "true" and isinstance(shown["values"], dict):
            for code, values in shown["values"].items():
                for value in values:
                    self._link(code, value)
        shown["_links"] = {"self": {"href": self.url + request.path}}
        return shown

    def _link(self, code: str, value: dict) -> None:
        options = self.options.get(code)
        if not options:
            return
        data = value["data"]
        if isinstance(data, str):
            value["linked_data"] = {"attribute": code, "code": data, "labels": options.get(data, {})}
        elif isinstance(data, list):
            value["linked_data"] = {c: {"attribute": code, "code": c, "labels": options.get(c, {})} for c in data}

    def _find(self, by_uuid: bool, ref: str) -> dict | None:
        if by_uuid:
            return self.products.get(ref)
        return self.product(ref)

    def _get(self, request: Request, by_uuid: bool, ref: str) -> Response:
        product = self._find(by_uuid, ref)
        if product is None:
            return _error(404, f'Product "{ref}" does not exist or you do not have permission to access it.')
        return json_response(200, self._shown(product, request, by_uuid))

    def _list(self, request: Request, by_uuid: bool) -> Response:
        try:
            limit = int(request.args.get("limit", "10"))
            search = json.loads(request.args.get("search", "{}"))
        except ValueError:
            return _error(400, "Search query parameter should be valid JSON.")
        if limit > 100:
            return _error(422, "You cannot request more than 100 items.")
        refused = self._bad_time(search)
        if refused:
            return refused
        if self.before_list:
            edit = self.before_list.pop(0)
            if edit:
                edit()
        matches = sorted((p for p in self.products.values() if self._matches(p, search)), key=self._order(by_uuid))
        after = request.args.get("search_after")
        if after:
            matches = [p for p in matches if self._order(by_uuid)(p) > after]
        page = matches[:limit]
        body = {
            "_links": {"self": {"href": self.url + request.full_path}},
            "_embedded": {"items": [self._shown(p, request, by_uuid) for p in page]},
        }
        if len(matches) > limit and request.args.get("pagination_type") == "search_after":
            query = {**request.args.to_dict(), "search_after": self._order(by_uuid)(page[-1])}
            body["_links"]["next"] = {"href": f"{self.next_base or self.url}{request.path}?{urlencode(query)}"}
        return json_response(200, body)

    @staticmethod
    def _bad_time(search: dict) -> Response | None:
        """Akeneo's 422 for an `updated` value not written "YYYY-MM-DD hh:mm:ss" (ISO's T and Z too)."""
        for condition in search.get("updated", []):
            value = condition.get("value")
            if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", value):
                return _error(
                    422,
                    f'Property "updated" expects a string with the format "yyyy-mm-dd H:i:s" as data, "{value}" given.',
                )
        return None

    def _order(self, by_uuid: bool):
        return (lambda p: p["uuid"]) if by_uuid else self._identifier_of

    def _matches(self, product: dict, search: dict) -> bool:
        for field, conditions in search.items():
            for condition in conditions:
                if field == "updated" and condition["operator"] == ">":
                    if product["updated"][:19].replace("T", " ") <= condition["value"]:
                        return False
                elif field == self.identifier and condition["operator"] == "IN":
                    if self._identifier_of(product) not in condition["value"]:
                        return False
                else:
                    raise ValueError(f"the stub does not filter on {field} {condition['operator']}")
        return True

    def _patch(self, request: Request, body, by_uuid: bool, ref: str) -> Response:
        if request.mimetype != "application/json":
            return _error(415, "The Content-Type header is missing or not application/json.")
        if not isinstance(body, dict) or not isinstance(body.get("values"), dict):
            return _error(400, "Invalid json message received")
        with self._lock:
            product = self._find(by_uuid, ref)
            created = product is None
        if created:  # Akeneo's PATCH creates a product that does not exist
            product = self.add_product(ref if not by_uuid else f"created-{ref}", uuid=ref if by_uuid else None)
        errors = [a for a in body["values"] if not any(x["code"] == a for x in self.attributes)]
        if errors:
            return _error(
                422,
                "Validation failed.",
                errors=[
                    {
                        "property": "values",
                        "message": f"The {errors[0]} attribute does not exist in your PIM.",
                        "attribute": errors[0],
                    }
                ],
            )
        with self._lock:
            for code, values in body["values"].items():
                product["values"][code] = [v for v in values if v.get("data") not in (None, "")]
                if not product["values"][code]:
                    del product["values"][code]
            product["updated"] = self._stamp()
        return json_response(201 if created else 204)

    # --- attributes ----------------------------------------------------------------------------

    def _attributes(self, request: Request) -> Response:
        limit = min(int(request.args.get("limit", "10")), 100)
        page = max(1, int(request.args.get("page", "1")))
        items = self.attributes[(page - 1) * limit : page * limit]
        body = {
            "_links": {"self": {"href": self.url + request.full_path}},
            "current_page": page,
            "_embedded": {
                "items": [
                    {**a, "_links": {"self": {"href": f"{self.url}/api/rest/v1/attributes/{a['code']}"}}} for a in items
                ]
            },
        }
        if page * limit < len(self.attributes):
            query = urlencode({"limit": limit, "page": page + 1})
            body["_links"]["next"] = {"href": f"{self.next_base or self.url}/api/rest/v1/attributes?{query}"}
        return json_response(200, body)

    def _stamp(self) -> str:
        """The stub's clock as Akeneo writes `updated`; every change is a second later than the last."""
        self.now += timedelta(seconds=1)
        return self.now.astimezone(self.zone).isoformat()


# --- what Akeneo sends: change notifications, signed as documented ---------------------------------


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def event_platform_headers(body: bytes, primary: str, secondary: str | None = None) -> dict[str, str]:
    """The headers of an Event Platform delivery of `body`: the hex HMAC-SHA256 of the body with the
    primary secret, with the secondary one "if you have one", and the algorithm
    (https://api.akeneo.com/event-platform/concepts.html). The content type of a structured-mode
    CloudEvent; Akeneo does not document which it sends."""
    headers = {
        "Content-Type": "application/cloudevents+json",
        akeneo_examples.SIGNATURE_PRIMARY: _hex_hmac(primary, body),
        akeneo_examples.SIGNATURE_ALGORITHM: akeneo_examples.ALGORITHM,
    }
    if secondary:
        headers[akeneo_examples.SIGNATURE_SECONDARY] = _hex_hmac(secondary, body)
    return headers


def legacy_headers(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The headers of a legacy Events API request: JSON, the hex HMAC-SHA256 of "<timestamp>.<body>"
    and the timestamp in seconds (https://api.akeneo.com/events-documentation/security.html)."""
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        "User-Agent": akeneo_examples.LEGACY_USER_AGENT,
        akeneo_examples.REQUEST_SIGNATURE: _hex_hmac(secret, stamp.encode() + b"." + body),
        akeneo_examples.REQUEST_TIMESTAMP: stamp,
    }
