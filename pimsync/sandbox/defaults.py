"""Defaults that point pimsync at the sandbox it serves itself (`pimsync.sandbox`), when sandbox mode is on.

Only base URLs and demo credentials change: signature verification, the IMS client and the AEM
client are the production code paths, talking HTTP to `pimsync/sandbox/`.
"""

import os

SANDBOX_CLIENT_ID = "0123456789abcdef0123456789abcdef"  # the recipient of the example events in tests/fixtures
SANDBOX_EVENT_SOURCE = "acct:aem-p12345-e67890@adobe.com"
SANDBOX_TECHNICAL_ACCOUNT = "pimsync-sandbox@techacct.adobe.com"
SANDBOX_ORG_ID = "5A4D0000000000000000B0X0@AdobeOrg"
# What `simulate_pim_change` signs its PIM webhook with; sandbox mode with the demo PIM only,
# never beside a real PIM or in production.
SANDBOX_PIM_WEBHOOK_SECRET = "sandbox-pim-webhook-secret"


def sandbox_conflict(settings: dict) -> str:
    """Why sandbox mode cannot run beside these settings, or "" when it can."""
    author = os.environ.get("AEM_AUTHOR_URL", "").strip().rstrip("/")
    if author and author != settings["PIMSYNC_PUBLIC_URL"] + "/sandbox/aem":
        return (
            "PIMSYNC_SANDBOX=1 with AEM_AUTHOR_URL set to a real AEM: sandbox mode would swap in its "
            "own signing keys and client id beside it"
        )
    if settings.get("PIM_CONNECTOR") == "akeneo" and settings.get("PIM_ASSET_LINK_ATTRIBUTE"):
        return (
            "PIMSYNC_SANDBOX=1 with PIM_CONNECTOR=akeneo and PIM_ASSET_LINK_ATTRIBUTE: sandbox mode would "
            "write sandbox asset links into a real Akeneo, driven by requests signed with its public secret"
        )
    return ""


def apply_sandbox_defaults(settings: dict) -> None:
    """Fill the Adobe/AEM settings the operator left empty with the sandbox's own endpoints."""
    base = settings["PIMSYNC_PUBLIC_URL"] + "/sandbox"

    def default(name: str, value: str) -> None:
        if not os.environ.get(name):
            settings[name] = value

    default("AEM_AUTHOR_URL", base + "/aem")
    default("ADOBE_IMS_TOKEN_URL", base + "/ims/token/v3")
    default("ADOBE_EVENTS_KEY_BASE_URL", base + "/keys")
    default("ADOBE_CLIENT_ID", SANDBOX_CLIENT_ID)
    default("ADOBE_CLIENT_SECRET", "sandbox-secret")
    default("ADOBE_TECHNICAL_ACCOUNT_EMAIL", SANDBOX_TECHNICAL_ACCOUNT)
    default("AEM_EVENT_SOURCE", SANDBOX_EVENT_SOURCE)
    default("ADOBE_JOURNAL_URL", base + "/journal")
    default("ADOBE_IMS_ORG_ID", SANDBOX_ORG_ID)
    if settings.get("PIM_CONNECTOR", "demo") == "demo":
        # The secret is in this repository: beside a real PIM anyone could make pimsync re-sync.
        default("PIM_WEBHOOK_SECRET", SANDBOX_PIM_WEBHOOK_SECRET)
    if not os.environ.get("ADOBE_SCOPES") and "adobeio_api" not in settings["ADOBE_SCOPES"].split(","):
        settings["ADOBE_SCOPES"] += ",adobeio_api"  # the journal's scope, as a real credential needs it
