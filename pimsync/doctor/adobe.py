"""The doctor's checks of Adobe's side: IMS, the I/O Events key server, the journal, AEM's
metadata (and the write test), and the backfill lookups (`pimsync.doctor`)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from django.conf import settings

from pimsync.adobe import aem, ims, journal_api, jwts, service_credentials
from pimsync.doctor.report import FAIL, OK, SKIP, Context, failure
from pimsync.models import PENDING, Asset, Event, Status
from pimsync.outbound import http
from pimsync.outbound.redaction import redact_url

# The journal's token must hold the I/O Management API's scope (Adobe's Journaling API reference,
# https://developer.adobe.com/events/docs/guides/api/journaling-api/: "Must hold the I/O
# Management API scope (`adobeio_api` scope …)").
JOURNAL_SCOPE = "adobeio_api"
# A key id Adobe never issued: asking for it proves the key server answers without needing the id
# of a real key, which only a delivery's headers carry.
PROBE_KEY = "pub-key-pimsync-doctor-probe.pem"
KEY_SERVER_TIMEOUT = 5
LEASE_WAIT_SECONDS = 10


# --- Adobe IMS ----------------------------------------------------------------------------------


def check_ims(context: Context) -> None:
    asked = f"POST {redact_url(settings.ADOBE_IMS_TOKEN_URL)} (client credentials of ADOBE_CLIENT_ID)"
    if not settings.ADOBE_CLIENT_ID or not settings.ADOBE_CLIENT_SECRET:
        context.add(
            FAIL,
            "IMS token",
            asked,
            "nothing: ADOBE_CLIENT_ID or ADOBE_CLIENT_SECRET is not set",
            "copy both from the OAuth Server-to-Server credential of the Adobe Developer Console project",
        )
        return
    try:
        token = ims.new_token()
    except http.HttpError as exc:
        todo = (
            "check ADOBE_CLIENT_ID and ADOBE_CLIENT_SECRET against the project's OAuth Server-to-Server "
            "credential in Adobe Developer Console (a rotated secret must be copied again), and ADOBE_SCOPES "
            "against the scopes listed on it"
            if exc.error_class == "ims_credentials"
            else "check ADOBE_IMS_TOKEN_URL and that this host can reach it over HTTPS"
        )
        context.add(FAIL, "IMS token", asked, failure(exc), todo)
        return
    context.ims_token = token
    context.add(OK, "IMS token", asked, "a token")
    _scopes(context, token)


def _scopes(context: Context, token: str) -> None:
    # IMS access tokens are JWTs whose payload names their scopes; read here without verifying the
    # signature, for a diagnosis only (Adobe's own aio-lib-ims does the same: `getTokenData`).
    asked = "the token's `scope` claim"
    claims = jwts.unverified_claims(token)
    scope = claims.get("scope") if claims else None
    if not isinstance(scope, str):
        context.add(SKIP, "IMS scopes", asked, "the token carries no readable scope claim (not a JWT)")
        return
    granted = [item.strip() for item in scope.split(",") if item.strip()]
    shown = ", ".join(granted)[:300]
    if settings.ADOBE_JOURNAL_URL and JOURNAL_SCOPE not in granted:
        context.add(
            FAIL,
            "IMS scopes",
            asked,
            f"{shown}: no {JOURNAL_SCOPE}, which the journal (ADOBE_JOURNAL_URL) needs",
            f"add the I/O Management API to the Developer Console project and {JOURNAL_SCOPE} to ADOBE_SCOPES",
        )
        return
    context.add(OK, "IMS scopes", asked, shown or "(none)")


# --- Adobe I/O Events ---------------------------------------------------------------------------


def check_key_server(context: Context) -> None:
    url = settings.ADOBE_EVENTS_KEY_BASE_URL + settings.ADOBE_EVENTS_KEY_PATH_PREFIX + PROBE_KEY
    asked = f"GET {redact_url(url)} (a key id that does not exist)"
    try:
        response = http.request("GET", url, expected=(200, 403, 404), error_class="keys", timeout=KEY_SERVER_TIMEOUT)
    except http.HttpError as exc:
        context.add(
            FAIL,
            "I/O Events key server",
            asked,
            failure(exc),
            "the webhook cannot verify a delivery while this host does not answer: check "
            "ADOBE_EVENTS_KEY_BASE_URL and outbound HTTPS from every web node",
        )
        return
    context.add(
        OK,
        "I/O Events key server",
        asked,
        f"{response.status_code}: it answers (a real key's id comes only with a delivery)",
    )


def check_journal(context: Context) -> None:
    if not settings.ADOBE_JOURNAL_URL:
        context.add(SKIP, "journal", "nothing", "ADOBE_JOURNAL_URL is not set: journal reconciliation is off")
        return
    separator = "&" if "?" in settings.ADOBE_JOURNAL_URL else "?"
    url = f"{settings.ADOBE_JOURNAL_URL}{separator}latest=true"
    asked = f"GET {redact_url(url)} (its end; no cursor is moved)"
    if not context.ims_token:
        context.add(SKIP, "journal", asked, "not asked: no IMS token (see the IMS line)")
        return
    try:
        page = journal_api.fetch(url)
    except http.HttpError as exc:
        context.add(FAIL, "journal", asked, failure(exc), _journal_todo(exc.status))
        return
    if page.status == 429:
        context.add(FAIL, "journal", asked, "429: asked to slow down", "run the doctor again in a minute")
        return
    context.add(OK, "journal", asked, f"{page.status}{' with a next link' if page.next_url else ''}")


def _journal_todo(status: int | None) -> str:
    if status in (401, 403):
        return (
            "the journal refused the token: the Developer Console project needs the I/O Management API "
            f"({JOURNAL_SCOPE} in ADOBE_SCOPES), ADOBE_IMS_ORG_ID must be the project's organization "
            "(…@AdobeOrg) and ADOBE_CLIENT_ID the project's client id"
        )
    if status == 404:
        return "set ADOBE_JOURNAL_URL to the registration's journaling endpoint as Developer Console shows it"
    return "check ADOBE_JOURNAL_URL and that this host can reach it over HTTPS"


# --- AEM ----------------------------------------------------------------------------------------


def check_aem(context: Context) -> None:
    asset_id = context.options.asset_id
    if not asset_id:
        newest = Asset.objects.known().order_by("-first_seen_at").first()
        asset_id = newest.asset_id if newest else ""
    context.asset = Asset.objects.filter(pk=asset_id).first() if asset_id else None
    context.asset_id = asset_id
    if not settings.AEM_AUTHOR_URL:
        context.add(FAIL, "AEM metadata", "nothing", "AEM_AUTHOR_URL is not set", "set it to the author service's URL")
        return
    if not asset_id:
        context.add(
            SKIP, "AEM metadata", "nothing", "pimsync knows no asset yet", "pass --asset urn:aaid:aem:… of an asset"
        )
        return
    asked = f"GET {redact_url(settings.AEM_AUTHOR_URL)}/adobe/assets/{asset_id}/metadata"
    if not context.ims_token:
        context.add(SKIP, "AEM metadata", asked, "not asked: no IMS token (see the IMS line)")
        return
    try:
        metadata = aem.get_metadata(asset_id)
    except http.HttpError as exc:
        context.add(FAIL, "AEM metadata", asked, failure(exc), _aem_todo(exc.status))
        return
    context.metadata = metadata
    etag = f"ETag {metadata.etag[:60]}" if metadata.etag else "no ETag (writes will be sent with If-Match: *)"
    context.add(OK, "AEM metadata", asked, f"200: {len(metadata.values)} properties, {etag}")


def _aem_todo(status: int | None) -> str:
    if status == 404:
        return "pass --asset with the id of an asset that exists in this AEM"
    if status == 401:
        return "the S2S credential's project needs the AEM Assets Author API card (Adobe Developer Console)"
    if status == 403:
        return (
            "allow ADOBE_CLIENT_ID in the environment's config.yaml (kind: API, allowedClientIDs, deployed by "
            "the config pipeline) and give the credential's product profile access to the assets"
        )
    return "check AEM_AUTHOR_URL and that this host can reach it over HTTPS"


def check_write_test(context: Context) -> None:
    if not context.options.write_test:
        return
    system = "AEM write test"
    if context.metadata is None:
        context.add(SKIP, system, "nothing", "not tried: the metadata GET did not succeed (see the AEM line)")
        return
    if context.asset is None:
        context.add(
            FAIL,
            system,
            "nothing",
            f"pimsync does not know {context.asset_id}, so the echo of a test write could not be recognised",
            "pass --asset with an asset pimsync has seen (the Assets page lists them)",
        )
        return
    name = _property(context.asset, context.metadata.values)
    if name is None:
        context.add(SKIP, system, "nothing", "the asset has no metadata property to write back")
        return
    if Event.objects.filter(asset_id=context.asset_id, status__in=(*PENDING, Status.PROCESSING)).exists():
        context.add(FAIL, system, "nothing", "the asset has events waiting", "run it again once they are done")
        return
    token = Asset.acquire(context.asset_id, wait=LEASE_WAIT_SECONDS)
    if token is None:
        context.add(FAIL, system, "nothing", "a worker is enriching this asset", "run it again in a minute")
        return
    accepted, refused, broken, value = [], [], "", None
    try:
        for style in aem.PATH_STYLES:
            metadata = aem.get_metadata(context.asset_id)
            value = metadata.values.get(name)
            change = {"path": name, "exists": True, "new": value}
            try:
                aem.patch_metadata(context.asset_id, aem.json_patch([change], style), metadata.etag)
                accepted.append(style)
            except http.HttpError as exc:
                if exc.status not in (400, 409, 422):
                    broken = failure(exc)
                    break
                refused.append(f"{style} ({exc.status}{_detail(exc.body)})")
    except http.HttpError as exc:
        broken = failure(exc)
    finally:
        # pimsync wrote this value: the metadata_updated event AEM sends for it is recognised as
        # pimsync's own echo (enrichment.echoes_last_write), exactly as after an enrichment.
        written = {}
        if accepted:
            current = Asset.objects.filter(pk=context.asset_id).values_list("last_written", flat=True).first()
            written = {"last_written": {**(current or {}), name: value}}
        Asset.release(context.asset_id, token, **written)
    asked = f"PATCH {name} with its current value, once per path style ({', '.join(aem.PATH_STYLES)})"
    said = f"accepted: {', '.join(accepted) or 'none'}; refused: {', '.join(refused) or 'none'}"
    if broken:
        context.add(FAIL, system, asked, f"{said}; then {broken}", _aem_todo(None))
    elif settings.AEM_PATCH_PATH_STYLE not in accepted:
        todo = (
            f"set AEM_PATCH_PATH_STYLE={accepted[0]}"
            if accepted
            else "AEM refused every path style: read its answers above"
        )
        context.add(FAIL, system, asked, f"{said}; AEM_PATCH_PATH_STYLE is {settings.AEM_PATCH_PATH_STYLE}", todo)
    else:
        context.add(OK, system, asked, said)


def _property(asset: Asset, values: dict) -> str | None:
    """The property to write back: one pimsync wrote before, else dc:title, else the first."""
    written = [path.lstrip("/") for path in asset.last_written]
    for name in [*written, "dc:title", *sorted(values)]:
        if name in values and values[name] is not None:
            return name
    return None


def _detail(body: str) -> str:
    """`: <detail>` of an RFC 7807 problem body, as AEM's OpenAPIs answer errors."""
    try:
        problem = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    detail = problem.get("detail") or problem.get("title") if isinstance(problem, dict) else None
    return f": {detail[:200]}" if isinstance(detail, str) and detail else ""


