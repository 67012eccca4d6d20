"""pimsync's rows: events as Adobe delivered them, every enrichment attempt, per-asset state,
the mapping configuration and the cached IMS token.

Our rows are the source of truth for work and retries; django-q2 only carries wake-up calls.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import jmespath
import jmespath.exceptions
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from pimsync import patterns
from pimsync.outbound.redaction import without_credentials


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
# Final statuses: the worker is done with the event (until someone retries it).
FINISHED = (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED, Status.IGNORED)
# Final statuses the enrichment ran for (an ignored event never waited for it): the outcomes
# whose time from receipt to finish is the enrichment latency.
ENRICHED = (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED)
# Statuses support may send back to the worker (a Retry keeps the history).
RETRYABLE = (Status.FAILED, Status.RETRYING, Status.SUCCEEDED, Status.UNCHANGED)


class EventType:
    PROCESSING_COMPLETED = "aem.assets.asset.processing_completed"
    METADATA_UPDATED = "aem.assets.asset.metadata_updated"
    DELETED = "aem.assets.asset.deleted"
    # Not from AEM: pimsync's own request to enrich an asset again (a re-sync, `pimsync.resync`).
    RESYNC = "pimsync.asset.resync"
    ENRICHED = (PROCESSING_COMPLETED, METADATA_UPDATED)
    HANDLED = (PROCESSING_COMPLETED, METADATA_UPDATED, DELETED, RESYNC)


@dataclass(frozen=True)
class AssetRef:
    """An AEM asset as an event names it: what the mapping rules match and key on."""

    asset_id: str
    path: str = ""
    name: str = ""
    mime_type: str = ""


def aem_asset_url(path: str) -> str:
    """Link to an asset's details page in the AEM author UI ("" without an author URL or a path)."""
    if not settings.AEM_AUTHOR_URL or not path:
        return ""
    # A user:password@ in the configured URL is for pimsync's calls, never for a page.
    return f"{without_credentials(settings.AEM_AUTHOR_URL)}/ui#/aem/assetdetails.html{path}"


