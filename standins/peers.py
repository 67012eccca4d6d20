"""IMS, the I/O Events key server, AEM and a PIM on loopback for the benchmark and the failure
drills: the stand-ins of standins/adobe.py and standins/pim.py (one implementation of those
contracts) on a threaded keep-alive server, with a fixed latency on every call and every call
counted.

`State.fault` lets a caller (the failure drills in `drills/`) answer a PIM or AEM call with an
error instead: it gets the kind of call ("pim", "aem_get", "aem_patch") and the product key or
asset id, and returns None (answer normally) or (status, headers)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

from werkzeug import Request, Response

from standins.adobe import CLIENT_ID, CLIENT_SECRET, SOURCE, AemStub, ImsStub
from standins.pim import PimStub
from standins.server import LoopbackServer, werkzeug_handler


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


class StubServer(LoopbackServer):
    """One threaded, keep-alive server with all four stand-ins on `state`; `port` 0 takes a free one.

    The stand-ins are werkzeug handlers (`werkzeug_handler` serves them), routed by path (`kind_of`)."""

    def __init__(self, state: State, port: int = 0) -> None:
        # A caller that disconnects (a worker killed mid-call) is expected, not worth a traceback.
        super().__init__(werkzeug_handler(self.answer), port, quiet_errors=True)
        self.state = state
        self.ims = ImsStub(self)
        self.ims.latency = state.latency
        self.aem = AemStub(self, self.ims)
        self.aem.assets, self.aem.versions = state.assets, state.versions
        self.aem.every_asset_exists = True  # events name assets nobody uploaded here
        self.pim = PimStub(self)
        self.pim.products = state.catalog
        self.route = {"ims": self.ims.handle, "pim": self.pim.handle, "aem_get": self.aem.handle}
        self.route["aem_patch"] = self.aem.handle
        self.route["key"] = lambda request: Response(state.public_pem, 200)

    def expect_request(self, *args, **kwargs) -> StubServer:
        """What the stand-ins call to register with pytest-httpserver; here `kind_of` routes."""
        return self

    def respond_with_handler(self, handler) -> None:
        """The second half of the registration: nothing to do."""

    def url_for(self, suffix: str) -> str:
        """The address of `suffix` on this server."""
        return self.url + suffix

    def answer(self, request: Request) -> Response:
        """Each call: the latency, an injected fault or the stand-in's answer; counted."""
        kind, key = kind_of(request)
        if kind in ("pim", "aem_get", "aem_patch"):
            time.sleep(self.state.latency)  # IMS sleeps in its stand-in; the key server answers at once
        if fault := self.state.injected(kind, key):
            body = {"error": "injected"} if kind == "pim" else {"title": "injected", "status": fault[0]}
            return Response(json.dumps(body), fault[0], fault[1], content_type="application/json")
        if kind not in self.route:
            return Response(b"{}", 404, content_type="application/json")
        response = self.route[kind](request)
        self.state.count(kind, key if kind == "aem_patch" and response.status_code == 200 else None)
        return response


def pimsync_environment(*, stub_url: str, pim_url: str, database_url: str, secret_key: str) -> dict[str, str]:
    """The settings of a production pimsync process pointed at these stand-ins (bench and drills)."""
    return {
        "PATH": os.environ["PATH"],
        "PIMSYNC_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": secret_key,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "ADOBE_CLIENT_ID": CLIENT_ID,
        "ADOBE_CLIENT_SECRET": CLIENT_SECRET,
        "ADOBE_IMS_TOKEN_URL": stub_url + "/ims/token/v3",
        "ADOBE_EVENTS_KEY_BASE_URL": stub_url + "/keys",
        "AEM_AUTHOR_URL": stub_url,
        "AEM_EVENT_SOURCE": SOURCE,
        "PIM_BASE_URL": pim_url,
        "PIM_PRODUCT_PATH": "/products/{key}",
        "PIM_API_TOKEN": PimStub.TOKEN,
    }
