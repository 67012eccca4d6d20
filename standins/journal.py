"""A loopback Adobe I/O Events Journaling API, written from Adobe's documentation
(https://developer.adobe.com/events/docs/guides/api/journaling-api/), independently of pimsync's client.

Positions are opaque strings; `Link` URIs are root-relative; the end is a 204 with `retry-after`
and a `next` link equal to the request URI; a position older than the retention answers 410.

`JournalStub` is the whole contract for the tests (credentials, faults, retention), mounted on
pytest-httpserver; `ThreadedJournal` serves the drills' burst from a threaded server of its own:
only a bearer token checked, pages of 100, integer positions, the pages it served counted.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

from werkzeug import Request, Response

from standins.adobe import CLIENT_ID
from standins.answers import Faults
from standins.server import LoopbackServer, QuietHandler

ORG = "0A1B2C3D4E5F60718293A4B5@AdobeOrg"
PATH = "/events/organizations/65454/integrations/84526/5a8d3f7b-0000-4000-8000-000000000001"


class JournalStub:
    """The journal of one registration: `append(event)` adds to it, `expire(n)` drops the oldest n."""

    def __init__(self, server, ims, page_size: int = 3) -> None:
        self.server = server
        self.ims = ims
        self.page_size = page_size
        self.entries: list[tuple[str, dict]] = []
        self.expired = 0  # entries before this index are past the retention
        self.retry_after = "10"
        self.faults = Faults()
        self.link_prefix = ""  # e.g. "http://elsewhere.example" to send a link to another origin
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server.expect_request(PATH, method="GET").respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for(PATH)

    def append(self, event: dict) -> None:
        with self._lock:
            self.entries.append((f"pos-{len(self.entries):06d}", event))

    def expire(self, count: int) -> None:
        self.expired = count

    def _link(self, **params) -> str:
        return f"<{self.link_prefix}{PATH}?{urlencode(params)}>"

    def handle(self, request: Request) -> Response:
        args = request.args
        self.requests.append(dict(args))
        fault = self.faults.take("GET")
        if fault:
            return Response("", status=fault[0], headers=fault[1])
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.ims.valid(auth[7:]):
            return Response(json.dumps({"error": "unauthorized"}), status=401, content_type="application/json")
        if request.headers.get("x-api-key") != CLIENT_ID or request.headers.get("x-ims-org-id") != ORG:
            return Response(json.dumps({"error": "forbidden"}), status=403, content_type="application/json")
        with self._lock:
            return self._page(args)

    def _page(self, args) -> Response:
        limit = int(args.get("limit", self.page_size))
        if args.get("latest") == "true":
            start = len(self.entries)
        elif "since" in args:
            index = int(args["since"].removeprefix("pos-"))
            if index < self.expired:
                return Response(
                    json.dumps({"message": f"Events at position {args['since']} have expired"}),
                    status=410,
                    content_type="application/json",
                )
            start = index + 1
        else:  # no position (or seek, which this stub treats as "the oldest available")
            start = self.expired
        chunk = self.entries[start : start + limit]
        if not chunk:
            since = self.entries[start - 1][0] if start else None
            current = self._link(**({"since": since} if since else {}), limit=limit)
            return Response(
                status=204,
                headers={"retry-after": self.retry_after, "Link": f'{current}; rel="next", {current}; rel="validate"'},
            )
        last = chunk[-1][0]
        body = {"events": [{"position": p, "event": e} for p, e in chunk], "_page": {"last": last, "count": len(chunk)}}
        return Response(
            json.dumps(body),
            status=200,
            headers={"Link": f'{self._link(since=last, limit=limit)}; rel="next"'},
            content_type="application/vnd.adobecloud.events+json",
        )


class ThreadedJournal(LoopbackServer):
    """Every event of the burst, in order; `pages` counts what was served. Serves from the start."""

    PATH = "/events/organizations/drill/integrations/1/registration"
    PAGE = 100

    def __init__(self, events: list[dict]) -> None:
        self.events = events
        self.pages = {"200": 0, "204": 0, "401": 0}
        journal = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                journal.answer(self)

        super().__init__(Handler)
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PATH}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path, parts = self.PATH, urlsplit(handler.path)
        if parts.path != path or not handler.headers.get("Authorization", "").startswith("Bearer "):
            self.pages["401"] += 1
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        query = parse_qs(parts.query)
        start = int(query["since"][0]) + 1 if "since" in query else 0
        chunk = self.events[start : start + self.PAGE]
        if not chunk:
            self.pages["204"] += 1
            link = f"<{path}?{urlencode({'since': start - 1})}>" if start else f"<{path}>"
            handler.send_response(204)
            handler.send_header("retry-after", "1")
            handler.send_header("Link", f'{link}; rel="next"')
            handler.end_headers()
            return
        last = str(start + len(chunk) - 1)
        body = json.dumps(
            {
                "events": [{"position": str(start + i), "event": e} for i, e in enumerate(chunk)],
                "_page": {"last": last, "count": len(chunk)},
            }
        ).encode()
        self.pages["200"] += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.adobecloud.events+json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Link", f'<{path}?{urlencode({"since": last})}>; rel="next"')
        handler.end_headers()
        handler.wfile.write(body)
