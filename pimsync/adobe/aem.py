"""AEM: read and write an asset's metadata through the Assets Author API
(https://developer.adobe.com/experience-cloud/experience-manager-apis/api/stable/assets/author/),
and, for a backfill, an asset path's id and a folder's children through the author service's JSON
rendering and the classic Assets HTTP API
(https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/assets/admin/mac-api-assets)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from django.conf import settings

from pimsync.adobe import ims
from pimsync.outbound import http


@dataclass
class Metadata:
    """An asset's metadata properties and the ETag to make a PATCH conditional on."""

    values: dict
    etag: str


def _url(asset_id: str) -> str:
    return f"{settings.AEM_AUTHOR_URL}/adobe/assets/{quote(asset_id, safe=':')}/metadata"


def _call(method: str, url: str, *, expected, headers=None, **kwargs):
    """One authenticated call; a 401 renews the token once (it may have been revoked early)."""
    token = ims.get_token()
    try:
        return _send(method, url, token, expected=expected, headers=headers, **kwargs)
    except http.HttpError as exc:
        if exc.status != 401:
            raise
    ims.invalidate(token)
    return _send(method, url, ims.get_token(), expected=expected, headers=headers, **kwargs)


def _send(method: str, url: str, token: str, *, expected, headers=None, **kwargs):
    all_headers = {
        "Authorization": f"Bearer {token}",
        "X-Api-Key": settings.ADOBE_CLIENT_ID,
        # The experimental version of the API requires it; the stable one ignores it, and Adobe's
        # newer tutorials still send it.
        "X-Adobe-Accept-Experimental": "1",
        **(headers or {}),
    }
    # Every AEM call honours a 429's pause, whichever worker got it (`pimsync.outbound.throttle`).
    return http.request(
        method, url, expected=expected, headers=all_headers, error_class="aem", pause_key="aem", **kwargs
    )


def check_not_paused() -> None:
    """Raise the retryable `aem_paused` error while AEM's pause runs (before work that ends in AEM calls)."""
    http.refuse_while_paused("aem", "AEM calls")


def get_metadata(asset_id: str) -> Metadata:
    """The asset's current metadata and its ETag."""
    response = _call("GET", _url(asset_id), expected=(200,), headers={"Accept": "application/json"})
    body = http.json_object(response, who="AEM's metadata GET", error_class="aem_bad_response", retryable=True)
    values = body.get("assetMetadata")
    etag = response.headers.get("ETag", "")
    if not etag:
        # Adobe's metadata guide puts the ETag in `repositoryMetadata["repo:etag"]` too, "for
        # If-Match (PATCH)"; without either, the PATCH goes out with If-Match: *.
        repository = body.get("repositoryMetadata")
        tag = repository.get("repo:etag") if isinstance(repository, dict) else None
        etag = tag if isinstance(tag, str) and len(tag) <= 200 and tag.isprintable() else ""
    return Metadata(values=values if isinstance(values, dict) else {}, etag=etag)


# AEM_PATCH_PATH_STYLE: how a PATCH path names a property.
PATH_STYLES = ("pointer", "asset-metadata", "bare")


def patch_path(name: str, style: str) -> str:
    """The JSON Patch `path` of metadata property `name`: an RFC 6901 pointer (`~` written `~0`,
    `/` written `~1`), under `/assetMetadata/` for that style, or the bare name."""
    if style == "bare":
        return name
    escaped = name.replace("~", "~0").replace("/", "~1")
    return f"/assetMetadata/{escaped}" if style == "asset-metadata" else f"/{escaped}"


def json_patch(changes: list[dict], style: str | None = None) -> list[dict]:
    """The JSON Patch (RFC 6902) that writes `changes` (`mapping.Plan.changes`): `replace` for a
    property the GET returned and `add` for one it did not. Adobe's metadata guide says `add` fails
    on a property that exists and `replace` on one that does not, and one failed operation fails
    the whole PATCH; RFC 6902 alone would let `add` do both. A change marked `"op": "remove"` (a
    property no rule yields any more) becomes a `remove`, which the guide lets fail on a property
    that does not exist: the mapping plans one only for a property the GET returned."""
    style = style or settings.AEM_PATCH_PATH_STYLE
    operations = []
    for change in changes:
        path = patch_path(change["path"], style)
        if change.get("op") == "remove":
            operations.append({"op": "remove", "path": path})
        else:
            operations.append({"op": "replace" if change["exists"] else "add", "path": path, "value": change["new"]})
    return operations


def patch_metadata(asset_id: str, operations: list[dict], etag: str):
    """JSON Patch the asset's metadata, conditional on `etag` (412 when someone wrote first)."""
    return _call(
        "PATCH",
        _url(asset_id),
        expected=(200, 204),
        headers={"Content-Type": "application/json-patch+json", "If-Match": etag or "*"},
        data=json.dumps(operations),
    )


