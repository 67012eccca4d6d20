"""IMS, the I/O Events key server, AEM and a PIM on loopback, each call delayed by a fixed
latency, counting every call. Threaded, keep-alive: the stubs must not be the bottleneck.

`State.fault` lets a caller (the failure drills in `drills/`) answer a PIM or AEM call with an
error instead: it gets the kind of call ("pim", "aem_get", "aem_patch") and the product key or
asset id, and returns None (answer normally) or (status, headers)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class State:
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
        answer = self.fault(kind, key) if self.fault else None
        if answer is not None:
            with self.lock:
                self.calls[f"{kind}_{answer[0]}"] += 1
        return answer

    def reset_counts(self) -> None:
        with self.lock:
            self.calls.clear()
            self.patches_per_asset.clear()

    def etag(self, asset_id: str) -> str:
        return '"' + hashlib.md5(f"{asset_id}{self.versions[asset_id]}".encode()).hexdigest()[:12] + '"'


def handler_for(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self):
            if self.path.startswith("/keys/"):
                state.calls["key"] += 1
                return self._send(200, state.public_pem)
            time.sleep(state.latency)
            if self.path.startswith("/pim/products/"):
                key = unquote(self.path.rsplit("/", 1)[1])
                if fault := state.injected("pim", key):
                    return self._send(fault[0], {"error": "injected"}, fault[1])
                state.calls["pim"] += 1
                product = state.catalog.get(key)
                return self._send(200, product) if product else self._send(404, {"error": "not found"})
            if self.path.startswith("/adobe/assets/"):
                asset_id = unquote(self.path.split("/")[3])
                if fault := state.injected("aem_get", asset_id):
                    return self._send(fault[0], {"title": "injected", "status": fault[0]}, fault[1])
                state.calls["aem_get"] += 1
                with state.lock:
                    metadata = dict(state.assets.setdefault(asset_id, {}))
                    etag = state.etag(asset_id)
                return self._send(200, {"assetId": asset_id, "assetMetadata": metadata}, {"ETag": etag})
            self._send(404, {})

        def do_POST(self):
            body = self._body()
            if self.path == "/ims/token/v3":
                state.calls["ims"] += 1
                time.sleep(state.latency)
                return self._send(200, {"access_token": "bench-token", "token_type": "bearer", "expires_in": 86399})
            self._send(404, {"unexpected": body[:50].decode(errors="replace")})

        def do_PATCH(self):
            body = self._body()
            time.sleep(state.latency)
            asset_id = unquote(self.path.split("/")[3])
            if fault := state.injected("aem_patch", asset_id):
                return self._send(fault[0], {"title": "injected", "status": fault[0]}, fault[1])
            state.calls["aem_patch"] += 1
            with state.lock:
                if self.headers.get("If-Match") not in ("*", state.etag(asset_id)):
                    return self._send(412, {"title": "Precondition Failed"})
                for op in json.loads(body):
                    state.assets.setdefault(asset_id, {})[op["path"]] = op["value"]
                state.versions[asset_id] += 1
                state.patches_per_asset[asset_id] += 1
                etag = state.etag(asset_id)
            self._send(200, {"assetId": asset_id}, {"ETag": etag})

    return Handler


class StubServer:
    def __init__(self, state: State, port: int = 0) -> None:
        self.state = state
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.request_queue_size = 512
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(state))
        # A caller that disconnects (a worker killed mid-call) is expected, not worth a traceback.
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()  # the port is free again: a later server may take it
