"""Loopback HTTP servers that implement the contracts of IMS and the AEM Assets Author API, with
fault injection. They are written from Adobe's documentation (URLs on each class),
independently of pimsync's clients. The one implementation of these contracts: the tests mount
them on pytest-httpserver, the benchmark and the drills on a threaded one (standins/peers.py)."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import threading
import time
import uuid
from functools import cache
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from werkzeug import Request, Response

from pimsync.adobe import jwts
from standins.answers import Faults, json_response

CLIENT_ID = "0123456789abcdef0123456789abcdef"
CLIENT_SECRET = "test-client-secret"
# The I/O Events source of the AEM environment these stand-ins play: pimsync ignores events from others.
SOURCE = "acct:aem-p12345-e67890@adobe.com"


@cache
def service_credential() -> dict:
    """An AEM service credential as AEM's Developer Console gives it (Integrations → Technical
    Accounts): the shape of Adobe's example in "Generating Access Tokens for Server-Side APIs"
    (https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/implementing/developing/generating-access-tokens-for-server-side-apis)
    and https://experienceleague.adobe.com/en/docs/experience-cloud-kcs/kbarticles/ka-25204:
    PEM text with CRLF line ends, a PKCS#1 "RSA PRIVATE KEY" and the public half as a certificate.
    Made once per process: an RSA key takes a while."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cm-p12345-e67890-integration")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = certificate.public_bytes(serialization.Encoding.PEM)
    return {
        "ok": True,
        "integration": {
            "imsEndpoint": "ims-na1.adobelogin.com",
            "metascopes": "ent_aem_cloud_api",
            "technicalAccount": {"clientId": "cm-p12345-e67890-integration", "clientSecret": "p8e-service-secret"},
            "email": "4a2b0000@techacct.adobe.com",
            "id": "4A2B00000000000000000000@techacct.adobe.com",
            "org": "5A4D0000000000000000B0X0@AdobeOrg",
            "privateKey": private.decode().replace("\n", "\r\n"),
            "publicKey": public.decode().replace("\n", "\r\n"),
        },
        "statusCode": 200,
    }


class ImsStub:
    """POST /ims/token/v3 with the client-credentials grant (https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/ims/),
    and POST /ims/exchange/jwt, the exchange of an AEM service credential's signed JWT
    (https://github.com/AdobeDocs/adobeio-auth, JWT/JWT.md: the claims, the form fields and the
    errors by status; Adobe's examples answer `expires_in` in milliseconds, e.g. 86399999)."""

    def __init__(self, server) -> None:
        self.server = server
        self.issued: list[str] = []
        self.service_tokens: list[str] = []  # issued by the JWT exchange
        self.faults = Faults()
        self.expires_in = 86399
        self.latency = 0.05  # a real token endpoint is not instant: gives concurrent callers a chance to collide
        # Tokens shaped as IMS's are (a JWT whose payload names its `scope`, which
        # https://github.com/adobe/aio-lib-ims `getTokenData` decodes), instead of `token-N`.
        self.jwt_tokens = False
        self.granted_scopes: str | None = None  # the scopes a JWT token carries (None: those asked for)
        self.credential = service_credential()["integration"]
        self._lock = threading.Lock()
        server.expect_request("/ims/token/v3", method="POST").respond_with_handler(self.handle)
        server.expect_request("/ims/exchange/jwt", method="POST").respond_with_handler(self.exchange)

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
            if self.jwt_tokens:
                scopes = form["scope"] if self.granted_scopes is None else self.granted_scopes
                token = _ims_shaped(token, form["client_id"], scopes, self.expires_in)
            self.issued.append(token)
        return json_response(200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in})

    def exchange(self, request: Request) -> Response:
        """The JWT exchange: the technical account's client id and secret, and a JWT with its claims
        signed by the credential's key (verified with the certificate's public key)."""
        fault = self.faults.take("POST")
        if fault:
            return json_response(fault[0], {"error": "internal_error", "error_description": "Please try again later"})
        form, credential = request.form, self.credential
        account = credential["technicalAccount"]
        if form.get("client_id") != account["clientId"] or form.get("client_secret") != account["clientSecret"]:
            return _oauth_error(401, "invalid_client", "invalid client_id or client_secret")
        try:
            header, claims, signed, signature = jwts.split(form.get("jwt_token", ""))
        except ValueError:
            return _oauth_error(400, "invalid_token", "JWT is missing or cannot be decoded")
        certificate = x509.load_pem_x509_certificate(credential["publicKey"].encode())
        try:
            if header.get("alg") != "RS256":
                raise InvalidSignature
            certificate.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return _oauth_error(400, "invalid_signature", "the JWT signature does not match the certificate")
        base = f"https://{credential['imsEndpoint']}"
        if claims.get("aud") != f"{base}/c/{account['clientId']}":
            return _oauth_error(400, "invalid_client", "the aud of the JWT does not match client_id")
        exp = claims.get("exp")
        if not isinstance(exp, int) or not time.time() < exp <= time.time() + 24 * 3600:
            return _oauth_error(400, "invalid_token", "JWT has expired or lives longer than 24 hours")
        if claims.get("iss") != credential["org"] or claims.get("sub") != credential["id"]:
            return _oauth_error(400, "bad_request", "sub or iss is not this technical account")
        scopes = {name.removeprefix(f"{base}/s/") for name, value in claims.items() if name.startswith(f"{base}/s/")}
        if scopes != set(credential["metascopes"].split(",")):
            return _oauth_error(400, "invalid_scope", "Metascopes in the JWT do not match metascopes in the binding")
        with self._lock:
            token = f"service-token-{len(self.service_tokens) + 1}"
            self.service_tokens.append(token)
        return json_response(200, {"token_type": "bearer", "access_token": token, "expires_in": 86399999})


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


