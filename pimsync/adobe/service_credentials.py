"""An AEM service credential: the technical account AEM's Developer Console gives (Integrations →
Technical Accounts → Create new technical account), exchanged with Adobe IMS for an access token.

Adobe documents this credential, or a local development token, for AEM's classic HTTP endpoints
(a node's `<path>.json`, the Assets HTTP API under `/api/assets`), which the OAuth
Server-to-Server credential of the OpenAPI-based APIs is not documented for
(https://experienceleague.adobe.com/en/docs/experience-manager-cloud-service/content/implementing/developing/generating-access-tokens-for-server-side-apis).
pimsync uses it for those endpoints only, when `AEM_SERVICE_CREDENTIALS` holds the JSON the
Developer Console gives (or the path of the file holding it).

The exchange, as Adobe documents it (https://github.com/AdobeDocs/adobeio-auth, JWT/JWT.md, and
Adobe's own client https://github.com/adobe/aemcs-api-client-lib, index.js): a JWT with the claims
`iss` (the organization), `sub` (the technical account id), `exp`, `aud`
(`https://<imsEndpoint>/c/<clientId>`) and one `https://<imsEndpoint>/s/<metascope>: true` per
metascope, signed RS256 with the credential's private key, POSTed form-encoded as `jwt_token`
with `client_id` and `client_secret` to IMS's `/ims/exchange/jwt`. The token is shared by every
process like the IMS token (`tokens.SharedToken`, an encrypted `AccessToken` row).

Nothing here ever logs or shows the credential: messages name the fields, never their values.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from pimsync.adobe import jwts
from pimsync.outbound import http
from pimsync.outbound.tokens import SharedToken

TOKEN_NAME = "aem-service"
EXCHANGE_PATH = "/ims/exchange/jwt"
EXPIRY_MARGIN = timedelta(minutes=5)
# The JWT only has to live through its exchange (Adobe allows at most 24 hours).
JWT_SECONDS = 600
MAX_FILE_BYTES = 64 * 1024
# Adobe's examples of the exchange's answer give `expires_in` in milliseconds (86399999: a day);
# the OAuth token endpoint gives seconds. A lifetime above this many seconds is milliseconds.
MILLISECONDS_ABOVE = 7 * 24 * 3600
FIELDS = (
    "imsEndpoint",
    "org",
    "id",
    "technicalAccount.clientId",
    "technicalAccount.clientSecret",
    "metascopes",
    "privateKey",
)


class CredentialError(ValueError):
    """AEM_SERVICE_CREDENTIALS cannot be used; the message names what is wrong, never a value."""


@dataclass(frozen=True)
class Credential:
    """What the exchange needs from the Developer Console's JSON (secrets kept out of repr)."""

    ims_endpoint: str
    org: str
    account_id: str
    client_id: str
    metascopes: tuple[str, ...]
    client_secret: str = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def claims(self, now: float | None = None) -> dict:
        """The JWT's claims, as Adobe lists them."""
        base = f"https://{self.ims_endpoint}"
        claims = {
            "exp": int((now or time.time()) + JWT_SECONDS),
            "iss": self.org,
            "sub": self.account_id,
            "aud": f"{base}/c/{self.client_id}",
        }
        claims.update({f"{base}/s/{scope}": True for scope in self.metascopes})
        return claims


def configured() -> bool:
    """Whether AEM_SERVICE_CREDENTIALS is set (classic endpoints then use its token)."""
    return bool(settings.AEM_SERVICE_CREDENTIALS)


def load() -> Credential:
    """The credential AEM_SERVICE_CREDENTIALS holds (JSON, or the path of a JSON file)."""
    raw = settings.AEM_SERVICE_CREDENTIALS.strip()
    if not raw:
        raise CredentialError("AEM_SERVICE_CREDENTIALS is not set")
    if not raw.startswith("{"):
        path = Path(raw)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CredentialError("AEM_SERVICE_CREDENTIALS names a file larger than a credential")
            raw = path.read_text(encoding="utf-8")
        except OSError:
            raise CredentialError("AEM_SERVICE_CREDENTIALS is neither JSON nor the path of a readable file") from None
        except UnicodeDecodeError:
            raise CredentialError("AEM_SERVICE_CREDENTIALS names a file that is not UTF-8 JSON") from None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise CredentialError("AEM_SERVICE_CREDENTIALS is not valid JSON") from None
    return _credential(document)