class EventQuerySet(models.QuerySet):
    def pending(self) -> EventQuerySet:
        """Events that still wait for the worker, due or not."""
        return self.filter(status__in=PENDING)

    def due(self, now=None) -> EventQuerySet:
        """Pending events whose time has come: what a worker should run now."""
        return self.pending().filter(next_attempt_at__lte=now or timezone.now())

    def finished(self) -> EventQuerySet:
        """Events in a final status."""
        return self.filter(status__in=FINISHED)

    def retry(self) -> int:
        """Send the retryable ones back to the worker with a fresh attempt budget, keeping every
        earlier attempt; return how many. One UPDATE, however many events (a retry job's batch)."""
        return self.filter(status__in=RETRYABLE).update(
            status=Status.RECEIVED,
            reason="Retry requested",
            error_class="",
            next_attempt_at=timezone.now(),
            attempts_base=models.F("attempts"),
            finished_at=None,
        )


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
    arrived_by = models.CharField(
        max_length=16,
        choices=[("webhook", "webhook"), ("journal", "journal"), ("resync", "resync")],
        default="webhook",
        help_text="How the event reached pimsync first: pushed to the webhook, pulled from the journal, "
        "or created by a re-sync",
    )
    # Workers take due events with the lowest priority first: live events (0) are never stuck
    # behind the thousands a re-sync schedules (1).
    priority = models.PositiveSmallIntegerField(default=0)
    # The re-sync job that created the event (None for events from Adobe).
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="events")

    objects = EventQuerySet.as_manager()

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
            # A worker looking for work: due events, live ones before a re-sync's.
            models.Index(fields=["status", "priority", "next_attempt_at"], name="event_due_priority"),
            # A re-sync job's progress: its events counted by status.
            models.Index(fields=["job", "status"], name="event_job_status"),
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
            # Overview and /metrics: events only the journal delivered, recent first.
            models.Index(fields=["arrived_by", "-received_at"], name="event_arrival"),
        ]
        permissions = [("retry_event", "Can retry events")]

    def __str__(self) -> str:
        return f"{self.short_type} {self.asset_name or self.asset_id or self.event_id}"

    @property
    def short_type(self) -> str:
        """The last part of the event type, e.g. `processing_completed`."""
        return self.type.rsplit(".", 1)[-1]

    @property
    def asset(self) -> AssetRef:
        """The asset this event is about, as the mapping rules see it."""
        return AssetRef(self.asset_id, self.asset_path, self.asset_name, self.mime_type)

    def aem_asset_url(self) -> str:
        """Link to the asset in the AEM author UI."""
        return aem_asset_url(self.asset_path)

    def retry(self) -> bool:
        """Send this event back to the worker (see `EventQuerySet.retry`); False when its status
        cannot be retried. `pipeline.retry` calls this and wakes a worker."""
        updated = Event.objects.filter(pk=self.pk).retry()
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
        indexes = [
            models.Index(fields=["event", "number"], name="attempt_event_number"),
            # The "PIM or AEM unreachable" alert reads the attempts of the last hour.
            models.Index(fields=["started_at"], name="attempt_started"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of event {self.event_id}: {self.outcome}"


class SyncState(models.TextChoices):
    """Whether an asset holds what the PIM and the mapping say it should (`Asset.state`)."""

    IN_STEP = "in_step", "in step"
    STALE = "stale", "stale"
    FAILING = "failing", "failing"
    NEVER_SYNCED = "never_synced", "never synced"
    DELETED = "deleted", "deleted"


class StaleCause(models.TextChoices):
    PIM = "pim", "PIM data changed"
    MAPPING = "mapping", "mapping changed"


class Asset(models.Model):
    """One AEM asset pimsync knows (from an event, a backfill or the journal): where it is, which
    product it shows, whether AEM holds what the PIM and the mapping say, and the lease that keeps
    two workers from enriching it at once.

    `state` moves with every enrichment (`pimsync.pipeline`): succeeded or unchanged → in step,
    failed → failing, deleted in AEM → deleted; a PIM change or a mapping change marks in-step
    assets stale (`pimsync.resync`) until a re-sync writes them again. The fingerprints say what
    the last good sync was computed from: the PIM product and the mapping rules that applied.
    The last written values let an echoing `metadata_updated` event be recognised and skipped.
    """

    asset_id = models.CharField(max_length=255, primary_key=True)
    path = models.CharField(max_length=1024, blank=True)
    name = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=255, blank=True)
    product_key = models.CharField(max_length=255, blank=True)
    # The PIM's own id of the product (Akeneo's uuid), when the PIM has one: notifications that
    # name a product by it alone (a deletion) are resolved to its assets without asking the PIM.
    pim_product_uuid = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=SyncState.choices, default=SyncState.NEVER_SYNCED)
    state_reason = models.CharField(max_length=255, blank=True, help_text="Why the asset is in its state")
    stale_cause = models.CharField(max_length=16, choices=StaleCause.choices, blank=True)
    # When the asset was last marked stale: an enrichment that started before it cannot make the
    # asset in step again (it read the PIM or the mapping as they were before the change).
    stale_since = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True, help_text="When AEM last held the mapped values")
    pim_fingerprint = models.CharField(max_length=64, blank=True)
    mapping_fingerprint = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    known_from = models.CharField(max_length=16, default="event", help_text="event, journal or backfill")

    lease_token = models.CharField(max_length=64, blank=True)
    # Indexed: the drain loop skips assets whose lease is still running.
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    last_written = models.JSONField(default=dict, blank=True)
    last_written_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["path", "asset_id"]
        indexes = [
            # The Assets list: by path, whole or filtered by state; a path prefix (LIKE 'x%') and
            # the search need the pattern operator class on PostgreSQL (ignored on SQLite).
            models.Index(fields=["path", "asset_id"], name="asset_by_path"),
            models.Index(fields=["state", "path", "asset_id"], name="asset_state_path"),
            models.Index(fields=["path"], name="asset_path_prefix", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["name"], name="asset_name_prefix", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["product_key"], name="asset_product_key", opclasses=["varchar_pattern_ops"]),
            # "N assets are affected by the last mapping change", on every visit of the mapping page.
            models.Index(
                fields=["asset_id"],
                condition=models.Q(state="stale", stale_cause="mapping"),
                name="asset_mapping_affected",
            ),
            # A re-sync by state walks its assets in asset id order.
            models.Index(fields=["state", "asset_id"], name="asset_state_id"),
            # A PIM notification naming the product by its uuid only (pimsync.pim.notifications).
            models.Index(fields=["pim_product_uuid"], name="asset_pim_product_uuid"),
        ]
        permissions = [("resync_asset", "Can re-sync assets")]

    def __str__(self) -> str:
        return self.path or self.asset_id

    @property
    def ref(self) -> AssetRef:
        """The asset as the mapping rules see it."""
        return AssetRef(self.asset_id, self.path, self.name, self.mime_type)

    def aem_asset_url(self) -> str:
        """Link to the asset in the AEM author UI."""
        return aem_asset_url(self.path)

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
    """The product-key rule. There is one row, `SINGLETON_PK`; `MappingConfig.load()` returns it."""

    # The one configuration row's primary key: rules point at it and the admin's change page is at
    # /admin/pimsync/mappingconfig/1/change/.
    SINGLETON_PK = 1

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
        """The key pattern compiles on RE2 and names its group `key`; a metadata source names a property."""
        errors = {}
        if self.key_pattern:
            problem = patterns.key_pattern_problem(self.key_pattern)
            if problem:
                errors["key_pattern"] = problem
        if self.key_from == self.KeySource.METADATA and not patterns.PROPERTY_NAME.fullmatch(
            self.key_metadata_property or ""
        ):
            errors["key_metadata_property"] = "name the metadata property that holds the product key"
        if self.key_from not in self.KeySource.values:
            errors["key_from"] = "must be asset_name, asset_path or metadata:<property>"
        if errors:
            raise ValidationError(errors)

    @classmethod
    def load(cls) -> MappingConfig:
        config, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return config


