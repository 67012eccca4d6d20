"""The PIM side's rows: change notifications, the poll's cursor, the write-back's per-product lock."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from pimsync.models.leases import Leased


class PimNotification(models.Model):
    """A change notification the PIM pushed (`POST /webhooks/akeneo`), stored before it is answered
    and handled by a task (`pimsync.pim.notifications`), because Akeneo wants an answer within 5 s.

    received → processing → done (assets re-synced), ignored (nothing to do: not a product, no
    known asset, pimsync's own write-back), failed (the product could not be read, or the
    notification could not be handled at all);
    processing → received again when its task died or the PIM could not be reached (a few times,
    further apart each time; a 429's pause costs no attempt and is waited out: `next_attempt_at`);
    processing → failed when its task died with it on its last attempt.
    `notification_id` is unique: a notification delivered twice (Akeneo delivers at least once)
    is stored once.
    """

    class State(models.TextChoices):
        RECEIVED = "received", "received"
        PROCESSING = "processing", "processing"
        DONE = "done", "done"
        IGNORED = "ignored", "ignored"
        FAILED = "failed", "failed"

    notification_id = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=100, help_text="e.g. product.updated")
    author = models.CharField(max_length=255, blank=True)
    product_key = models.CharField(max_length=255, blank=True)
    product_uuid = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    reason = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    # Not handed out before this (after the PIM failed or asked to slow down); null: at once.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The task's "what is waiting", oldest first; the purge of old handled ones.
            models.Index(fields=["status", "received_at"], name="pimnotification_status"),
        ]

    # Handled notifications are kept this long: Akeneo redelivers within about 35 minutes, and the
    # dashboard's support questions are about the last days. A delivery older than this could be
    # a replay of one whose row is gone, so the webhook refuses those (`pimsync.pim.akeneo_webhook`).
    KEEP = timedelta(days=8)

    def __str__(self) -> str:
        return f"{self.kind} {self.product_key or self.product_uuid} ({self.status})"


class PimCursor(Leased, models.Model):
    """Where the poll of the PIM's changed products is (`pimsync.pim.poll`), one row per connector.

    `cursor` is what the connector needs to go on (Akeneo: the `updated` time of the pass, the
    next page's link); it is saved only after the products of a page were handed to a re-sync,
    so a crash polls a page again rather than skipping it. The lease lets one poller work at a time.
    """

    name = models.CharField(max_length=32, primary_key=True)
    cursor = models.JSONField(default=dict, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True, help_text="When a poll last reached the PIM")
    last_error = models.TextField(blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} poll at {self.cursor.get('since', 'the start')}"


class ProductLinks(Leased, models.Model):
    """The write-back's lock on one product (`pimsync.pim.writeback`): one enrichment at a time works
    out and writes a product's asset links, so two of its assets enriched at once cannot each write
    a list without the other. A lease, not a transaction held open across the PIM calls."""

    product_key = models.CharField(max_length=255, primary_key=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    written_at = models.DateTimeField(null=True, blank=True, help_text="When pimsync last wrote the links")

    class Meta:
        verbose_name_plural = "product links"

    def __str__(self) -> str:
        return f"links of {self.product_key}"


class SeenSignature(models.Model):
    """A signed PIM webhook request already acted on (`/webhooks/pim`), until its signature expires.

    A captured request stays valid for its signature's time window, so a replay within it would
    start another re-sync; a row per signed message, shared by every web node, turns a replay into
    a duplicate. `digest` is the SHA-256 of what was signed (timestamp and body), not of a `v1`
    value: a replay may carry other or more `v1` values for the same message. Rows past
    `expires_at` are purged (`pimsync.retention`): their signatures are refused as too old anyway.
    """

    digest = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"signature {self.digest[:12]}… until {self.expires_at:%H:%M:%S}"

    @classmethod
    def first_time(cls, digest: str, expires_at) -> bool:
        """Remember the signed message; False when it was seen before (a replay)."""
        try:
            with transaction.atomic():
                cls.objects.create(digest=digest, expires_at=expires_at)
        except IntegrityError:
            return False
        return True
