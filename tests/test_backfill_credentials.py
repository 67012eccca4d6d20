"""Backfill path lookups and the credentials they need: the Folders API with the OAuth
Server-to-Server token, the classic endpoints refusing that token and naming the credential Adobe
documents for them, and an AEM service credential exchanged with IMS (a signed JWT) to use them."""

from __future__ import annotations

import copy
import io
import json

import pytest
from django.core.management import CommandError, call_command

from pimsync.adobe import service_credentials
from pimsync.checks import configuration
from pimsync.models import AccessToken, Asset
from standins.adobe import service_credential
from tests.conftest import new_key

pytestmark = pytest.mark.django_db

DOC = "generating-access-tokens-for-server-side-apis"


@pytest.fixture(autouse=True)
def _no_service_token_remembered():
    service_credentials.forget()
    yield
    service_credentials.forget()


def uid(n: int) -> str:
    return f"urn:aaid:aem:0000bbbb-0000-4000-8000-{n:012d}"


@pytest.fixture
def dam(world):
    """Three assets in two folders of AEM."""
    for n, path in enumerate(
        ["/content/dam/shop/SKU-1_a.png", "/content/dam/shop/SKU-2_b.png", "/content/dam/shop/sub/SKU-3_c.png"], 1
    ):
        world.aem.add_asset(uid(n), {}, path=path)
    return world


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill", *args, stdout=out)
    return out.getvalue()


def export(tmp_path, *paths: str) -> str:
    csv = tmp_path / "export.csv"
    csv.write_text("assetPath\n" + "".join(f"{path}\n" for path in paths))
    return str(csv)


def test_a_path_lookup_refused_to_the_s2s_token_names_the_credential_adobe_documents(dam, tmp_path):
    dam.aem.classic_needs_service_token = True

    with pytest.raises(CommandError) as refused:
        backfill(export(tmp_path, "/content/dam/shop/SKU-1_a.png", "/content/dam/shop/SKU-2_b.png"), "--dry-run")

    message = str(refused.value)
    assert "AEM refused the path lookup (<path>.json) to the OAuth Server-to-Server token (403)" in message
    assert "AEM service credential (AEM Developer Console → Integrations → technical account" in message
    assert "AEM_SERVICE_CREDENTIALS" in message and "local development token" in message
    assert DOC in message
    assert not Asset.objects.exists()


def test_a_folder_walk_refused_on_the_classic_listing_names_the_credential(dam):
    dam.aem.classic_needs_service_token = True

    with pytest.raises(CommandError, match=r"cannot list /content/dam/shop: AEM refused the folder listing"):
        backfill("--folder", "/content/dam/shop", "--dry-run")
    # The Folders API took the S2S token; only the classic listing refused it.
    assert any(call.startswith("/adobe/folders?path=%2Fcontent%2Fdam%2Fshop") for call in dam.aem.path_calls)


def test_with_a_service_credential_the_classic_endpoints_get_its_token_from_one_jwt_exchange(dam, tmp_path, settings):
    dam.aem.classic_needs_service_token = True
    settings.AEM_SERVICE_CREDENTIALS = json.dumps(service_credential())

    out = backfill(export(tmp_path, "/content/dam/shop/SKU-1_a.png", "/content/dam/shop/SKU-2_b.png"))

    assert "2 asset(s) found, 0 skipped" in out
    assert set(Asset.objects.values_list("asset_id", flat=True)) == {uid(1), uid(2)}
    assert dam.ims.service_tokens == ["service-token-1"]  # the JWT verified, exchanged once for both
    # Shared like the IMS token: encrypted at rest, no secret of the credential in the row.
    row = bytes(AccessToken.objects.get(name="aem-service").encrypted)
    assert b"service-token-1" not in row and b"p8e-service-secret" not in row


def test_a_service_credential_in_a_file_walks_a_folder_through_the_folders_api(dam, tmp_path, settings):
    dam.aem.classic_needs_service_token = True
    dam.aem.folders_page = 1  # the Folders API pages its children with a cursor
    dam.aem.add_asset(uid(4), {}, path="/content/dam/shop/tents/SKU-4_d.png")
    credential = tmp_path / "aem-credential.json"
    credential.write_text(json.dumps(service_credential()))
    settings.AEM_SERVICE_CREDENTIALS = str(credential)

    out = backfill("--folder", "/content/dam/shop", "--dry-run")

    assert "4 row(s) read from /content/dam/shop: 4 asset(s) found, 0 skipped" in out
    folder_calls = [call for call in dam.aem.path_calls if call.startswith("/adobe/folders")]
    assert any("cursor=1" in call for call in folder_calls)


def test_a_credential_ims_refuses_says_so_without_showing_it(dam, tmp_path, settings):
    forged = copy.deepcopy(service_credential())
    from cryptography.hazmat.primitives import serialization

    other = new_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    forged["integration"]["privateKey"] = other.decode()
    settings.AEM_SERVICE_CREDENTIALS = json.dumps(forged)

    with pytest.raises(CommandError) as refused:
        backfill(export(tmp_path, "/content/dam/shop/SKU-1_a.png"), "--dry-run")

    message = str(refused.value)
    assert "IMS refused the AEM service credential (400: invalid_signature" in message
    assert "p8e-service-secret" not in message and "PRIVATE KEY" not in message


@pytest.mark.parametrize(
    "value, problem",
    [
        ("{not json", "AEM_SERVICE_CREDENTIALS is not valid JSON"),
        ("/nowhere/credential.json", "neither JSON nor the path of a readable file"),
        ('{"integration": {"imsEndpoint": "ims-na1.adobelogin.com", "privateKey": "s3cr3t"}}', "lacks org, id"),
    ],
)
def test_an_unusable_service_credential_is_reported_by_the_checks_without_its_value(settings, value, problem):
    settings.AEM_SERVICE_CREDENTIALS = value
    found = [m for m in configuration(None) if m.id == "pimsync.E013"]
    assert len(found) == 1 and problem in found[0].msg
    assert "s3cr3t" not in found[0].msg