class MappingRule(models.Model):
    """One PIM field → one AEM metadata property, applied in `position` order."""

    # There is one configuration; the key lets the admin edit rules inline with it.
    config = models.ForeignKey(
        MappingConfig, on_delete=models.CASCADE, default=MappingConfig.SINGLETON_PK, related_name="rules"
    )

    class Transform(models.TextChoices):
        NONE = "none", "none"
        UPPER = "upper", "upper case"
        LOWER = "lower", "lower case"
        STRIP = "strip", "strip whitespace"
        JOIN = "join", "join a list with ', '"
        STRING = "string", "to string"

    position = models.PositiveIntegerField(default=0, db_index=True)
    # A rule reads its value one of two ways: a JMESPath expression over the product JSON, or an
    # Akeneo attribute read as a person reads it (pimsync.pim.akeneo_values); exactly one is set.
    pim_field = models.CharField(
        "PIM field",
        max_length=500,
        blank=True,
        help_text="JMESPath over the PIM product JSON; a plain field name is one",
    )
    attribute = models.CharField(
        "Akeneo attribute", max_length=100, blank=True, help_text="An Akeneo attribute code, e.g. name or color"
    )
    locale = models.CharField(max_length=32, blank=True, help_text="Empty: AKENEO_LOCALE (for localizable attributes)")
    channel = models.CharField(max_length=100, blank=True, help_text="Empty: AKENEO_CHANNEL (for scopable attributes)")
    currency = models.CharField(max_length=3, blank=True, help_text="For prices, e.g. EUR; empty: the first price")
    option_codes = models.BooleanField(
        "option codes", default=False, help_text="Write the codes of select options instead of their labels"
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
        return f"{self.source_label} → {self.metadata_path}"

    @property
    def attribute_locale(self) -> str:
        return self.locale or settings.AKENEO_LOCALE

    @property
    def attribute_channel(self) -> str:
        return self.channel or settings.AKENEO_CHANNEL

    @property
    def source_label(self) -> str:
        """Where the value comes from, as the preview shows it: `name (en_US, ecommerce)`."""
        if not self.attribute:
            return self.pim_field
        details = [self.attribute_locale, self.attribute_channel, self.currency, "codes" if self.option_codes else ""]
        return f"{self.attribute} ({', '.join(d for d in details if d)})"

    def clean(self) -> None:
        """One message per bad field: the source, the property (not one AEM owns), the globs."""
        errors = self._source_errors()
        path = self.metadata_path or ""
        if not patterns.PROPERTY_NAME.fullmatch(path):
            shown = repr(path) if len(path) <= 60 else repr(path[:60]) + "…"
            errors["metadata_path"] = f"{shown} is not a metadata property name such as dc:title, pim:sku or wknd-skuid"
        elif path.lstrip("/").startswith(patterns.READ_ONLY_PREFIXES):
            errors["metadata_path"] = f"{path} is owned by AEM and cannot be written"
        if self.transform not in self.Transform.values:
            errors["transform"] = f"{self.transform!r} is not one of {', '.join(sorted(self.Transform.values))}"
        for name in ("path_glob", "mime_glob"):
            try:
                patterns.glob_regex(getattr(self, name) or "")
            except patterns.PatternError as exc:
                errors[name] = f"not a pattern that can be matched: {exc}"
        if errors:
            raise ValidationError(errors)

    # Akeneo codes are letters, digits and underscores (attributes and channels up to 100
    # characters); locales look like en_US or zh_Hans_CN; currencies are ISO 4217 codes.
    _CODE = re.compile(r"[A-Za-z0-9_]{1,100}")
    _LOCALE = re.compile(r"[A-Za-z]{2,3}(?:_[A-Za-z0-9]{2,8}){0,2}")
    _CURRENCY = re.compile(r"[A-Z]{3}")

    def _source_errors(self) -> dict[str, str]:
        """Exactly one of JMESPath and attribute; the attribute's details only with an attribute."""
        if self.pim_field and self.attribute:
            return {"attribute": "a rule reads either a PIM field (JMESPath) or an Akeneo attribute: empty one of them"}
        if self.attribute:
            return self._attribute_errors()
        errors = {}
        if not self.pim_field:
            errors["pim_field"] = "a PIM field (JMESPath expression) or an Akeneo attribute is required"
        else:
            try:
                jmespath.compile(self.pim_field)
            except jmespath.exceptions.JMESPathError as exc:
                errors["pim_field"] = f"not a valid JMESPath expression: {str(exc).splitlines()[0]}"
            except RecursionError:
                errors["pim_field"] = "not a valid JMESPath expression: it is nested too deeply"
        for name in ("locale", "channel", "currency"):
            if getattr(self, name):
                errors[name] = f"a {name} is only read by Akeneo attribute rules: empty it or choose an attribute"
        if self.option_codes:
            errors["option_codes"] = "option codes are only read by Akeneo attribute rules"
        return errors

    def _attribute_errors(self) -> dict[str, str]:
        checks = (
            ("attribute", self._CODE, "an Akeneo attribute code (letters, digits and _, at most 100)"),
            ("locale", self._LOCALE, "a locale code such as en_US"),
            ("channel", self._CODE, "an Akeneo channel code such as ecommerce"),
            ("currency", self._CURRENCY, "a currency code such as EUR"),
        )
        errors = {}
        for name, pattern, what in checks:
            value = getattr(self, name)
            if value and not pattern.fullmatch(value):
                shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "…"
                errors[name] = f"{shown} is not {what}"
        return errors


class AccessToken(models.Model):
    """The IMS access token, shared by every worker process, encrypted at rest."""

    name = models.CharField(max_length=64, primary_key=True)
    encrypted = models.BinaryField()
    expires_at = models.DateTimeField()
    refreshing_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} token (expires {self.expires_at:%Y-%m-%d %H:%M})"


