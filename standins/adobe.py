"""Loopback HTTP servers that implement the contracts of IMS and the AEM Assets Author API, with
fault injection. They are written from Adobe's documentation (URLs on each class),
independently of pimsync's clients. The one implementation of these contracts: the tests mount
them on pytest-httpserver, the benchmark and the drills on a threaded one (standins/peers.py)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from urllib.parse import unquote

from werkzeug import Request, Response

from standins.answers import Faults, json_response

CLIENT_ID = "0123456789abcdef0123456789abcdef"
CLIENT_SECRET = "test-client-secret"
# The I/O Events source of the AEM environment these stand-ins play: pimsync ignores events from others.
SOURCE = "acct:aem-p12345-e67890@adobe.com"


class ImsStub:
    """POST /ims/token/v3 with the client-credentials grant (https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/ims/)."""

    def __init__(self, server) -> None:
        self.server = server
        self.issued: list[str] = []
        self.faults = Faults()
        self.expires_in = 86399
        self.latency = 0.05  # a real token endpoint is not instant: gives concurrent callers a chance to collide
        self._lock = threading.Lock()
        server.expect_request("/ims/token/v3", method="POST").respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/ims/token/v3")

    def valid(self, token: str) -> bool:
        """Whether this IMS issued `token`."""
        return token in self.issued

    def handle(self, request: Request) -> Response:
        """A token for the right client credentials in the form body, 400/401 otherwise."""
        fault = self.faults.take("POST")
        if fault:
            return json_response(fault[0], {"error": "internal_error", "error_description": "Please try again later"})
        form = request.form
        if request.query_string:
            return json_response(
                400, {"error": "invalid_request", "error_description": "credentials in the query string"}
            )
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return json_response(400, {"error": "invalid_request"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return json_response(
                401, {"error": "invalid_client", "error_description": "invalid client_secret parameter"}
            )
        time.sleep(self.latency)
        with self._lock:
            token = f"token-{len(self.issued) + 1}"
            self.issued.append(token)
        return json_response(200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in})


def apply_json_patch(metadata: dict, operations: object, styles: set[str]) -> tuple[dict, str]:
    """`metadata` after the JSON Patch, or why AEM refuses the whole PATCH.

    As Adobe's "Metadata Schemas developer guide" (developer.adobe.com/experience-cloud/
    experience-manager-apis/guides/metadata-schema/, "PATCH path resolution" and "PATCH operations")
    describes it: a path is `/assetMetadata/<property>` or the short `/<property>` (RFC 6901,
    `~1` for `/` and `~0` for `~`); `add` fails on a property that exists, `replace` and `remove`
    on one that does not (`remove` carries no value); one failed operation fails the whole request.
    The bare `dc:title` of the 2024 PIM tutorial is no JSON Pointer: accepted only when `styles`
    holds "bare"."""
    if not isinstance(operations, list):
        return metadata, "the body must be a JSON Patch array"
    updated = dict(metadata)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            return metadata, f"not a JSON Patch operation: {op!r}"[:200]
        path = op["path"]
        if path.startswith("/assetMetadata/") and "asset-metadata" in styles:
            name = path[len("/assetMetadata/") :]
        elif path.startswith("/") and "/" not in path[1:] and "pointer" in styles:
            name = path[1:]
        elif not path.startswith("/") and "bare" in styles:
            name = path
        else:
            return metadata, f"path {path!r} is not a metadata property this AEM resolves"
        name = name.replace("~1", "/").replace("~0", "~")
        kind = op.get("op")
        if kind == "add" and name in updated:
            return metadata, f"add: {name} already exists (use replace)"
        if kind in ("replace", "remove") and name not in updated:
            return metadata, f"{kind}: {name} does not exist" + (" (use add)" if kind == "replace" else "")
        if kind == "remove":
            del updated[name]
            continue
        if kind not in ("add", "replace") or "value" not in op:
            return metadata, f"unsupported operation {kind!r}"
        updated[name] = op["value"]
    return updated, ""


class AemStub:
    """GET/PATCH /adobe/assets/{id}/metadata with ETags and If-Match
    (https://developer.adobe.com/experience-cloud/experience-manager-apis/api/stable/assets/author/);
    for a backfill, GET <path>.json (the node with its jcr:uuid) and GET /api/assets/<folder>.json
    (the classic Assets HTTP API's Siren listing, paged by offset and limit:
    https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/assets/admin/mac-api-assets)."""

    def __init__(self, server, ims: ImsStub) -> None:
        self.server = server
        self.ims = ims
        self.assets: dict[str, dict] = {}
        self.versions: dict[str, int] = {}
        self.patches: list[dict] = []  # every PATCH that changed something: asset, body, headers
        self.calls: list[tuple[str, str]] = []
        self.faults = Faults()
        self.on_get = None  # hook: called after a GET is answered (to simulate a concurrent writer)
        self.every_asset_exists = False  # True: an unknown id is a new, empty asset instead of a 404
        self.paths: dict[str, str] = {}  # asset path -> asset id, for the backfill calls
        self.path_calls: list[str] = []  # the backfill calls' paths with their query strings
        self.broken_folders: set[str] = set()  # folders whose listing answers 500
        self.page_limit = 100  # children per listing page at most, whatever `limit` asks for
        # The PATCH path forms this AEM accepts (Adobe's metadata guide documents the first two;
        # a test removes one to play an AEM that wants the other).
        self.path_styles = {"pointer", "asset-metadata"}
        self.refused_patches: list[dict] = []  # PATCHes answered 400, with why
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/adobe/assets/[^/]+/metadata$")).respond_with_handler(self.handle)
        server.expect_request(re.compile(r"^/api/assets(/.*)?\.json$"), method="GET").respond_with_handler(self.listing)
        server.expect_request(re.compile(r"^/content/dam/.+\.json$"), method="GET").respond_with_handler(self.node)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def add_asset(self, asset_id: str, metadata: dict | None = None, path: str = "") -> None:
        """An asset exists in AEM with `metadata`, at version 1 (at `path`, when given)."""
        self.assets[asset_id] = dict(metadata or {})
        self.versions[asset_id] = 1
        if path:
            self.paths[path] = asset_id

    def etag(self, asset_id: str) -> str:
        """The asset's ETag now (changes with every write)."""
        raw = f"{asset_id}:{self.versions[asset_id]}".encode()
        return '"' + hashlib.sha1(raw).hexdigest()[:16] + '"'

    def write(self, asset_id: str, values: dict) -> None:
        """Someone else (a person in AEM) changes the asset."""
        with self._lock:
            self.assets[asset_id].update(values)
            self.versions[asset_id] += 1

    def handle(self, request: Request) -> Response:
        """One call: refused (fault, credentials, unknown asset), or the GET or PATCH answered."""
        asset_id = unquote(request.path.split("/")[3])
        self.calls.append((request.method, asset_id))
        refusal = self._refusal(request, asset_id)
        if refusal:
            return refusal
        if request.method == "GET":
            return self._get(asset_id)
        if request.method != "PATCH":
            return json_response(405, {"title": "Method Not Allowed", "status": 405})
        return self._patch(request, asset_id)

    def _refusal(self, request: Request, asset_id: str) -> Response | None:
        """An injected fault, a 401/403 for missing credentials, or a 404 for an unknown asset."""
        fault = self.faults.take(request.method)
        if fault:
            status, headers, delay = fault
            time.sleep(delay)
            if status:
                return json_response(status, {"type": "about:blank", "title": "injected", "status": status}, headers)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.ims.valid(auth[7:]):
            return json_response(401, {"title": "Unauthorized", "status": 401})
        if request.headers.get("X-Api-Key") != CLIENT_ID or request.headers.get("X-Adobe-Accept-Experimental") != "1":
            return json_response(
                403, {"title": "Forbidden", "detail": "X-Api-Key or X-Adobe-Accept-Experimental", "status": 403}
            )
        if asset_id not in self.assets and self.every_asset_exists:
            with self._lock:
                self.assets.setdefault(asset_id, {})
                self.versions.setdefault(asset_id, 1)
        if asset_id not in self.assets:
            return json_response(404, {"title": "Not Found", "status": 404})
        return None

    def _get(self, asset_id: str) -> Response:
        with self._lock:
            body = {"assetId": asset_id, "assetMetadata": dict(self.assets[asset_id]), "repositoryMetadata": {}}
            etag = self.etag(asset_id)
        response = json_response(200, body, {"ETag": etag})
        if self.on_get:
            self.on_get(asset_id)
        return response

    def _patch(self, request: Request, asset_id: str) -> Response:
        if request.headers.get("Content-Type") != "application/json-patch+json":
            return json_response(415, {"title": "Unsupported Media Type", "status": 415})
        if_match = request.headers.get("If-Match")
        if not if_match:
            return json_response(428, {"title": "Precondition Required", "status": 428})
        try:
            operations = json.loads(request.get_data())
        except ValueError:
            return json_response(400, {"title": "Bad Request", "status": 400})
        with self._lock:
            if if_match != "*" and if_match != self.etag(asset_id):
                return json_response(412, {"title": "Precondition Failed", "status": 412})
            updated, problem = apply_json_patch(self.assets[asset_id], operations, self.path_styles)
            if problem:
                self.refused_patches.append({"asset_id": asset_id, "operations": operations, "detail": problem})
                return json_response(400, {"title": "Bad Request", "detail": problem, "status": 400})
            self.assets[asset_id] = updated
            self.versions[asset_id] += 1
            self.patches.append(
                {"asset_id": asset_id, "operations": operations, "if_match": if_match, "headers": dict(request.headers)}
            )
            etag = self.etag(asset_id)
        return json_response(200, {"assetId": asset_id}, {"ETag": etag})

    # --- backfill: paths and folders ---------------------------------------------------------

    def _unauthorised(self, request: Request) -> Response | None:
        self.path_calls.append(request.full_path)
        fault = self.faults.take(request.method)
        if fault and fault[0]:
            return json_response(fault[0], {"title": "injected", "status": fault[0]}, fault[1])
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.ims.valid(auth[7:]):
            return json_response(401, {"title": "Unauthorized", "status": 401})
        if request.headers.get("X-Api-Key") != CLIENT_ID:
            return json_response(403, {"title": "Forbidden", "status": 403})
        return None

    def node(self, request: Request) -> Response:
        """GET <path>.json: the asset node (jcr:uuid is the asset id's uuid), a folder node, or 404."""
        refusal = self._unauthorised(request)
        if refusal:
            return refusal
        path = request.path[: -len(".json")]
        if path in self.paths:
            uuid = self.paths[path].rsplit(":", 1)[-1]
            return json_response(200, {"jcr:primaryType": "dam:Asset", "jcr:uuid": uuid, "jcr:createdBy": "admin"})
        if any(known.startswith(path + "/") for known in self.paths):
            return json_response(200, {"jcr:primaryType": "sling:OrderedFolder", "jcr:createdBy": "admin"})
        return json_response(404, {"title": "Not Found", "status": 404})

    def listing(self, request: Request) -> Response:
        """GET /api/assets/<folder>.json?offset=&limit=: a Siren page of the folder's children."""
        refusal = self._unauthorised(request)
        if refusal:
            return refusal
        folder = "/content/dam" + request.path[len("/api/assets") : -len(".json")]
        if folder in self.broken_folders:
            return json_response(500, {"title": "Internal Server Error", "status": 500})
        children: dict[str, str] = {}
        for path in sorted(self.paths):
            if path.startswith(folder + "/"):
                name, _, rest = path[len(folder) + 1 :].partition("/")
                children.setdefault(name, "assets/folder" if rest else "assets/asset")
        if not children:
            return json_response(404, {"title": "Not Found", "status": 404})
        offset = int(request.args.get("offset", 0))
        limit = min(int(request.args.get("limit", 20)), self.page_limit)
        names = sorted(children)[offset : offset + limit]
        body = {
            "class": ["assets/folder"],
            "properties": {
                "name": folder.rsplit("/", 1)[-1],
                "srn:paging": {"total": len(children), "offset": offset, "limit": limit},
            },
            "entities": [{"class": [children[n]], "properties": {"name": n}, "rel": ["child"]} for n in names],
            "links": [{"rel": ["self"], "href": request.url}],
        }
        if offset + limit < len(children):
            body["links"].append({"rel": ["next"], "href": f"{request.base_url}?offset={offset + limit}&limit={limit}"})
        return json_response(200, body)
