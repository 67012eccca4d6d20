"""The threaded loopback HTTP server the stand-ins run on outside the test suite (which mounts them
on pytest-httpserver instead): the standard library's, serving from a daemon thread.

Written once for the benchmark's and the drills' stand-ins (`standins.peers`, `standins.journal`).
`werkzeug_handler` serves stand-ins written as werkzeug handlers (the ones the tests mount) on it."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from werkzeug import Request, Response


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True  # a caller that never hangs up must not keep the process alive
    # A benchmark opens hundreds of connections at once; the default backlog (5) would refuse some.
    request_queue_size = 512


class LoopbackServer:
    """`handler` served on 127.0.0.1:`port` (0: a free one) by a thread per connection.

    `start()` (or `with`) serves, `close()` stops and frees the port for a later server.
    `quiet_errors`: no traceback when a handler fails, e.g. because its caller went away."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, *, quiet_errors: bool = False) -> None:
        self.httpd = _ThreadingServer(("127.0.0.1", port), handler)
        if quiet_errors:
            self.httpd.handle_error = lambda request, address: None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()  # the port is free again: a later server may take it

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing: the benchmark and the drills print their own timelines."""

    def log_message(self, *args) -> None:
        pass


def werkzeug_handler(answer: Callable[[Request], Response]) -> type[BaseHTTPRequestHandler]:
    """A keep-alive request handler turning each call into a werkzeug Request for `answer`.

    The standard library's server rather than werkzeug's: a third of werkzeug's CPU per call (on a
    2-core machine the stand-ins must not compete with the workers they serve)."""

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes: with Nagle's algorithm on, the body waits
        # for the client's delayed ACK of the headers (about 40 ms on Linux), on top of `latency`.
        disable_nagle_algorithm = True

        def serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = answer(Request(environ(self, body)))
            data = response.get_data()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = serve

    return Handler


def environ(handler: BaseHTTPRequestHandler, body: bytes) -> dict:
    """The WSGI environ of the call `handler` has read (headers, and `body`)."""
    path, _, query = handler.path.partition("?")
    env = {
        "REQUEST_METHOD": handler.command,
        "PATH_INFO": unquote(path).encode().decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(handler.server.server_address[1]),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
    }
    for name, value in handler.headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env