def _ims_shaped(token_id: str, client_id: str, scopes: str, expires_in: int) -> str:
    """An access token shaped as IMS issues them: a JWT (RS256 header) whose payload carries `id`,
    `client_id`, `scope` and the times in milliseconds as strings; its signature is no one's."""
    claims = {
        "id": token_id,
        "type": "access_token",
        "client_id": client_id,
        "scope": scopes,
        "created_at": str(int(time.time() * 1000)),
        "expires_in": str(expires_in * 1000),
    }
    header = jwts.b64url(b'{"alg":"RS256","x5u":"ims_na1-key-at-1.cer","kid":"ims_na1-key-at-1","itt":"at"}')
    payload = jwts.b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{jwts.b64url(hashlib.sha256(token_id.encode()).digest())}"


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
        # True: the classic endpoints (<path>.json, /api/assets) answer 403 to the OAuth
        # Server-to-Server token and take only an AEM service credential's, the credential Adobe
        # documents for them (https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/implementing/developing/generating-access-tokens-for-server-side-apis).
        self.classic_needs_service_token = False
        self.folders_page = 50  # sub-folders per Folders API page at most
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/adobe/assets/[^/]+/metadata$")).respond_with_handler(self.handle)
        server.expect_request("/adobe/folders", method="GET").respond_with_handler(self.folders)
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
            path = next((p for p, known in self.paths.items() if known == asset_id), "")
            repository = {"repo:assetId": asset_id, **({"repo:path": path} if path else {})}
            body = {"assetId": asset_id, "assetMetadata": dict(self.assets[asset_id]), "repositoryMetadata": repository}
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

    def _unauthorised(self, request: Request, *, classic: bool = True) -> Response | None:
        self.path_calls.append(request.full_path)
        fault = self.faults.take(request.method)
        if fault and fault[0]:
            return json_response(fault[0], {"title": "injected", "status": fault[0]}, fault[1])
        auth = request.headers.get("Authorization", "")
        if classic and auth[7:] in self.ims.service_tokens:
            return None  # Adobe's example call with this token sends the bearer token alone
        if not auth.startswith("Bearer ") or not self.ims.valid(auth[7:]):
            return json_response(401, {"title": "Unauthorized", "status": 401})
        if classic and self.classic_needs_service_token:
            return json_response(403, {"title": "Forbidden", "status": 403})
        if request.headers.get("X-Api-Key") != CLIENT_ID:
            return json_response(403, {"title": "Forbidden", "status": 403})
        return None

    def folder_id(self, path: str) -> str:
        return f"urn:aaid:aem:{uuid.uuid5(uuid.NAMESPACE_URL, path)}"

    def folders(self, request: Request) -> Response:
        """GET /adobe/folders?path=&limit=&cursor=: the folder (`self`) and its child folders, never
        its assets; a `cursor` while more remain (https://adobe-aem-folders-experimental.redoc.ly)."""
        refusal = self._unauthorised(request, classic=False)
        if refusal:
            return refusal
        folder = request.args.get("path", "/").rstrip("/")
        if folder in self.broken_folders:
            return json_response(500, {"title": "Internal Server Error", "status": 500})
        names = sorted(
            {
                path[len(folder) + 1 :].split("/")[0]
                for path in self.paths
                if path.startswith(folder + "/") and "/" in path[len(folder) + 1 :]
            }
        )
        if not names and not any(path.startswith(folder + "/") for path in self.paths):
            return json_response(404, {"title": "Not Found", "status": 404, "detail": f"no folder at {folder}"})
        start = int(request.args.get("cursor") or 0)
        limit = min(int(request.args.get("limit") or 50), 50, self.folders_page)
        page = names[start : start + limit]
        body = {
            "self": {"folderId": self.folder_id(folder), "name": folder.rsplit("/", 1)[-1], "path": folder},
            "children": [
                {"folderId": self.folder_id(f"{folder}/{n}"), "name": n, "title": n, "path": f"{folder}/{n}"}
                for n in page
            ],
        }
        if start + limit < len(names):
            body["cursor"] = str(start + limit)
        return json_response(200, body)

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
