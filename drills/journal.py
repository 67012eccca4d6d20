"""Loopback stand-ins for the webhook-down drill: a registration's I/O Events journal (root-relative
`Link` next, 204 + retry-after at the end; https://developer.adobe.com/events/docs/guides/api/journaling-api/)
and a front door that answers every webhook POST with 503, as a broken proxy or deploy would."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

PATH = "/events/organizations/drill/integrations/1/registration"
PAGE = 100


class _Server:
    def __init__(self, handler) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Journal(_Server):
    """Every event of the burst, in order; `pages` counts what was served."""

    def __init__(self, events: list[dict]) -> None:
        self.events = events
        self.pages = {"200": 0, "204": 0, "401": 0}
        journal = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the drill prints its own timeline
                pass

            def do_GET(self) -> None:
                journal.answer(self)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != PATH or not handler.headers.get("Authorization", "").startswith("Bearer "):
            self.pages["401"] += 1
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        query = parse_qs(parts.query)
        start = int(query["since"][0]) + 1 if "since" in query else 0
        chunk = self.events[start : start + PAGE]
        if not chunk:
            self.pages["204"] += 1
            link = f"<{PATH}?{urlencode({'since': start - 1})}>" if start else f"<{PATH}>"
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
        handler.send_header("Link", f'<{PATH}?{urlencode({"since": last})}>; rel="next"')
        handler.end_headers()
        handler.wfile.write(body)


class Down(_Server):
    """Answers every POST 503 after reading its body."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