def check_backfill(context: Context) -> None:
    path = (context.asset.path if context.asset else "") or (
        context.metadata.repository.get("repo:path", "") if context.metadata else ""
    )
    if not isinstance(path, str) or not path or aem.path_problem(path):
        context.add(SKIP, "backfill lookups", "nothing", "no asset path known (see the AEM line)")
        return
    if not context.ims_token:
        context.add(SKIP, "backfill lookups", "nothing", "not asked: no IMS token (see the IMS line)")
        return
    parent = str(PurePosixPath(path).parent)
    asked = f"GET /adobe/folders?path={parent} (Folders API, OAuth S2S token)"
    try:
        found = aem.folder(parent, pages=1)
        context.add(OK, "backfill folder lookup", asked, f"200: folder {found.folder_id or '(no id)'}")
    except http.HttpError as exc:
        context.add(FAIL, "backfill folder lookup", asked, failure(exc), _aem_todo(exc.status))
    credential = "the AEM service credential" if service_credentials.configured() else "the OAuth S2S token"
    asked = f"GET {path}.json (classic endpoint, {credential})"
    try:
        asset_id = aem.asset_id_for_path(path)
    except http.HttpError as exc:
        todo = (
            "set AEM_SERVICE_CREDENTIALS to a technical account's JSON from AEM's Developer Console (Integrations)"
            if exc.error_class in ("aem_credentials", "aem_service_credentials")
            else _aem_todo(exc.status)
        )
        context.add(FAIL, "backfill path lookup", asked, failure(exc), todo)
        return
    if context.asset_id and asset_id != context.asset_id:
        context.add(FAIL, "backfill path lookup", asked, f"another asset: {asset_id}", "check the asset's path")
        return
    context.add(OK, "backfill path lookup", asked, f"200: {asset_id}")
