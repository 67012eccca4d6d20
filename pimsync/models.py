"""pimsync's rows: events as Adobe delivered them, every enrichment attempt, per-asset state,
the mapping configuration and the cached IMS token.

Our rows are the source of truth for work and retries; django-q2 only carries wake-up calls.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone


class Status(models.TextChoices):
    RECEIVED = "received", "received"
    PROCESSING = "processing", "processing"
    SUCCEEDED = "succeeded", "succeeded"
    UNCHANGED = "unchanged", "unchanged"
    RETRYING = "retrying", "retrying"
    FAILED = "failed", "failed"
    IGNORED = "ignored", "ignored"


# Statuses in which an event still waits for the worker.
PENDING = (Status.RECEIVED, Status.RETRYING)
# Statuses support may send back to the worker (a Retry keeps the history).
RETRYABLE = (Status.FAILED, Status.RETRYING, Status.SUCCEEDED, Status.UNCHANGED)


class EventType:
    PROCESSING_COMPLETED = "aem.assets.asset.processing_completed"
    METADATA_UPDATED = "aem.assets.asset.metadata_updated"
    DELETED = "aem.assets.asset.deleted"
    ENRICHED = (PROCESSING_COMPLETED, METADATA_UPDATED)
    HANDLED = (PROCESSING_COMPLETED, METADATA_UPDATED, DELETED)


class Event(models.Model):
    """One Adobe I/O event, stored before it is acknowledged.

    Status transitions (each one a conditional UPDATE, see `pimsync.pipeline`):
      received   → processing (a worker claimed it) | ignored (asset deleted, echo)
      processing → succeeded | unchanged | retrying | failed | ignored
                   | received (its worker died: the sweeper hands it out again)
      retrying   → processing | ignored
      failed, succeeded, unchanged, retrying → received (manual Retry; attempts are kept)
    """

    event_id = models.CharField(max_length=255, unique=True)
    cloudevent_id = models.CharField(max_length=255, blank=True)
    type = models.CharField(max_length=255)
    source = models.CharField(max_length=255)
    time = models.DateTimeField(null=True, blank=True, help_text="When AEM emitted the event")
    received_at = models.DateTimeField(default=timezone.now)

    asset_id = models.CharField(max_length=255, blank=True)
    asset_path = models.CharField(max_length=1024, blank=True)
    asset_name = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=255, blank=True)
    product_key = models.CharField(max_length=255, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    reason = models.TextField(blank=True, help_text="Why the event is in its status")
    error_class = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Attempts counted against PIMSYNC_MAX_ATTEMPTS start here, so a manual retry gets a full budget.
    attempts_base = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    payload = models.JSONField()
    delivery_id = models.CharField(max_length=255, blank=True)
    delivery_retry_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The dashboard's default list: newest first. Status rides along so that the overview's
            # counts by status for the last 24 h / 7 d are index-only scans (bench: dashboard).
            models.Index(fields=["-received_at", "-id", "status"], name="event_newest"),
            # Status filter on the list, status counts on the overview.
            models.Index(fields=["status", "-received_at"], name="event_status_newest"),
            # The sweeper: pending events that are due, and stuck `processing` rows.
            models.Index(fields=["status", "next_attempt_at"], name="event_due"),
            # A worker claiming every pending event of one asset.
            models.Index(fields=["asset_id", "status"], name="event_asset_status"),
            # Dashboard search: exact or prefix (LIKE 'x%') lookups; on PostgreSQL a prefix LIKE
            # can use a btree only with the pattern operator class (ignored on SQLite).
            models.Index(fields=["asset_name"], name="event_asset_name", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["asset_path"], name="event_asset_path", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["product_key"], name="event_product_key", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["asset_id"], name="event_asset_id"),
            # Overview: outcomes and latency over time.
            models.Index(fields=["finished_at"], name="event_finished"),
        ]
        permissions = [("retry_event", "Can retry events")]

    def __str__(self) -> str:
        return f"{self.short_type} {self.asset_name or self.asset_id or self.event_id}"

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]

    def aem_asset_url(self) -> str:
        """Link to the asset in the AEM author UI."""
        if not settings.AEM_AUTHOR_URL or not self.asset_path:
            return ""
        # A user:password@ in the configured URL is for pimsync's calls, never for a page.
        from pimsync.clients.http import without_credentials

        return f"{without_credentials(settings.AEM_AUTHOR_URL)}/ui#/aem/assetdetails.html{self.asset_path}"

    def retry(self) -> bool:
        """Send this event back to the worker, keeping every earlier attempt. The Retry button
        and `retry_events` both come here, through `pipeline.retry`, which wakes a worker."""
        updated = Event.objects.filter(pk=self.pk, status__in=RETRYABLE).update(
            status=Status.RECEIVED,
            reason="Retry requested",
            error_class="",
            next_attempt_at=timezone.now(),
            attempts_base=models.F("attempts"),
            finished_at=None,
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)


class Attempt(models.Model):
    """One run of the enrichment for one event: what was read, what was written, what AEM said."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        UNCHANGED = "unchanged"
        RETRYING = "retrying"
        FAILED = "failed"
        IGNORED = "ignored"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_class = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    product_key = models.CharField(max_length=255, blank=True)
    pim_data = models.JSONField(null=True, blank=True)
    # [{"path": "dc:title", "old": ..., "new": ...}] for the properties that changed.
    changes = models.JSONField(default=list, blank=True)
    aem_status = models.PositiveSmallIntegerField(null=True, blank=True)
    aem_body = models.TextField(blank=True, help_text="Excerpt of AEM's answer")

    class Meta:
        ordering = ["event", "number"]
        # One index serves the detail page's timeline and the attempt counts.
        indexes = [models.Index(fields=["event", "number"], name="attempt_event_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of event {self.event_id}: {self.outcome}"


class AssetState(models.Model):
    """Per-asset lease and memory of what pimsync last wrote.

    The lease makes sure one asset is never enriched by two workers at once; the last written
    values let an echoing `metadata_updated` event be recognised and skipped.
    """

    asset_id = models.CharField(max_length=255, primary_key=True)
    lease_token = models.CharField(max_length=64, blank=True)
    # Indexed: the drain loop skips assets whose lease is still running.
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    last_written = models.JSONField(default=dict, blank=True)
    last_written_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.asset_id

    @classmethod
    def acquire(cls, asset_id: str) -> str | None:
        """Take the asset's lease; return its token, or None when another worker holds it."""
        now = timezone.now()
        token = uuid.uuid4().hex
        lease_until = now + timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now)
        if cls.objects.filter(free, asset_id=asset_id).update(lease_token=token, lease_until=lease_until):
            return token
        # A new asset has no row yet: creating it takes the lease; if another worker created it
        # first, the primary key says so and that worker holds the lease.
        try:
            if connection.in_atomic_block:  # keep the caller's transaction usable on a conflict
                with transaction.atomic():
                    cls.objects.create(asset_id=asset_id, lease_token=token, lease_until=lease_until)
            else:
                cls.objects.create(asset_id=asset_id, lease_token=token, lease_until=lease_until)
        except IntegrityError:
            return None
        return token

    @classmethod
    def release(cls, asset_id: str, token: str, last_written: dict | None = None) -> None:
        """Give the lease back, recording what was written to AEM under it in the same UPDATE."""
        changes = {"lease_token": "", "lease_until": None}
        if last_written is not None:
            changes.update(last_written=last_written, last_written_at=timezone.now())
        cls.objects.filter(asset_id=asset_id, lease_token=token).update(**changes)


class MappingConfig(models.Model):
    """The product-key rule (SPEC §5). There is one row; `MappingConfig.load()` returns it."""

    class KeySource(models.TextChoices):
        ASSET_NAME = "asset_name", "asset name"
        ASSET_PATH = "asset_path", "asset path"
        METADATA = "metadata", "metadata property"

    key_from = models.CharField(
        "product key from", max_length=16, choices=KeySource.choices, default=KeySource.ASSET_NAME
    )
    key_metadata_property = models.CharField(
        max_length=255, blank=True, help_text="The metadata property, when the key comes from metadata"
    )
    key_pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text="Regular expression; its named group `key` (or the whole match) is the product "
        "key. Empty: the asset name without its extension.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "mapping rules"
        verbose_name_plural = "mapping rules"

    def __str__(self) -> str:
        return "Mapping rules"

    def clean(self) -> None:
        from pimsync.mapping import validate_key_rule

        validate_key_rule(self)

    @classmethod
    def load(cls) -> MappingConfig:
        config, _ = cls.objects.get_or_create(pk=1)
        return config


class MappingRule(models.Model):
    """One PIM field → one AEM metadata property (SPEC §5), applied in `position` order."""

    # There is one configuration (pk 1); the key lets the admin edit rules inline with it.
    config = models.ForeignKey(MappingConfig, on_delete=models.CASCADE, default=1, related_name="rules")

    class Transform(models.TextChoices):
        NONE = "none", "none"
        UPPER = "upper", "upper case"
        LOWER = "lower", "lower case"
        STRIP = "strip", "strip whitespace"
        JOIN = "join", "join a list with ', '"
        STRING = "string", "to string"

    position = models.PositiveIntegerField(default=0, db_index=True)
    pim_field = models.CharField(
        max_length=500, help_text="JMESPath over the PIM product JSON; a plain field name is one"
    )
    metadata_path = models.CharField(max_length=255, help_text="AEM metadata property, e.g. dc:title")
    transform = models.CharField(max_length=16, choices=Transform.choices, default=Transform.NONE)
    default = models.JSONField(null=True, blank=True, help_text='Written when the PIM value is empty (JSON, e.g. "")')
    path_glob = models.CharField(
        max_length=500, blank=True, help_text="Only assets whose path matches, e.g. /content/dam/products/*"
    )
    mime_glob = models.CharField(max_length=255, blank=True, help_text="Only matching types, e.g. image/*")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.pim_field} → {self.metadata_path}"

    def clean(self) -> None:
        from pimsync.mapping import validate_rule_fields

        validate_rule_fields(self)