class Heartbeat(models.Model):
    """A time a worker wrote to show it is alive, one row per kind of writer.

    `sweeper`: when the sweeper last ran (it runs every minute; `detail` says what it did).
    `drain`: a time in the future, up to which a running drain promises to keep looking for new
    events (`pimsync.wakeups.DrainPromise`); it only moves forward.
    """

    SWEEPER = "sweeper"
    DRAIN = "drain"
    # A worker silent for longer than this is reported down (healthz, the dashboard).
    STALE = timedelta(minutes=3)

    name = models.CharField(max_length=64, primary_key=True)
    at = models.DateTimeField()
    detail = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%H:%M:%S}"

    @classmethod
    def beat(cls, name: str, detail: str = "") -> None:
        """Record that `name` is alive now."""
        cls.objects.update_or_create(name=name, defaults={"at": timezone.now(), "detail": detail[:255]})

    @classmethod
    def worker_last_seen(cls):
        """When a worker last did something: the sweeper's beat, or a drain (whose row holds the
        time it promised to poll until, written while it runs)."""
        now = timezone.now()
        seen = []
        for beat in cls.objects.filter(name__in=[cls.SWEEPER, cls.DRAIN]):
            at = (
                beat.at
                if beat.name == cls.SWEEPER
                else beat.at - timedelta(seconds=settings.PIMSYNC_DRAIN_LINGER_SECONDS)
            )
            seen.append(min(at, now))
        return max(seen, default=None)


