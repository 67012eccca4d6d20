"""Adobe I/O Events deliveries as the benchmark and the drills send them: a key pair, the signed
headers, `processing_completed` events, and whole HTTP requests signed on every core."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.load import build_request
from standins.adobe import CLIENT_ID, SOURCE  # the client and the AEM environment the stand-ins play

KEY_PATH = "/prod/keys/pub-key-bench.pem"


def signer() -> tuple[bytes, bytes]:
    """A new RSA key pair: (private key PEM, public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, public


def signed_headers(key, body: bytes) -> dict[str, str]:
    """The headers Adobe I/O Events sends with `body`, signed with `key` (a loaded private key)."""
    signature = key.sign(body, rsa_padding.PKCS1v15(), hashes.SHA256())
    return {
        "Content-Type": "application/cloudevents+json; charset=UTF-8",
        "x-adobe-digital-signature-1": base64.b64encode(signature).decode(),
        "x-adobe-public-key1-path": KEY_PATH,
        "x-adobe-delivery-id": str(uuid.uuid4()),
    }


def _sign_chunk(args) -> list[bytes]:
    pem, host, bodies = args
    key = serialization.load_pem_private_key(pem, password=None)
    return [build_request("/webhooks/aem", body, signed_headers(key, body), host) for body in bodies]


def signed_requests(pem: bytes, host: str, bodies: list[bytes]) -> list[bytes]:
    """Sign on every core before the clock starts."""
    chunks = [bodies[i : i + 500] for i in range(0, len(bodies), 500)]
    with ProcessPoolExecutor() as pool:
        return [request for chunk in pool.map(_sign_chunk, [(pem, host, c) for c in chunks]) for request in chunk]


def event(n: int, sku: str, padding: int = 0, asset: int | None = None) -> dict:
    """A `processing_completed` event for asset number `asset` (default `n`), named after `sku`."""
    asset = n if asset is None else asset
    asset_id = f"urn:aaid:aem:{uuid.UUID(int=asset + 1, version=4)}"
    name = f"{sku}_{asset:06d}.png"
    data = {
        "assetId": asset_id,
        "repositoryMetadata": {
            "repo:assetId": asset_id,
            "repo:name": name,
            "repo:path": f"/content/dam/pimsync-demo/products/{name}",
            "dc:format": "image/png",
            "aem:assetState": "processed",
        },
    }
    if padding:
        data["assetMetadata"] = {"xcm:machineKeywords": "x" * padding}
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": "aem.assets.asset.processing_completed",
        "time": datetime.now(UTC).isoformat(),
        "eventid": str(uuid.uuid4()),
        "recipientclientid": CLIENT_ID,
        "data": data,
    }
