"""JSON Web Tokens as Adobe IMS uses them (RFC 7519): a service credential's JWT, signed RS256 with
the credential's private key, and a look inside an IMS access token (itself a JWT) for its claims.

Only what pimsync needs: no library, because signing one RS256 token and reading a payload is a
few lines over `cryptography`, which pimsync already has.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

MAX_TOKEN_CHARS = 16 * 1024


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs write every part."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """The bytes of a base64url part (padding optional); ValueError when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _part(document: dict) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def sign_rs256(claims: dict, key: rsa.RSAPrivateKey) -> str:
    """`claims` as a compact JWT signed RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3)."""
    signing_input = f"{_part({'alg': 'RS256', 'typ': 'JWT'})}.{_part(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def split(token: str) -> tuple[dict, dict, bytes, bytes]:
    """A compact JWT's header, claims, signing input and signature, none of it verified;
    ValueError when `token` is not one."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise ValueError("not a JWT")
    header_part, claims_part, signature_part = token.split(".")
    try:
        header = json.loads(unb64url(header_part))
        claims = json.loads(unb64url(claims_part))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError("not a JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return header, claims, f"{header_part}.{claims_part}".encode(), unb64url(signature_part)


def unverified_claims(token: str) -> dict | None:
    """The claims of a JWT read without checking its signature (for a diagnosis only: what an IMS
    access token says about its own scopes), or None when the token is not a JWT."""
    try:
        return split(token)[1]
    except ValueError:
        return None