class Pause(models.Model):
    """An outside system asked pimsync to slow down (it answered 429): no call to it goes out,
    from any process on any node, before `until` (`pimsync.outbound.throttle`). One row per system; the
    end only ever moves later."""

    name = models.CharField(max_length=32, primary_key=True, help_text="The system: aem, pim, akeneo")
    until = models.DateTimeField(help_text="No call to the system before this")
    reason = models.CharField(max_length=255, blank=True, help_text="The answer that asked for the pause")
    since = models.DateTimeField(default=timezone.now, help_text="When the answer that set `until` came")

    def __str__(self) -> str:
        return f"{self.name} paused until {self.until:%H:%M:%S}"


class SandboxAsset(models.Model):
    """An asset in the built-in AEM stand-in (sandbox mode only: see `pimsync.sandbox`)."""

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


class DemoProduct(models.Model):
    """A demo PIM product as `simulate_pim_change` left it (sandbox only): overrides the shipped
    catalog (`pimsync/demo/catalog.json`), so that every process, the worker included, serves the
    changed product."""

    key = models.CharField(max_length=255, primary_key=True)
    data = models.JSONField()
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"demo product {self.key}"


class SandboxJournalEntry(models.Model):
    """An event in the built-in I/O Events journal (sandbox mode only); its id is its position."""

    event = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"journal entry {self.pk}"


