"""A loopback REST PIM: GET /products/{key} with a bearer token (pimsync's `rest` connector), with
fault injection, and `latency` seconds on every answer with `max_in_flight` counting the most
answered at once."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

from werkzeug import Request, Response

from standins.answers import Faults, InFlight, json_response


class PimStub:
    """GET /products/{key} with a bearer token, 404 for unknown keys."""

    TOKEN = "pim-token"

    def __init__(self, server) -> None:
        self.server = server
        self.products: dict[str, dict] = {}
        self.faults = Faults()
        self.calls: list[str] = []
        self.latency = 0.0
        self.in_flight = InFlight()
        server.expect_request(re.compile(r"^/products/.+$"), method="GET").respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    @property
    def max_in_flight(self) -> int:
        """The most calls answered at once."""
        return self.in_flight.most

    def handle(self, request: Request) -> Response:
        """The product for a key with the right bearer token; 401 or 404 otherwise."""
        with self.in_flight.answering(self.latency):
            return self._answer(request)

    def _answer(self, request: Request) -> Response:
        key = unquote(request.path[len("/products/") :])
        self.calls.append(key)
        fault = self.faults.take("GET")
        if fault:
            time.sleep(fault[2])
            if fault[0]:
                return json_response(fault[0], {"error": "injected"}, fault[1])
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return json_response(401, {"error": "unauthorized"})
        if key not in self.products:
            return json_response(404, {"error": f"no product {key}"})
        return json_response(200, self.products[key])
