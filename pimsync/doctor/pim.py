"""The doctor's checks of the PIM (its token, a product, the attribute list, the write-back
attribute) and of the webhook secrets that are set (`pimsync.doctor`)."""

from __future__ import annotations

from django.conf import settings

from pimsync.doctor.report import FAIL, OK, SKIP, Context, failure
from pimsync.outbound import http
from pimsync.outbound.redaction import redact_url
from pimsync.pim import akeneo, connectors, webhook

MIN_SECRET_CHARS = 16
# Akeneo attribute types that hold the text pimsync writes back.
TEXT_TYPES = ("pim_catalog_text", "pim_catalog_textarea")


# --- the PIM ------------------------------------------------------------------------------------


def check_pim(context: Context) -> None:
    try:
        connector = connectors.connector()
    except connectors.ConfigurationError as exc:
        context.add(FAIL, "PIM", "nothing", str(exc), "set PIM_CONNECTOR to rest, akeneo or demo")
        return
    where = redact_url(settings.PIM_BASE_URL) if settings.PIM_BASE_URL else "the demo catalog"
    if not _pim_token(context, connector, where):
        return
    _pim_product(context, connector, where)
    attributes = _pim_attributes(context, connector, where)
    _link_attribute(context, connector, attributes)


def _pim_token(context: Context, connector: connectors.Connector, where: str) -> bool:
    if connector.name != "akeneo":
        said = (
            "PIM_API_TOKEN is sent as set (the product lookup tries it)"
            if settings.PIM_API_TOKEN
            else "this PIM needs no token"
        )
        context.add(SKIP, "PIM token", "nothing", said)
        return True
    asked = f"POST {where}{akeneo.TOKEN_PATH} (the Connection's credentials)"
    try:
        akeneo.access_token()
    except (http.HttpError, connectors.ConfigurationError) as exc:
        context.add(
            FAIL,
            "PIM token",
            asked,
            failure(exc),
            "check AKENEO_CLIENT_ID, AKENEO_SECRET, AKENEO_USERNAME and AKENEO_PASSWORD (Akeneo: Connect → "
            "Connection settings) and PIM_BASE_URL",
        )
        return False
    context.add(OK, "PIM token", asked, "a token")
    return True


def _pim_product(context: Context, connector: connectors.Connector, where: str) -> None:
    key = context.options.product_key
    if not key:
        context.add(SKIP, "PIM product", "nothing", "no product key given", "pass --product-key K to look one up")
        return
    asked = f"{where}: product {key!r}"
    try:
        product = connector.get_product(key)
    except http.HttpError as exc:
        context.add(FAIL, "PIM product", asked, failure(exc), "check PIM_BASE_URL and the PIM's credentials")
        return
    if product is None:
        todo = (
            "check the key and AKENEO_IDENTIFIER_ATTRIBUTE"
            if connector.name == "akeneo"
            else "check the key and PIM_PRODUCT_PATH"
        )
        context.add(FAIL, "PIM product", asked, f"{connector.label} has no such product", todo)
        return
    context.add(OK, "PIM product", asked, f"found ({len(product)} fields)")


def _pim_attributes(context: Context, connector: connectors.Connector, where: str) -> list[dict] | None:
    asked = f"{where}: the attribute list"
    try:
        attributes = connector.attributes()
    except http.HttpError as exc:
        context.add(FAIL, "PIM attributes", asked, failure(exc), "check the Connection's permissions in Akeneo")
        return None
    if attributes is None:
        context.add(SKIP, "PIM attributes", asked, f"{connector.label} has no attribute list")
        return None
    context.add(OK, "PIM attributes", asked, f"{len(attributes)} attributes")
    return attributes


def _link_attribute(context: Context, connector: connectors.Connector, attributes: list[dict] | None) -> None:
    code = settings.PIM_ASSET_LINK_ATTRIBUTE
    system = "PIM write-back attribute"
    if not code:
        context.add(SKIP, system, "nothing", "PIM_ASSET_LINK_ATTRIBUTE is not set: nothing is written to the PIM")
        return
    asked = f"the type of attribute {code!r}"
    if not connector.writes_back:
        context.add(FAIL, system, asked, f"{connector.label} cannot be written to", "unset PIM_ASSET_LINK_ATTRIBUTE")
        return
    if attributes is None:
        context.add(SKIP, system, asked, "not known: no attribute list (see the line above)")
        return
    found = next((a for a in attributes if a.get("code") == code), None)
    create = f"create a text attribute {code!r} (not localizable, not scopable) in the PIM and add it to the families"
    if found is None:
        context.add(FAIL, system, asked, f"{connector.label} has no attribute {code!r}", f"{create}, or unset it")
        return
    if found.get("type") not in TEXT_TYPES or found.get("localizable") or found.get("scopable"):
        kind = found.get("type") or "?"
        extra = " localizable" if found.get("localizable") else ""
        extra += " scopable" if found.get("scopable") else ""
        context.add(FAIL, system, asked, f"{kind}{extra}: pimsync writes one text for no locale and channel", create)
        return
    context.add(OK, system, asked, str(found.get("type")))


# --- the webhooks' secrets ----------------------------------------------------------------------


def check_secrets(context: Context) -> None:
    named = [
        ("PIM_WEBHOOK_SECRET", webhook.secrets()),
        ("AKENEO_EVENT_SECRETS", list(settings.AKENEO_EVENT_SECRETS)),
        ("PIMSYNC_ALERT_WEBHOOK_SECRET", [s for s in [settings.PIMSYNC_ALERT_WEBHOOK_SECRET] if s]),
    ]
    if not any(values for _name, values in named):
        context.add(SKIP, "webhook secrets", "nothing", "none is set")
        return
    for name, values in named:
        if not values:
            continue
        short = sum(1 for value in values if len(value) < MIN_SECRET_CHARS)
        asked = f"{name} ({len(values)} secret{'s' if len(values) > 1 else ''})"
        if short:
            context.add(
                FAIL,
                "webhook secret",
                asked,
                f"{short} shorter than {MIN_SECRET_CHARS} characters",
                "use random secrets of 32 characters or more, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        else:
            context.add(OK, "webhook secret", asked, f"set, each at least {MIN_SECRET_CHARS} characters")
