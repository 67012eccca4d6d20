"""IMS, the I/O Events key server, AEM and a PIM on loopback for the benchmark and the failure
drills: the test suite's stand-ins (tests/stubs.py, one implementation of those contracts) on a
threaded server, with a fixed latency on every call and every call counted.

`State.fault` lets a caller (the failure drills in `drills/`) answer a PIM or AEM call with an
error instead: it gets the kind of call ("pim", "aem_get", "aem_patch") and the product key or
asset id, and returns None (answer normally) or (status, headers)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.stubs import AemStub, ImsStub, PimStub

# werkzeug would print a line per request; a caller that disconnects (a worker killed mid-call)
# is expected, not worth a traceback.
logging.getLogger("werkzeug").setLevel(logging.CRITICAL)


class State:
    """What the stand-ins hold and count, shared by every server started on it."""

    def __init__(self, latency: float, public_pem: bytes, catalog: dict) -> None:
        self.latency = latency
        self.public_pem = public_pem
        self.catalog = catalog
        self.assets: dict[str, dict] = {}
        self.versions: Counter = Counter()
        self.calls: Counter = Counter()
        self.patches_per_asset: Counter = Counter()
        self.fault: Callable[[str, str], tuple[int, dict] | None] | None = None
        self.lock = threading.Lock()

    def injected(self, kind: str, key: str) -> tuple[int, dict] | None:
        """The fault to answer this call with, if any (counted as `<kind>_<status>`)."""
        answer = self.fault(kind, key) if self.fault and kind in ("pim", "aem_get", "aem_patch") else None
        if answer is not None:
            self.count(f"{kind}_{answer[0]}")
        return answer

    def count(self, kind: str, asset_patched: str | None = None) -> None:
        """One call of this kind answered; `asset_patched`: the asset a PATCH changed."""
        with self.lock:
            self.calls[kind] += 1
            if asset_patched:
                self.patches_per_asset[asset_patched] += 1

    def reset_counts(self) -> None:
        """Forget the calls and PATCHes counted so far."""
        with self.lock:
            self.calls.clear()
            self.patches_per_asset.clear()


def kind_of(request: Request) -> tuple[str, str]:
    """The kind of call ("ims", "key", "pim", "aem_get", "aem_patch") and its product key or asset id."""
    if request.path.startswith("/keys/"):
        return "key", ""
    if request.path.startswith("/products/"):
        return "pim", unquote(request.path[len("/products/") :])
    if request.path.startswith("/adobe/assets/"):
        return f"aem_{request.method.lower()}", unquote(request.path.split("/")[3])
    return ("ims" if request.path == "/ims/token/v3" else "other"), ""


class StubServer(HTTPServer):
    """One threaded, keep-alive server with all four stand-ins on `state` (the stand-ins must not
    be the bottleneck); `port` 0 takes a free one."""

    def __init__(self, state: State, port: int = 0) -> None:
        super().__init__("127.0.0.1", port, threaded=True)
        self.state = state
        self.ims = ImsStub(self)
        self.ims.latency = state.latency
        self.aem = AemStub(self, self.ims)
        self.aem.assets, self.aem.versions = state.assets, state.versions
        self.aem.every_asset_exists = True  # events name assets nobody uploaded here
        self.pim = PimStub(self)
        self.pim.products = state.catalog
        self.expect_request(re.compile(r"^/keys/"), method="GET").respond_with_data(state.public_pem)
        # Straight to the stand-in: pytest-httpserver's matching of every registered handler
        # would cost more CPU than the stand-in itself.
        self.route = {"ims": self.ims.handle, "pim": self.pim.handle, "aem_get": self.aem.handle}
        self.route["aem_patch"] = self.aem.handle

    @property
    def url(self) -> str:
        return self.url_for("").rstrip("/")

    def application(self, request: Request) -> Response:
        """Each call: the latency, an injected fault or the stand-in's answer; counted, not logged."""
        request.get_data()  # read the body even when a fault answers: the connection is kept alive
        kind, key = kind_of(request)
        if kind in ("pim", "aem_get", "aem_patch"):
            time.sleep(self.state.latency)  # IMS sleeps in its stand-in; the key server answers at once
        if fault := self.state.injected(kind, key):
            body = {"error": "injected"} if kind == "pim" else {"title": "injected", "status": fault[0]}
            return Response(json.dumps(body), fault[0], fault[1], content_type="application/json")
        response = self.route[kind](request) if kind in self.route else self.dispatch(request)
        self.state.count(kind, key if kind == "aem_patch" and response.status_code == 200 else None)
        return response

    def __enter__(self) -> StubServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        server = self.server
        self.stop()
        server.server_close()  # the port is free again: a later server may take it
