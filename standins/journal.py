"""A loopback Adobe I/O Events Journaling API, written from Adobe's documentation
(https://developer.adobe.com/events/docs/guides/api/journaling-api/), independently of pimsync's client.

Positions are opaque strings; `Link` URIs are root-relative and carry the relations Adobe's SDK
fixtures show (adobe/aio-lib-events, test/mock.js: `journalResponseHeader200` / `204`): `next`
under `/events-fast/organizations/…` (not the journal's own `/events/…`), `validate` under
`/events-validate/…`, `events`, `count`, `latest`, `page`, `seek`; the end is a 204 with
`retry-after` whose `next` link repeats the position; a position older than the retention answers
410 with a plain-text body, as the journaling guide shows it. Adobe documents the `validate`
link but not its answers: here it reads like `since` (410 for an expired position).
`purged_answer = 204` plays the other reading, in which a purged position answers 204.

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
REGISTRATION = "/organizations/65454/integrations/84526/5a8d3f7b-0000-4000-8000-000000000001"
PATH = "/events" + REGISTRATION
FAST_PATH = "/events-fast" + REGISTRATION
VALIDATE_PATH = "/events-validate" + REGISTRATION


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
        self.paths: list[str] = []  # the path of every request, in order
        self.purged_answer = 410  # or 204: how an expired position answers
        self.link_lines = False  # True: one `Link` header per relation, as the journaling guide shows
        self.validations: list[dict] = []
        self.validate_status: int | None = None  # set: the validate link answers this, whatever the position
        self._lock = threading.Lock()
        server.expect_request(PATH, method="GET").respond_with_handler(self.handle)
        server.expect_request(FAST_PATH, method="GET").respond_with_handler(self.handle)
        server.expect_request(VALIDATE_PATH, method="GET").respond_with_handler(self.validate)

    @property
    def url(self) -> str:
        return self.server.url_for(PATH)

    def append(self, event: dict) -> None:
        with self._lock:
            self.entries.append((f"pos-{len(self.entries):06d}", event))

    def expire(self, count: int) -> None:
        self.expired = count

    def _link(self, path: str = FAST_PATH, **params) -> str:
        return f"<{self.link_prefix}{path}?{urlencode(params)}>" if params else f"<{self.link_prefix}{path}>"

    def _links(self, since: str | None, limit: int) -> list[tuple[str, str]]:
        """The `Link` relations of an answer read up to `since`, in test/mock.js's order."""
        position = {"since": since} if since else {}
        return [
            ("Link", f'{self._link(PATH)}; rel="events"'),
            ("Link", f'{self._link(FAST_PATH, **position, limit=limit)}; rel="next"'),
            ("Link", f'{self._link("/count" + REGISTRATION, **position)}; rel="count"'),
            ("Link", f'{self._link(PATH, latest="true")}; rel="latest"'),
            ("Link", f'<{self.link_prefix}{PATH}?since={{position}}&limit={{count}}>; rel="page"'),
            ("Link", f'<{self.link_prefix}{PATH}?seek={{duration}}&limit={{count}}>; rel="seek"'),
            ("Link", f'{self._link(VALIDATE_PATH, **position)}; rel="validate"'),
        ]

    def _headers(self, since: str | None, limit: int, **extra) -> list[tuple[str, str]]:
        links = self._links(since, limit)
        if not self.link_lines:  # the SDK fixture's form: one header, the relations comma-separated
            links = [("Link", ", ".join(value for _, value in links))]
        return links + list(extra.items())

    def validate(self, request: Request) -> Response:
        """The `validate` link: 410 for an expired position, else 200 (see the module docstring)."""
        self.validations.append(dict(request.args))
        if self.validate_status is not None:
            return Response("", status=self.validate_status)
        since = request.args.get("since", "")
        with self._lock:
            if since and int(since.removeprefix("pos-")) < self.expired:
                return Response(f"Events at position {since} have expired.", status=410, content_type="text/plain")
        return Response(json.dumps({"events": []}), status=200, content_type="application/json")

    def handle(self, request: Request) -> Response:
        args = request.args
        self.requests.append(dict(args))
        self.paths.append(request.path)
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
            if index < self.expired and self.purged_answer == 410:
                # The journaling guide's "Fetching expired events": 410 Gone, a plain-text body.
                text = f"Events at position {args['since']} have expired."
                return Response(text, status=410, content_type="text/plain")
            if index < self.expired:  # the other reading: a purged position looks like the end
                return Response(
                    status=204, headers=self._headers(args["since"], limit, **{"retry-after": self.retry_after})
                )
            start = index + 1
        else:  # no position (or seek, which this stub treats as "the oldest available")
            start = self.expired
        chunk = self.entries[start : start + limit]
        if not chunk:
            since = self.entries[start - 1][0] if start else None
            return Response(status=204, headers=self._headers(since, limit, **{"retry-after": self.retry_after}))
        last = chunk[-1][0]
        body = {"events": [{"position": p, "event": e} for p, e in chunk], "_page": {"last": last, "count": len(chunk)}}
        return Response(
            json.dumps(body),
            status=200,
            headers=self._headers(last, limit),
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
