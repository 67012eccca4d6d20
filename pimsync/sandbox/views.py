"""HTTP endpoints of the sandbox, each following the contract of the Adobe service it stands in
for, including the checks the real service makes: the IMS client-credentials grant
(https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/ims/),
the I/O Events public signing keys and Journaling API (docs/adobe-events.md), and the AEM Assets Author API's
metadata GET/PATCH with ETag and If-Match
(https://developer.adobe.com/experience-cloud/experience-manager-apis/api/stable/assets/author/),
an asset node's JSON rendering (its `jcr:uuid`) and the classic Assets HTTP API's folder listings
(https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/assets/admin/mac-api-assets)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pimsync.adobe import jwts
from pimsync.models import SandboxAsset, SandboxJournalEntry
from pimsync.sandbox import keys

TOKEN_SALT = "pimsync-sandbox-ims"
TOKEN_SECONDS = 86399


def sandbox_only(view):
    """The sandbox answers only in sandbox mode; in production its URLs do not exist."""

    def wrapped(request, *args, **kwargs):
        if not settings.PIMSYNC_SANDBOX:
            raise Http404("sandbox mode is off")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.csrf_exempt = getattr(view, "csrf_exempt", False)
    return wrapped


def _problem(status: int, title: str, detail: str = "") -> JsonResponse:
    """RFC 7807 problem details, as AEM's OpenAPIs answer errors."""
    return JsonResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
    )


@sandbox_only
@csrf_exempt
@require_POST
def ims_token(request: HttpRequest) -> JsonResponse:
    """Client-credentials grant: the sandbox accepts exactly the configured client id and secret."""
    form = request.POST
    if form.get("grant_type") != "client_credentials":
        return JsonResponse({"error": "unsupported_grant_type"}, status=400)
    if not (
        secrets.compare_digest(form.get("client_id", ""), settings.ADOBE_CLIENT_ID)
        and secrets.compare_digest(form.get("client_secret", ""), settings.ADOBE_CLIENT_SECRET)
    ):
        return JsonResponse({"error": "invalid_client", "error_description": "invalid client_id or secret"}, status=401)
    token = _token(form.get("scope", ""))
    return JsonResponse({"access_token": token, "token_type": "bearer", "expires_in": TOKEN_SECONDS})