def _credential(document: object) -> Credential:
    # The Developer Console's file wraps the credential in {"ok": …, "integration": {…}}; the
    # integration object alone is accepted too.
    integration = document.get("integration", document) if isinstance(document, dict) else None
    if not isinstance(integration, dict):
        raise CredentialError("AEM_SERVICE_CREDENTIALS is not the JSON of an AEM service credential")
    values = {}
    for name in FIELDS:
        value = integration
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[name] = value
    missing = [name for name, value in values.items() if not isinstance(value, str) or not value.strip()]
    if missing:
        raise CredentialError(f"AEM_SERVICE_CREDENTIALS lacks {', '.join(missing)}")
    try:
        key = serialization.load_pem_private_key(values["privateKey"].encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialError("AEM_SERVICE_CREDENTIALS: privateKey is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError("AEM_SERVICE_CREDENTIALS: privateKey is not an RSA key (RS256 needs one)")
    endpoint = values["imsEndpoint"].strip()
    if "/" in endpoint or not endpoint.isprintable():
        raise CredentialError("AEM_SERVICE_CREDENTIALS: imsEndpoint is not a host name")
    return Credential(
        ims_endpoint=endpoint,
        org=values["org"].strip(),
        account_id=values["id"].strip(),
        client_id=values["technicalAccount.clientId"].strip(),
        metascopes=tuple(s.strip() for s in values["metascopes"].split(",") if s.strip()),
        client_secret=values["technicalAccount.clientSecret"],
        private_key=key,
    )


def exchange_url() -> str:
    """IMS's JWT exchange on the host of ADOBE_IMS_TOKEN_URL (one IMS serves both grants)."""
    parts = urlsplit(settings.ADOBE_IMS_TOKEN_URL)
    return f"{parts.scheme}://{parts.netloc}{EXCHANGE_PATH}"


def _fetch(previous: dict | None) -> tuple[dict, int]:
    """A new access token for the credential's technical account."""
    try:
        credential = load()
    except CredentialError as exc:
        raise http.HttpError(str(exc), retryable=False, error_class="aem_service_credentials") from None
    try:
        response = http.request(
            "POST",
            exchange_url(),
            data={
                "client_id": credential.client_id,
                "client_secret": credential.client_secret,
                "jwt_token": jwts.sign_rs256(credential.claims(), credential.private_key),
            },
            error_class="ims",
        )
    except http.HttpError as exc:
        if exc.status and 400 <= exc.status < 500:
            raise http.HttpError(
                f"IMS refused the AEM service credential ({exc.status}{_ims_error(exc.body)}): "
                "create a new technical account in AEM's Developer Console (Integrations) and set "
                "AEM_SERVICE_CREDENTIALS to its JSON",
                retryable=False,
                status=exc.status,
                error_class="aem_service_credentials",
            ) from None
        raise
    body = http.json_object(response, who="IMS's JWT exchange", error_class="ims", retryable=True)
    token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
    if not isinstance(token, str) or not token or not isinstance(lifetime, (int, float)):
        raise http.HttpError("IMS's JWT exchange answered without an access_token", retryable=True, error_class="ims")
    seconds = lifetime / 1000 if lifetime > MILLISECONDS_ABOVE else lifetime
    return {"access_token": token}, max(60, int(seconds))


def _ims_error(body: str) -> str:
    """`: invalid_scope (Metascopes in the JWT …)` from IMS's OAuth error body, if it has one."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return ""
    description = answer.get("error_description")
    more = f" ({description[:200]})" if isinstance(description, str) and description else ""
    return f": {answer['error'][:60]}{more}"


_token = SharedToken(TOKEN_NAME, _fetch, margin=EXPIRY_MARGIN)


def get_token() -> str:
    """A valid access token of the technical account (shared by every process)."""
    return _token.get()


def invalidate(token: str) -> None:
    """Forget `token` after AEM answered 401 with it."""
    _token.invalidate(token)


def forget() -> None:
    """Drop the process-local copy (tests, or after a new credential)."""
    _token.forget()


def problem() -> str:
    """Why AEM_SERVICE_CREDENTIALS cannot be used ("" when it is unset or can)."""
    if not configured():
        return ""
    try:
        load()
    except CredentialError as exc:
        return str(exc)
    return ""