# --- asset paths, for a backfill -------------------------------------------------------------

DAM_ROOT = "/content/dam"
# jcr:uuid is a UUID; anything else would make an asset id AEM never issued.
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PATH_LENGTH = 1024
# Children asked for per page of a folder listing.
FOLDER_PAGE = 100


def path_problem(path: str, *, folder: bool = False) -> str:
    """Why `path` cannot be sent to AEM as a DAM path ("" when it can): absolute, under
    /content/dam/ (or /content/dam itself for a folder), no empty, `.` or `..` segment, printable."""
    if not path:
        return "no path"
    if len(path) > MAX_PATH_LENGTH:
        return f"the path is longer than {MAX_PATH_LENGTH} characters"
    if not path.isprintable():
        return "the path holds control characters"
    if not path.startswith("/"):
        return "not an absolute path (it must start with /content/dam/)"
    if not (path.startswith(DAM_ROOT + "/") or (folder and path.rstrip("/") == DAM_ROOT)):
        return "not under /content/dam/"
    segments = path.rstrip("/").split("/")[1:] if folder else path.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments):
        return "the path has an empty, '.' or '..' segment"
    return ""


def _quoted(path: str) -> str:
    """Each segment percent-quoted, so a name with ?, # or % stays one segment of one path."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _checked(path: str, *, folder: bool = False) -> str:
    problem = path_problem(path, folder=folder)
    if problem:
        raise http.HttpError(f"{path[:200]!r}: {problem}", retryable=False, error_class="aem_path")
    return path


def asset_id_for_path(path: str) -> str:
    """The asset id (`urn:aaid:aem:<jcr:uuid>`) of the asset at `path`, read from the author
    service's JSON rendering of the node, as Adobe's server-to-server tutorial does
    (https://experienceleague.adobe.com/en/docs/experience-manager-learn/cloud-service/aem-apis/openapis/use-cases/invoke-api-using-oauth-s2s).
    HttpError with status 404 when AEM has nothing there."""
    url = f"{settings.AEM_AUTHOR_URL}{_quoted(_checked(path))}.json"
    response = _call("GET", url, expected=(200,), headers={"Accept": "application/json"})
    node = http.json_object(response, who="AEM's node JSON", error_class="aem_bad_response", retryable=False)
    kind = node.get("jcr:primaryType")
    if kind is not None and kind != "dam:Asset":
        raise http.HttpError(
            f"AEM has a {str(kind)[:40]}, not an asset, at this path", retryable=False, error_class="aem_not_asset"
        )
    uuid = node.get("jcr:uuid")
    if not isinstance(uuid, str) or not UUID.match(uuid):
        raise http.HttpError("AEM's answer has no jcr:uuid", retryable=False, error_class="aem_bad_response")
    return f"urn:aaid:aem:{uuid.lower()}"


@dataclass
class FolderPage:
    """One page of a folder's children: the paths of its sub-folders and of its assets."""

    folders: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    size: int = 0  # children on this page, whatever their kind
    more: bool = False


def list_folder(folder: str, offset: int = 0, limit: int = FOLDER_PAGE) -> FolderPage:
    """One page of a folder's children through the classic Assets HTTP API (Siren JSON):
    `GET /api/assets/<folder below /content/dam>.json?offset=&limit=`."""
    folder = _checked(folder, folder=True).rstrip("/")
    below = folder[len(DAM_ROOT) :]
    url = f"{settings.AEM_AUTHOR_URL}/api/assets{_quoted(below)}.json?offset={int(offset)}&limit={int(limit)}"
    response = _call("GET", url, expected=(200,), headers={"Accept": "application/json"})
    body = http.json_object(response, who="AEM's folder listing", error_class="aem_bad_response", retryable=False)
    entities = body.get("entities") or []
    if not isinstance(entities, list):
        raise http.HttpError(
            "AEM's folder listing has no list of entities", retryable=False, error_class="aem_bad_response"
        )
    page = FolderPage(size=len(entities))
    for entity in entities:
        _add_child(page, folder, entity)
    paging = (body.get("properties") or {}).get("srn:paging") if isinstance(body.get("properties"), dict) else None
    total = paging.get("total") if isinstance(paging, dict) else None
    has_next = any(isinstance(link, dict) and "next" in (link.get("rel") or []) for link in body.get("links") or [])
    page.more = bool(entities) and (has_next or (isinstance(total, int) and offset + len(entities) < total))
    return page


def _add_child(page: FolderPage, folder: str, entity: object) -> None:
    """File a Siren entity under the page's folders or assets by its class (others are skipped)."""
    if not isinstance(entity, dict) or not isinstance(entity.get("properties"), dict):
        return
    name = entity["properties"].get("name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return
    classes = entity.get("class") or []
    if "assets/folder" in classes:
        page.folders.append(f"{folder}/{name}")
    elif "assets/asset" in classes:
        page.assets.append(f"{folder}/{name}")