class Job(models.Model):
    """A bulk operation too large for one request (a retry of thousands of events), run by a
    worker in batches; its row holds the selection, the position reached and the progress.

    Status transitions (each one a conditional UPDATE or made under the row's lock, see
    `pimsync.jobs`):
      queued  → running (a worker took it) | cancelled
      running → finished | failed | cancelled | running (its worker died: handed out again)
    """

    class Kind(models.TextChoices):
        RETRY = "retry", "retry"
        RESYNC = "resync", "re-sync"
        # Find the assets a mapping change affects and mark them stale.
        AFFECTED = "affected", "mapping check"

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        FINISHED = "finished", "finished"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RETRY)
    status = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written after every batch (and when a job is handed out again): a running job whose
    # heartbeat is old lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The selection: the event list's query string (its filters and search), optionally narrowed
    # to one status, or an explicit list of event ids; events stored after the job was created
    # (id above `upto_id`) are not part of it.
    query = models.TextField(blank=True)
    only_status = models.CharField(max_length=16, blank=True)
    ids = models.JSONField(null=True, blank=True)
    upto_id = models.BigIntegerField(default=0)
    description = models.CharField(max_length=255, blank=True)
    # A re-sync's assets: {"asset_ids": [...]}, {"product_keys": [...]}, {"path_prefix": "..."},
    # {"state": "..."}, {"mapping_affected": true} or {"all": true} (`pimsync.resync.select`).
    assets = models.JSONField(null=True, blank=True)
    why = models.CharField(max_length=255, blank=True, help_text="Why the job was started")
    # Assets are handled in asset id order; the last one a re-sync scheduled, and the time its
    # last event was scheduled for (the schedule keeps PIMSYNC_RESYNC_RATE).
    asset_position = models.CharField(max_length=255, blank=True)
    scheduled_until = models.DateTimeField(null=True, blank=True)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    # Events are handled in id order; `position` is the last id handled, so a resumed job goes on
    # after it and never handles an event twice.
    position = models.BigIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The job history (newest first) and the sweeper's look for active jobs.
            models.Index(fields=["-created_at", "-id"], name="job_newest"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)

    def cancel(self) -> bool:
        """Stop a queued or running job before its next batch; False when it had already ended.

        A re-sync's events that still wait for a worker are ignored: cancelled means no more AEM
        writes for it (an enrichment already running finishes)."""
        now = timezone.now()
        with transaction.atomic():
            updated = Job.objects.filter(pk=self.pk, status__in=self.ACTIVE).update(
                status=self.State.CANCELLED, finished_at=now
            )
            if updated and self.kind == self.Kind.RESYNC:
                Event.objects.filter(job=self).pending().update(
                    status=Status.IGNORED, reason="its re-sync was cancelled", next_attempt_at=None, finished_at=now
                )
        self.refresh_from_db()
        return bool(updated)


class MetricTotal(models.Model):
    """One monotonic sample behind `/metrics` (a counter, or a histogram bucket, sum or count).

    Totals are kept here rather than counted from events and attempts on every scrape, so that a
    scrape costs the same at any history size and a retention purge never makes a counter go down.
    """

    sample = models.CharField(max_length=255, primary_key=True, help_text="Name with labels, as exposed")
    value = models.FloatField(default=0)

    def __str__(self) -> str:
        return f"{self.sample} {self.value:g}"


class MetricsWatermark(models.Model):
    """How far `/metrics` has counted: rows up to these marks are in the totals, later ones not yet.

    A single row, locked while a scrape adds to the totals so two scrapes never count a row twice.
    """

    name = models.CharField(max_length=32, primary_key=True, default="metrics")
    # Attempt ids up to this one are counted.
    attempts_counted_to = models.BigIntegerField(default=0)
    # The highest attempt id when `attempts_seen_at` was read: counted once every transaction that
    # could still insert a lower id has had time to commit.
    attempts_seen_max = models.BigIntegerField(default=0)
    attempts_seen_at = models.DateTimeField(null=True, blank=True)
    # Events finished at or before this moment are counted (None: nothing counted yet).
    events_counted_to = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"metrics counted to attempt {self.attempts_counted_to}, events finished by {self.events_counted_to}"