def _token(scope: str) -> str:
    """An access token shaped as IMS's: a JWT whose payload names its client, `scope` and times
    (milliseconds, as strings), here signed HS256 with a key only this deployment holds."""
    now_ms = int(time.time() * 1000)
    claims = {
        "id": secrets.token_hex(8),
        "type": "access_token",
        "client_id": settings.ADOBE_CLIENT_ID,
        "scope": scope[:1000],
        "created_at": str(now_ms),
        "expires_in": str(TOKEN_SECONDS * 1000),
    }
    header = jwts.b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{jwts.b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{jwts.b64url(_mac(signing_input.encode()))}"


def _mac(data: bytes) -> bytes:
    return salted_hmac(TOKEN_SALT, data, algorithm="sha256").digest()


def _token_valid(header: str) -> bool:
    """Whether `Authorization` carries a token this sandbox issued that has not expired."""
    try:
        _header, claims, signed, signature = jwts.split(header.removeprefix("Bearer "))
    except ValueError:
        return False
    if not constant_time_compare(signature, _mac(signed)):
        return False
    try:
        ends = (int(claims["created_at"]) + int(claims["expires_in"])) / 1000
    except (KeyError, TypeError, ValueError):
        return False
    return claims.get("client_id") == settings.ADOBE_CLIENT_ID and time.time() < ends


@sandbox_only
@require_GET
def public_key(request: HttpRequest, path: str) -> HttpResponse:
    """The sandbox's public signing key at its one path, as Adobe's key server serves PEM."""
    if "/" + path != keys.KEY_PATH:
        return HttpResponse("no such key", status=404, content_type="text/plain")
    return HttpResponse(keys.public_pem(), content_type="application/x-pem-file")


def _authorised(request: HttpRequest) -> JsonResponse | None:
    if not _token_valid(request.headers.get("Authorization", "")):
        return _problem(401, "Unauthorized", "a valid IMS bearer token is required")
    if request.headers.get("X-Api-Key") != settings.ADOBE_CLIENT_ID:
        return _problem(403, "Forbidden", "X-Api-Key is not an allowed client id")
    if request.headers.get("X-Adobe-Accept-Experimental") != "1":
        return _problem(400, "Bad Request", "X-Adobe-Accept-Experimental: 1 is required")
    return None


@sandbox_only
@csrf_exempt
@require_http_methods(["GET", "PATCH"])
def asset_metadata(request: HttpRequest, asset_id: str) -> HttpResponse:
    """GET with an ETag; PATCH with a JSON Patch of `add`, `replace` and `remove` operations,
    conditional on If-Match."""
    refusal = _authorised(request)
    if refusal:
        return refusal
    if request.method == "GET":
        return _read_metadata(asset_id)
    return _patch_metadata(request, asset_id)


def _read_metadata(asset_id: str) -> HttpResponse:
    asset = SandboxAsset.objects.filter(pk=asset_id).first()
    if asset is None:
        return _problem(404, "Not Found", f"no asset {asset_id}")
    response = JsonResponse(
        {
            "assetId": asset.asset_id,
            "assetMetadata": asset.metadata,
            "repositoryMetadata": {"repo:name": asset.name, "repo:path": asset.path, "dc:format": asset.mime_type},
        }
    )
    response["ETag"] = asset.etag
    return response


def _patch_metadata(request: HttpRequest, asset_id: str) -> HttpResponse:
    if request.content_type != "application/json-patch+json":
        return _problem(415, "Unsupported Media Type", "Content-Type must be application/json-patch+json")
    if_match = request.headers.get("If-Match")
    if not if_match:
        return _problem(428, "Precondition Required", "If-Match is required")
    try:
        operations = json.loads(request.body)
    except ValueError:
        return _problem(400, "Bad Request", "the body is not JSON")
    if not isinstance(operations, list) or not all(
        isinstance(op, dict)
        and op.get("op") in ("add", "replace", "remove")
        and isinstance(op.get("path"), str)
        and ("value" in op or op["op"] == "remove")
        for op in operations
    ):
        return _problem(400, "Bad Request", "expected a JSON Patch list of add, replace and remove operations")
    with transaction.atomic():
        asset = SandboxAsset.objects.select_for_update().filter(pk=asset_id).first()
        if asset is None:
            return _problem(404, "Not Found", f"no asset {asset_id}")
        if if_match != "*" and if_match != asset.etag:
            return _problem(412, "Precondition Failed", "the asset changed since it was read")
        for op in operations:
            # Every path form pimsync can send (AEM_PATCH_PATH_STYLE); `add`, `replace` and
            # `remove` as Adobe's metadata guide has them: the first fails on an existing property,
            # the others on a missing one, and any failure fails the whole PATCH.
            name = op["path"].removeprefix("/assetMetadata/").lstrip("/").replace("~1", "/").replace("~0", "~")
            if (op["op"] == "add") == (name in asset.metadata):
                verb = {"add": "exists (use replace)", "replace": "does not exist (use add)"}.get(
                    op["op"], "does not exist"
                )
                return _problem(400, "Bad Request", f"{op['op']}: {name} {verb}")
            if op["op"] == "remove":
                del asset.metadata[name]
            else:
                asset.metadata[name] = op["value"]
        asset.version += 1
        asset.save(update_fields=["metadata", "version"])
    response = JsonResponse({"assetId": asset.asset_id})
    response["ETag"] = asset.etag
    return response


@sandbox_only
@require_GET
def node_json(request: HttpRequest, path: str) -> HttpResponse:
    """`<path>.json`: an asset's node with its `jcr:uuid` (the asset id is `urn:aaid:aem:<uuid>`),
    a folder's node, or 404."""
    refusal = _authorised(request)
    if refusal:
        return refusal
    asset = SandboxAsset.objects.filter(path=path).first()
    if asset is not None:
        return JsonResponse(
            {
                "jcr:primaryType": "dam:Asset",
                "jcr:uuid": asset.asset_id.rsplit(":", 1)[-1],
                "jcr:createdBy": "admin",
                "jcr:created": asset.created_at.strftime("%a %b %d %Y %H:%M:%S GMT+0000"),
            }
        )
    if SandboxAsset.objects.filter(path__startswith=path.rstrip("/") + "/").exists():
        return JsonResponse({"jcr:primaryType": "sling:Folder", "jcr:createdBy": "admin"})
    return _problem(404, "Not Found", f"no resource at {path}")


@sandbox_only
@require_GET
def folders(request: HttpRequest) -> HttpResponse:
    """The Folders API (https://adobe-aem-folders-experimental.redoc.ly): `?path=` answers the
    folder (`self`, with its id) and its child folders, never its assets; `limit` (1..50) and a
    `cursor` while more remain."""
    refusal = _authorised(request)
    if refusal:
        return refusal
    base = (request.GET.get("path") or "/content/dam").rstrip("/")
    below = SandboxAsset.objects.filter(path__startswith=base + "/").values_list("path", flat=True)
    names = sorted({p[len(base) + 1 :].split("/")[0] for p in below if "/" in p[len(base) + 1 :]})
    if not below.exists():
        return _problem(404, "Not Found", f"no folder at {base}")
    start, limit = _int(request.GET.get("cursor"), 0), min(_int(request.GET.get("limit"), 50) or 50, 50)
    body = {
        "self": {"folderId": _folder_id(base), "name": base.rsplit("/", 1)[-1], "path": base},
        "children": [
            {"folderId": _folder_id(f"{base}/{n}"), "name": n, "title": n, "path": f"{base}/{n}"}
            for n in names[start : start + limit]
        ],
    }
    if start + limit < len(names):
        body["cursor"] = str(start + limit)
    return JsonResponse(body)


def _folder_id(path: str) -> str:
    return f"urn:aaid:aem:{uuid.uuid5(uuid.NAMESPACE_URL, path)}"


FOLDER_PAGE = 20  # the classic API's page size unless `limit` asks for another


@sandbox_only
@require_GET
def folder_listing(request: HttpRequest, folder: str | None = None) -> HttpResponse:
    """`/api/assets/<folder>.json`: the folder's sub-folders and assets as Siren entities, a page
    at a time (`offset`, `limit`), with a `next` link while more remain."""
    refusal = _authorised(request)
    if refusal:
        return refusal
    base = "/content/dam" + (folder or "").rstrip("/")
    below = SandboxAsset.objects.filter(path__startswith=base + "/").order_by("path").values_list("path", flat=True)
    children: dict[str, str] = {}  # name -> class, folders and assets in name order
    for path in below:
        name, _, rest = path[len(base) + 1 :].partition("/")
        children.setdefault(name, "assets/folder" if rest else "assets/asset")
    if not children and not SandboxAsset.objects.filter(path=base).exists() and folder:
        return _problem(404, "Not Found", f"no folder at {base}")
    offset, limit = _int(request.GET.get("offset"), 0), _int(request.GET.get("limit"), FOLDER_PAGE) or FOLDER_PAGE
    names = sorted(children)
    page = names[offset : offset + limit]
    href = request.build_absolute_uri(request.path)
    body = {
        "class": ["assets/folder"],
        "properties": {
            "name": base.rsplit("/", 1)[-1],
            "srn:paging": {"total": len(names), "offset": offset, "limit": limit},
        },
        "entities": [
            {
                "class": [children[name]],
                "rel": ["child"],
                "properties": {"name": name},
                "links": [{"rel": ["self"], "href": href[: -len(".json")] + "/" + name + ".json"}],
            }
            for name in page
        ],
        "links": [{"rel": ["self"], "href": href}],
    }
    if offset + limit < len(names):
        body["links"].append(
            {"rel": ["next"], "href": f"{href}?{urlencode({'offset': offset + limit, 'limit': limit})}"}
        )
    return JsonResponse(body)


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and len(value) < 9 else default


JOURNAL_PAGE = 100  # events per page unless `limit` asks for fewer
JOURNAL_RETRY_AFTER = "5"  # seconds to wait at the end of the journal


@sandbox_only
@require_GET
def journal(request: HttpRequest) -> HttpResponse:
    """The Journaling API: oldest first, `since` (exclusive), `latest`, `seek`, root-relative
    `Link` next, 204 + retry-after at the end, 410 for a position it does not hold."""
    refusal = _journal_refusal(request)
    if refusal:
        return refusal
    limit = request.GET.get("limit", "")
    limit = min(int(limit), JOURNAL_PAGE) if limit.isdigit() and int(limit) > 0 else JOURNAL_PAGE
    entries = SandboxJournalEntry.objects.order_by("id")
    since = request.GET.get("since")
    if since is not None:
        if not since.isdigit() or len(since) > 18 or not entries.filter(id=int(since)).exists():
            return JsonResponse({"message": f"Events at position {since[:40]} have expired"}, status=410)
        entries = entries.filter(id__gt=int(since))
    elif request.GET.get("latest") == "true":
        newest = entries.last()
        return _journal_end(request, newest.pk if newest else None, limit)
    page = list(entries[:limit])
    if not page:
        return _journal_end(request, int(since) if since else None, limit)
    last = str(page[-1].pk)
    body = {
        "events": [{"position": str(e.pk), "event": e.event} for e in page],
        "_page": {"last": last, "count": len(page)},
    }
    response = JsonResponse(body, content_type="application/vnd.adobecloud.events+json")
    response["Link"] = f'<{request.path}?{urlencode({"since": last, "limit": limit})}>; rel="next"'
    return response


def _journal_end(request: HttpRequest, position: int | None, limit: int) -> HttpResponse:
    params = {"since": position, "limit": limit} if position else {"limit": limit}
    link = f"<{request.path}?{urlencode(params)}>"
    response = HttpResponse(status=204)
    response["retry-after"] = JOURNAL_RETRY_AFTER
    response["Link"] = f'{link}; rel="next", {link}; rel="validate"'
    return response


def _journal_refusal(request: HttpRequest) -> JsonResponse | None:
    if not _token_valid(request.headers.get("Authorization", "")):
        return _problem(401, "Unauthorized", "a valid IMS bearer token is required")
    if request.headers.get("x-api-key") != settings.ADOBE_CLIENT_ID:
        return _problem(403, "Forbidden", "x-api-key is not an allowed client id")
    if request.headers.get("x-ims-org-id") != settings.ADOBE_IMS_ORG_ID:
        return _problem(403, "Forbidden", "x-ims-org-id is not this organization")
    return None


# Assets listed on the stand-in's author page (the sandbox holds the demo catalogue's few dozen).
AUTHOR_UI_ASSETS = 200


@sandbox_only
@staff_member_required
@require_GET
def author_ui(request: HttpRequest) -> HttpResponse:
    """What "Open in AEM ↗" shows in sandbox mode: the stand-in's assets and the metadata they hold.
    AEM's asset page names the asset in the URL's fragment, which the server never sees; the page's
    script marks that asset's row."""
    assets = SandboxAsset.objects.order_by("path")[:AUTHOR_UI_ASSETS]
    rows = [(a, json.dumps(a.metadata, indent=2, ensure_ascii=False, sort_keys=True)) for a in assets]
    return render(request, "sandbox/author_ui.html", {"rows": rows, "limit": AUTHOR_UI_ASSETS})
