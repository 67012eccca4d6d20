"""Where alert messages go: e-mail (Django's mail settings) and a chat webhook.

The chat webhook receives `{"text": "…"}`, the body Slack incoming webhooks, Teams workflows and
Mattermost accept. With PIMSYNC_ALERT_WEBHOOK_SECRET set, each POST carries
`X-Pimsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with the
secret, so a receiver can refuse forged or replayed alerts (docs/operations.md, "Alerts").

A channel that fails raises `ChannelError`; the caller (`pimsync.alerts.monitor`) records it and tries that
channel again on its next check. Messages about failures never include the webhook's URL: chat
webhook URLs carry their credential in the path, where redaction cannot see it.
"""

from __future__ import annotations

import json
import smtplib
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail

from pimsync import inbound
from pimsync.outbound import http

EMAIL, CHAT = "email", "chat"
SIGNATURE_HEADER = "X-Pimsync-Signature"


class ChannelError(Exception):
    """A channel did not take the message; the text is safe to log (no URL, no secret)."""


def configured() -> list[str]:
    """The channels with a destination: `email` when PIMSYNC_ALERT_EMAILS names someone, `chat`
    when PIMSYNC_ALERT_WEBHOOK_URL is set."""
    names = []
    if settings.PIMSYNC_ALERT_EMAILS:
        names.append(EMAIL)
    if settings.PIMSYNC_ALERT_WEBHOOK_URL:
        names.append(CHAT)
    return names


def send(channel: str, subject: str, text: str) -> None:
    """Deliver one message on one channel, or raise ChannelError."""
    if channel == EMAIL:
        send_email(subject, text)
    elif channel == CHAT:
        post_chat(f"{subject}\n{text}")
    else:
        raise ChannelError(f"no channel named {channel!r}")


def send_email(subject: str, text: str) -> None:
    """Send one e-mail to PIMSYNC_ALERT_EMAILS through Django's mail settings."""
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, settings.PIMSYNC_ALERT_EMAILS, fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception's type only: an SMTP answer may quote the account name back.
        raise ChannelError(
            f"e-mail through {settings.EMAIL_HOST}:{settings.EMAIL_PORT} failed: {type(exc).__name__}"
        ) from None


def post_chat(text: str) -> None:
    """POST {"text": text} to PIMSYNC_ALERT_WEBHOOK_URL (through the outbound client), signed
    when PIMSYNC_ALERT_WEBHOOK_SECRET is set."""
    body = json.dumps({"text": text}).encode()
    headers = {"Content-Type": "application/json"}
    if settings.PIMSYNC_ALERT_WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = inbound.pimsync_signature(
            body, settings.PIMSYNC_ALERT_WEBHOOK_SECRET, int(time.time())
        )
    try:
        http.request(
            "POST",
            settings.PIMSYNC_ALERT_WEBHOOK_URL,
            data=body,
            headers=headers,
            expected=(200, 201, 202, 204),
            error_class="alert_webhook",
        )
    except http.HttpError as exc:
        host = urlsplit(settings.PIMSYNC_ALERT_WEBHOOK_URL).hostname
        raise ChannelError(f"chat webhook at {host} failed: {exc.error_class}") from None
