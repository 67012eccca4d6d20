"""System checks: misconfiguration is reported here and on the dashboard, never by a crash."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from pimsync.adobe import aem, service_credentials
from pimsync.outbound.redaction import without_credentials
from pimsync.pim import akeneo
from pimsync.retention import MINIMUM_DAYS


@register()
def configuration(app_configs, **kwargs):
    """Every configuration problem found in the settings; the dashboard shows them too."""
    return [*_adobe(), *_pim(), *_environment(), *_journal()]


def _adobe() -> list:
    """The secret key, the Adobe credential, and where events come from and are written to."""
    problems = []
    if not settings.SECRET_KEY:
        problems.append(
            Error("SECRET_KEY is not set", hint="Set SECRET_KEY, or DEBUG=1 on a laptop.", id="pimsync.E001")
        )
    if not settings.ADOBE_CLIENT_ID:
        problems.append(
            Warning(
                "ADOBE_CLIENT_ID is not set: every webhook delivery will be refused (401)",
                hint="Copy the client id of the OAuth Server-to-Server credential from the Adobe Developer Console.",
                id="pimsync.W001",
            )
        )
    if not settings.AEM_EVENT_SOURCE:
        problems.append(
            Warning(
                "AEM_EVENT_SOURCE is empty and cannot be derived from AEM_AUTHOR_URL: every event will be ignored",
                hint="Set AEM_AUTHOR_URL=https://author-pP-eE.adobeaemcloud.com "
                "or AEM_EVENT_SOURCE=acct:aem-pP-eE@adobe.com.",
                id="pimsync.W002",
            )
        )
    if not settings.PIMSYNC_SANDBOX and not settings.AEM_AUTHOR_URL:
        problems.append(Warning("AEM_AUTHOR_URL is not set: nothing can be written to AEM", id="pimsync.W003"))
    if settings.AEM_PATCH_PATH_STYLE not in aem.PATH_STYLES:
        problems.append(
            Error(
                f"AEM_PATCH_PATH_STYLE={settings.AEM_PATCH_PATH_STYLE[:40]!r} is not one of: "
                + ", ".join(aem.PATH_STYLES),
                hint="Leave it unset (pointer) unless `manage.py doctor --write-test` says AEM wants another style.",
                id="pimsync.E012",
            )
        )
    if not settings.PIMSYNC_SANDBOX and settings.AEM_AUTHOR_URL and not settings.ADOBE_CLIENT_SECRET:
        problems.append(Warning("ADOBE_CLIENT_SECRET is not set: no IMS token can be requested", id="pimsync.W004"))
    credential_problem = service_credentials.problem()
    if credential_problem:
        problems.append(
            Error(
                credential_problem,
                hint="Set it to the JSON of a technical account from AEM's Developer Console (Integrations), "
                "or to the path of that file; unset, a backfill uses the OAuth Server-to-Server token.",
                id="pimsync.E013",
            )
        )
    return problems


def _journal() -> list:
    """The Journaling API pull: the guarantee behind the webhook, off while its URL is unset."""
    if not settings.ADOBE_JOURNAL_URL:
        if settings.DEBUG:
            return []
        return [
            Warning(
                "ADOBE_JOURNAL_URL is not set: events the webhook misses (an outage, a disabled registration) "
                "are lost for good",
                hint="Copy the registration's Journaling endpoint from Adobe Developer Console (docs/deployment.md: "
                "Connect Adobe).",
                id="pimsync.W040",
            )
        ]
    problems = []
    if not settings.ADOBE_IMS_ORG_ID:
        problems.append(
            Error(
                "ADOBE_JOURNAL_URL is set but ADOBE_IMS_ORG_ID is not: the Journaling API refuses pulls without it",
                hint="Copy the organization id (…@AdobeOrg) from Adobe Developer Console.",
                id="pimsync.E040",
            )
        )
    if "adobeio_api" not in settings.ADOBE_SCOPES.split(","):
        problems.append(
            Warning(
                "ADOBE_SCOPES lacks adobeio_api: IMS tokens will not be accepted by the Journaling API",
                hint="Add the I/O Management API to the project and adobeio_api to ADOBE_SCOPES.",
                id="pimsync.W041",
            )
        )
    return problems


def _pim() -> list:
    """A PIM connector this version has, with what it needs."""
    problems = []
    if settings.PIM_CONNECTOR == "rest" and not settings.PIM_BASE_URL:
        problems.append(Error("PIM_CONNECTOR=rest needs PIM_BASE_URL", id="pimsync.E003"))
    if settings.PIM_CONNECTOR == "akeneo":
        problems.extend(_akeneo())
    if settings.PIM_CONNECTOR not in {"rest", "demo", "akeneo"}:
        problems.append(
            Error(f"PIM_CONNECTOR={settings.PIM_CONNECTOR!r} is not rest, akeneo or demo", id="pimsync.E004")
        )
    if settings.AKENEO_EVENT_SECRETS and settings.PIM_CONNECTOR != "akeneo":
        problems.append(
            Warning(
                f"AKENEO_EVENT_SECRETS is set but PIM_CONNECTOR={settings.PIM_CONNECTOR}: Akeneo's notifications "
                "are stored, but the products they name cannot be read from this PIM",
                hint="Set PIM_CONNECTOR=akeneo, or unset AKENEO_EVENT_SECRETS.",
                id="pimsync.W009",
            )
        )
    return problems


def _akeneo() -> list:
    """What the Akeneo connector needs, by name (secrets are named, never shown)."""

    problems = []
    missing = akeneo.missing_settings()
    if missing:
        problems.append(
            Error(
                f"PIM_CONNECTOR=akeneo needs {', '.join(missing)}: no product can be looked up",
                hint="Create a Connection in Akeneo (Connect → Connection settings) and copy its credentials "
                "(docs/deployment.md: Akeneo).",
                id="pimsync.E006",
            )
        )
    if settings.PIM_ASSET_LINK_ATTRIBUTE and not settings.AEM_AUTHOR_URL and not settings.PIMSYNC_SANDBOX:
        problems.append(
            Warning(
                "PIM_ASSET_LINK_ATTRIBUTE is set but AEM_AUTHOR_URL is not: the asset links would be empty",
                id="pimsync.W007",
            )
        )
    if not settings.AKENEO_EVENT_SECRETS:
        problems.append(
            Warning(
                "AKENEO_EVENT_SECRETS is not set: /webhooks/akeneo answers 404 and changes in Akeneo are found "
                "by the poll only (every few minutes)",
                hint="Copy the Event Platform subscription's secrets (primary,secondary) or the Events API secret.",
                id="pimsync.W008",
            )
        )
    return problems


@register(deploy=True)
def akeneo_connection(app_configs, **kwargs):
    """`manage.py check --deploy`: whether Akeneo accepts the Connection now (one token and one call)."""

    if settings.PIM_CONNECTOR != "akeneo" or akeneo.missing_settings():
        return []

    problem = akeneo.connection_problem(cached=False)
    if problem:
        where = without_credentials(settings.PIM_BASE_URL)
        return [Error(f"cannot use Akeneo at {where}: {problem}", id="pimsync.E008")]
    return []


# An HMAC key shorter than this can be guessed offline from one signed request.
MIN_SECRET_BYTES = 16


@register(deploy=True)
def exposure(app_configs, **kwargs):
    """`manage.py check --deploy`: what is open or weak when deployed (secrets are named, never shown)."""
    problems = []
    if not settings.DEBUG and not settings.PIMSYNC_METRICS_TOKEN:
        problems.append(
            Warning(
                "PIMSYNC_METRICS_TOKEN is not set: anyone who reaches /metrics reads pimsync's figures",
                hint="Set PIMSYNC_METRICS_TOKEN and give Prometheus the same bearer token.",
                id="pimsync.W050",
            )
        )
    webhook_secrets = [secret.strip() for secret in settings.PIM_WEBHOOK_SECRET.split(",") if secret.strip()]
    for name, secrets in (
        ("PIM_WEBHOOK_SECRET", webhook_secrets),
        ("AKENEO_EVENT_SECRETS", settings.AKENEO_EVENT_SECRETS),
    ):
        if any(len(secret.encode()) < MIN_SECRET_BYTES for secret in secrets):
            problems.append(
                Warning(
                    f"{name} holds a secret shorter than {MIN_SECRET_BYTES} bytes: a signed request can be "
                    "forged once it is guessed",
                    hint="Use a random secret of 32 characters or more (e.g. `openssl rand -hex 32`).",
                    id="pimsync.W051",
                )
            )
    if settings.PIM_CONNECTOR == "akeneo" and urlsplit(settings.PIM_BASE_URL).scheme.lower() == "http":
        problems.append(
            Warning(
                "PIM_BASE_URL is http://: Akeneo's password grant sends the Connection's secret and its "
                "user's password, and every token, unencrypted",
                hint="Use Akeneo's https:// address.",
                id="pimsync.W052",
            )
        )
    return problems


def _environment() -> list:
    """Values the settings could not read, sandbox conflicts, django-q2 timing and the key path prefix."""
    problems = []
    for name, shown, expected in getattr(settings, "PIMSYNC_ENV_PROBLEMS", []):
        problems.append(
            Error(
                f"{name}={shown} is not {expected}",
                hint=f"Fix or unset {name}; until then its default is used.",
                id="pimsync.E002",
            )
        )
    if getattr(settings, "PIMSYNC_SANDBOX_CONFLICT", ""):
        problems.append(
            Error(
                settings.PIMSYNC_SANDBOX_CONFLICT,
                hint="Unset PIMSYNC_SANDBOX to use the real AEM, or unset AEM_AUTHOR_URL to use the sandbox.",
                id="pimsync.E007",
            )
        )
    if settings.Q_CLUSTER["retry"] <= settings.Q_CLUSTER["timeout"]:
        problems.append(
            Error("django-q2 retry must exceed timeout, or running tasks are handed out twice", id="pimsync.E005")
        )
    prefix = settings.ADOBE_EVENTS_KEY_PATH_PREFIX
    if not (prefix.startswith("/") and prefix.endswith("/")) or "//" in prefix or "/../" in prefix:
        problems.append(
            Error(
                f"ADOBE_EVENTS_KEY_PATH_PREFIX={prefix!r} is not a path like /prod/keys/: "
                "every webhook delivery will be refused (401)",
                hint="Leave it unset; Adobe's signing keys live under /prod/keys/.",
                id="pimsync.E010",
            )
        )
    problems.extend(retention())
    problems.extend(alerting())
    return problems


def retention() -> list[Error]:
    """Retention settings below the week of ids that redelivery dedupe needs."""
    problems = []
    for name, check_id in (
        ("PIMSYNC_RETENTION_DAYS", "pimsync.E020"),
        ("PIMSYNC_RETENTION_FAILED_DAYS", "pimsync.E021"),
    ):
        value = getattr(settings, name)
        if value < MINIMUM_DAYS:
            problems.append(
                Error(
                    f"{name}={value} is below {MINIMUM_DAYS} days: {MINIMUM_DAYS} is used meanwhile",
                    hint="Adobe redelivers an event for 24 hours and replays its journal for 7 days; dedupe "
                    f"needs the ids of that week, so set {name} to {MINIMUM_DAYS} or more.",
                    id=check_id,
                )
            )
    return problems


def alerting() -> list:
    """A chat webhook that is not an http(s) URL; alert links that would point at a laptop."""
    problems = []
    url = settings.PIMSYNC_ALERT_WEBHOOK_URL
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        problems.append(
            Error(
                "PIMSYNC_ALERT_WEBHOOK_URL is not an http(s) URL: no alert reaches the chat",
                hint="Paste the incoming webhook URL exactly as Slack, Teams or Mattermost shows it.",
                id="pimsync.E030",
            )
        )
    channels = settings.PIMSYNC_ALERT_EMAILS or url
    if channels and not settings.DEBUG and urlsplit(settings.PIMSYNC_PUBLIC_URL).hostname in ("127.0.0.1", "localhost"):
        problems.append(
            Warning(
                f"PIMSYNC_PUBLIC_URL is {settings.PIMSYNC_PUBLIC_URL}: the links in alert messages lead nowhere",
                hint="Set PIMSYNC_PUBLIC_URL to the dashboard's public address, e.g. https://pimsync.example.com.",
                id="pimsync.W030",
            )
        )
    return problems