class Alert(models.Model):
    """One time a condition needed a person (`pimsync.alerts.monitor`): opened when the condition started,
    resolved when it ended. At most one alert per condition is open at a time.

    `notified_open` / `notified_resolved` list the channels that delivered the opening and the
    resolving message; a channel missing from them is tried again on the next check.
    """

    condition = models.CharField(max_length=64)
    summary = models.TextField(help_text="What was wrong when the alert was opened or last changed")
    link = models.CharField(max_length=500, blank=True, help_text="The dashboard page that shows it (a path)")
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(default=timezone.now)
    notified_open = models.JSONField(default=list, blank=True)
    notified_resolved = models.JSONField(default=list, blank=True)
    notify_failures = models.PositiveIntegerField(default=0, help_text="Messages a channel failed to deliver")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # Two checkers running at once (two worker nodes) cannot open the same alert twice.
            models.UniqueConstraint(
                fields=["condition"], condition=models.Q(resolved_at__isnull=True), name="alert_one_open"
            )
        ]
        indexes = [
            # The history page (newest first) and the unsent-message retry (recently resolved).
            models.Index(fields=["-opened_at", "-id"], name="alert_newest"),
            models.Index(fields=["resolved_at"], name="alert_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.condition} alert ({'open' if self.is_open else 'resolved'})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class SignatureRefusals(models.Model):
    """Webhook deliveries refused as not authentic (401), counted per minute.

    Each web process counts in memory and adds its count here at most every few seconds
    (`pimsync.adobe.webhook.REFUSALS`), so a flood of forged requests costs no write per request.
    """

    minute = models.DateTimeField(primary_key=True)
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.count} refused at {self.minute:%H:%M}"


class Arrival:
    """How an event reached pimsync first (`Event.arrived_by`)."""

    WEBHOOK = "webhook"
    JOURNAL = "journal"
    # Created by a re-sync job, not delivered by Adobe.
    RESYNC = "resync"
    CHOICES = [(WEBHOOK, WEBHOOK), (JOURNAL, JOURNAL), (RESYNC, RESYNC)]


class JournalCursor(models.Model):
    """Where pimsync is in the registration's I/O Events journal; one row, `SINGLETON_PK`.

    `position` is saved only after the events before it are committed, so a crash re-reads a page
    rather than skipping it. `lease_token`/`lease_until` let one puller at a time work across
    every node (a conditional UPDATE, as for an asset's lease).
    """

    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK)
    position = models.CharField(max_length=1024, blank=True, help_text="The journal position read up to ('' : none)")
    # The URL to pull next when the journal asked to be repositioned (--latest, --seek, after a 410).
    next_url = models.CharField(max_length=2048, blank=True)
    newest_event_time = models.DateTimeField(null=True, blank=True, help_text="`time` of the newest journal event")
    last_pulled_at = models.DateTimeField(null=True, blank=True, help_text="When a pull last reached the journal")
    caught_up_at = models.DateTimeField(null=True, blank=True, help_text="When a pull last reached the end (204)")
    last_error = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="No pull before this (retry-after)")
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the journal last answered 410 Gone")
    pulled_total = models.BigIntegerField(default=0, help_text="Journal events read since the cursor was created")
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"journal at {self.position or 'the start'}"

    @classmethod
    def load(cls) -> JournalCursor:
        """The cursor row, created on first use."""
        cursor, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return cursor


class PimNotification(models.Model):
    """A change notification the PIM pushed (`POST /webhooks/akeneo`), stored before it is answered
    and handled by a task (`pimsync.pim.notifications`), because Akeneo wants an answer within 5 s.

    received → processing → done (assets re-synced), ignored (nothing to do: not a product, no
    known asset, pimsync's own write-back), failed (the product could not be read);
    processing → received again when its task died or the PIM could not be reached (a few times,
    further apart each time; a 429's pause costs no attempt and is waited out: `next_attempt_at`).
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

    def __str__(self) -> str:
        return f"{self.kind} {self.product_key or self.product_uuid} ({self.status})"


class PimCursor(models.Model):
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


class ProductLinks(models.Model):
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

    @classmethod
    def acquire(cls, product_key: str, lease: timedelta) -> str | None:
        """Take the product's lease; its token, or None while another enrichment holds it."""
        cls.objects.get_or_create(product_key=product_key)
        now, token = timezone.now(), uuid.uuid4().hex
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now)
        taken = cls.objects.filter(free, product_key=product_key).update(lease_token=token, lease_until=now + lease)
        return token if taken else None

    @classmethod
    def release(cls, product_key: str, token: str, *, written: bool) -> None:
        changes = {"lease_token": "", "lease_until": None}
        if written:
            changes["written_at"] = timezone.now()
        cls.objects.filter(product_key=product_key, lease_token=token).update(**changes)
