"""AEM: read and write an asset's metadata through the Assets Author API
(https://developer.adobe.com/experience-cloud/experience-manager-apis/api/stable/assets/author/),
and, for a backfill, a folder's sub-folders through the Folders API
(https://adobe-aem-folders-experimental.redoc.ly), an asset path's id and a folder's assets
through the author service's JSON rendering and the classic Assets HTTP API
(https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/assets/admin/mac-api-assets).

The OpenAPI-based calls (metadata, folders) carry the OAuth Server-to-Server token. No documented
OpenAPI call resolves an asset's path or lists a folder's assets, so those stay on the classic
endpoints, for which Adobe documents an AEM service credential or a local development token
(https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/implementing/developing/generating-access-tokens-for-server-side-apis):
with AEM_SERVICE_CREDENTIALS set they carry its token (`service_credentials`), and a refusal
(401/403) says which credential they need.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from django.conf import settings

from pimsync.adobe import ims, service_credentials
from pimsync.outbound import http


@dataclass
class Metadata:
    """An asset's metadata properties and the ETag to make a PATCH conditional on."""

    values: dict
    etag: str
    # `repositoryMetadata`: what AEM computes (repo:path, repo:name…), read-only.
    repository: dict = field(default_factory=dict)


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
    values, repository = body.get("assetMetadata"), body.get("repositoryMetadata")
    repository = repository if isinstance(repository, dict) else {}
    etag = response.headers.get("ETag", "")
    if not etag:
        # Adobe's metadata guide puts the ETag in `repositoryMetadata["repo:etag"]` too, "for
        # If-Match (PATCH)"; without either, the PATCH goes out with If-Match: *.
        tag = repository.get("repo:etag")
        etag = tag if isinstance(tag, str) and len(tag) <= 200 and tag.isprintable() else ""
    return Metadata(values=values if isinstance(values, dict) else {}, etag=etag, repository=repository)


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


# Where a refusal of a classic endpoint sends the operator.
CREDENTIALS_PAGE = (
    "https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/implementing/"
    "developing/generating-access-tokens-for-server-side-apis"
)


def classic_token() -> str:
    """The token the classic endpoints get: the AEM service credential's when one is set, else the
    OAuth Server-to-Server token (asked for once, before a backfill's threads share it)."""
    return service_credentials.get_token() if service_credentials.configured() else ims.get_token()


def _classic_get(url: str, what: str):
    """GET a classic endpoint with the credential it is documented for; a 401 or 403 says which."""
    try:
        if not service_credentials.configured():
            return _call("GET", url, expected=(200,), headers={"Accept": "application/json"})
        token = service_credentials.get_token()
        try:
            return _send_service(url, token)
        except http.HttpError as exc:
            if exc.status != 401:
                raise
        service_credentials.invalidate(token)  # revoked early: one new token, one more try
        return _send_service(url, service_credentials.get_token())
    except http.HttpError as exc:
        if exc.status not in (401, 403):
            raise
        raise http.HttpError(
            _refusal(what, exc.status),
            retryable=False,
            status=exc.status,
            body=exc.body,
            error_class="aem_credentials",
        ) from None


def _send_service(url: str, token: str):
    # Adobe's example call with this token sends the bearer token alone (no API key).
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return http.request("GET", url, expected=(200,), headers=headers, error_class="aem", pause_key="aem")


def _refusal(what: str, status: int) -> str:
    """What to do when AEM refuses a classic endpoint, by the credential that was sent."""
    if service_credentials.configured():
        if status == 401:
            return (
                f"AEM refused the AEM service credential's token on {what} (401): AEM_SERVICE_CREDENTIALS "
                "must be a current technical account of this environment (AEM Developer Console → Integrations)"
            )
        return (
            f"AEM refused {what} to the service credential's technical account (403): give that user "
            "read access to the DAM paths in AEM (it starts in the Contributors group)"
        )
    return (
        f"AEM refused {what} to the OAuth Server-to-Server token ({status}): Adobe documents this classic "
        "endpoint for an AEM service credential (AEM Developer Console → Integrations → technical account; "
        f"set AEM_SERVICE_CREDENTIALS to its JSON) or a local development token, not for that token: {CREDENTIALS_PAGE}"
    )


def asset_id_for_path(path: str) -> str:
    """The asset id (`urn:aaid:aem:<jcr:uuid>`) of the asset at `path`, read from the author
    service's JSON rendering of the node, as Adobe's server-to-server tutorial does
    (https://experienceleague.adobe.com/en/docs/experience-manager-learn/cloud-service/aem-apis/openapis/use-cases/invoke-api-using-oauth-s2s).
    HttpError with status 404 when AEM has nothing there."""
    url = f"{settings.AEM_AUTHOR_URL}{_quoted(_checked(path))}.json"
    response = _classic_get(url, "the path lookup (<path>.json)")
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
    `GET /api/assets/<folder below /content/dam>.json?offset=&limit=`. A backfill takes the assets
    from it and the sub-folders from the Folders API (`folder`)."""
    folder = _checked(folder, folder=True).rstrip("/")
    below = folder[len(DAM_ROOT) :]
    url = f"{settings.AEM_AUTHOR_URL}/api/assets{_quoted(below)}.json?offset={int(offset)}&limit={int(limit)}"
    response = _classic_get(url, "the folder listing (/api/assets)")
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


# --- folders, through the Folders API --------------------------------------------------------

# The Folders API's `limit` is 1..50.
FOLDERS_PAGE = 50
MAX_FOLDER_PAGES = 10_000


@dataclass
class Folder:
    """A folder as the Folders API names it: its id (`urn:aaid:aem:…`) and its sub-folders' paths."""

    path: str
    folder_id: str = ""
    children: list[str] = field(default_factory=list)


def folder(path: str, *, pages: int = MAX_FOLDER_PAGES) -> Folder:
    """The folder at `path`, its id and its sub-folders (those of the first `pages` pages): `GET
    /adobe/folders?path=` with the OAuth Server-to-Server token, page by page (the answer carries a
    `cursor` while more remain). It lists folders only, never assets. HttpError with status 404
    when AEM has no folder there."""
    path = _checked(path, folder=True).rstrip("/")
    found = Folder(path)
    cursor = ""
    for _page in range(pages):
        query = {"path": path, "limit": FOLDERS_PAGE, **({"cursor": cursor} if cursor else {})}
        url = f"{settings.AEM_AUTHOR_URL}/adobe/folders?{urlencode(query)}"
        response = _call("GET", url, expected=(200,), headers={"Accept": "application/json"})
        body = http.json_object(response, who="AEM's Folders API", error_class="aem_bad_response", retryable=False)
        own = body.get("self") if isinstance(body.get("self"), dict) else {}
        if isinstance(own.get("folderId"), str):
            found.folder_id = own["folderId"][:255]
        children = body.get("children") or []
        if not isinstance(children, list):
            raise http.HttpError(
                "AEM's Folders API answered no list of children", retryable=False, error_class="aem_bad_response"
            )
        for child in children:
            child_path = child.get("path") if isinstance(child, dict) else None
            # Only a direct sub-folder: a listing must not send the walk anywhere else.
            if isinstance(child_path, str) and child_path.rsplit("/", 1)[0] == path and not path_problem(child_path):
                found.children.append(child_path)
        next_cursor = body.get("cursor")
        if not isinstance(next_cursor, str) or not next_cursor or next_cursor == cursor or not children:
            return found
        cursor = next_cursor
    return found
