"""`outbound-call`: CPU per outbound call in the calling thread, through `pimsync.outbound.http`
(what each PIM and AEM call of an enrichment runs), with the answer's headers read by pimsync's
reader and by the standard library's e-mail parser.

A GET of a product answered at once by a loopback server in a child process, with the headers an
HTTPS API commonly sends; the calling thread's own CPU clock, so neither the server nor the
machine's other work is counted and the figure holds on a busy machine."""

from __future__ import annotations

import http.client
import sys
import time

from django.test import override_settings

from bench.processes import free_port, wait_port
from bench.report import note, report
from pimsync.outbound import http as outbound

CALLS = 2_000
SERVER = """
import sys
import time
from werkzeug import Response
from standins.server import LoopbackServer, werkzeug_handler

BODY = b'{"SKUID": "SKU-1", "name": "Trail shoe", "attributes": {"colour": "red", "sizes": [40, 41, 42]}}'
HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "ETag": '"1a2b3c4d"',
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Request-Id": "5f0c6d0e-1d2b-4a8e-9b7f-3c2d1e0f9a8b",
    "Vary": "Accept-Encoding",
}


def answer(request):
    return Response(BODY, 200, HEADERS, content_type="application/json")


LoopbackServer(werkzeug_handler(answer), int(sys.argv[1])).start()
time.sleep(3600)
"""


def _microseconds_per_call(url: str) -> float:
    began = time.thread_time()
    for _ in range(CALLS):
        outbound.request("GET", url, error_class="pim").json()
    return (time.thread_time() - began) / CALLS * 1e6


def outbound_call(stack) -> None:
    port = free_port()
    stack.procs.start([sys.executable, "-c", SERVER, str(port)], {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."})
    wait_port(port)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/products/SKU-1"
    connections = (outbound._HTTPConnection, outbound._HTTPSConnection)
    ours = connections[0].response_class
    with override_settings(PIM_BASE_URL=base):
        for _ in range(200):  # the connection, the imports, the caches
            outbound.request("GET", url, error_class="pim")
        standard, pimsync = [], []
        try:
            for _ in range(3):  # alternated: the machine's speed drifts
                for connection in connections:
                    connection.response_class = http.client.HTTPResponse
                standard.append(_microseconds_per_call(url))
                for connection in connections:
                    connection.response_class = ours
                pimsync.append(_microseconds_per_call(url))
        finally:
            for connection in connections:
                connection.response_class = ours
    report("cpu.outbound_call_us, e-mail parser headers", min(standard), "(info)", None, "µs")
    report("cpu.outbound_call_us, pimsync's headers", min(pimsync), "(info)", None, "µs")
    note(f"{CALLS:,} GETs each, one thread, keep-alive, three alternated rounds, the least CPU of each")