class AccessToken(models.Model):
    """The IMS access token, shared by every worker process, encrypted at rest."""

    name = models.CharField(max_length=64, primary_key=True)
    encrypted = models.BinaryField()
    expires_at = models.DateTimeField()
    refreshing_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} token (expires {self.expires_at:%Y-%m-%d %H:%M})"


class Heartbeat(models.Model):
    """When a worker last proved it is alive (the sweeper beats every minute)."""

    name = models.CharField(max_length=64, primary_key=True)
    at = models.DateTimeField()
    detail = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%H:%M:%S}"

    @classmethod
    def beat(cls, name: str, detail: str = "") -> None:
        cls.objects.update_or_create(name=name, defaults={"at": timezone.now(), "detail": detail[:255]})

    @classmethod
    def worker_last_seen(cls):
        """When a worker last did something: the sweeper's beat, or a drain (whose row holds the
        time it promised to poll until, written while it runs)."""
        now = timezone.now()
        seen = []
        for beat in cls.objects.filter(name__in=["sweeper", "drain"]):
            at = (
                beat.at
                if beat.name == "sweeper"
                else beat.at - timedelta(seconds=settings.PIMSYNC_DRAIN_LINGER_SECONDS)
            )
            seen.append(min(at, now))
        return max(seen, default=None)


class SandboxAsset(models.Model):
    """An asset in the built-in AEM stand-in (sandbox mode only, SPEC §8)."""

    asset_id = models.CharField(max_length=255, primary_key=True)
    path = models.CharField(max_length=1024)
    name = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=255, default="image/png")
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.path

    @property
    def etag(self) -> str:
        return f'"{self.asset_id.rsplit(":", 1)[-1][:8]}-{self.version}"'
