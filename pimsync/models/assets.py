"""One row per AEM asset pimsync knows: its sync state, fingerprints, and the lease that keeps
two workers from enriching it at once."""

from __future__ import annotations

from django.db import connection, models
from django.utils import timezone

from pimsync.models.events import AssetRef, aem_asset_url
from pimsync.models.leases import Leased
from pimsync.models.mapping import MappingConfig


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


class AssetQuerySet(models.QuerySet):
    """Where an asset's `state` moves, and nowhere else (the pipeline, re-syncs, backfills and PIM
    notifications call these). Each move is one UPDATE of the assets still in a state it leaves.

      never synced, failing, stale, in step ──(enriched: succeeded or unchanged)──▶ in step
      any but deleted ──(failed for good)──▶ failing
      in step, stale ──(PIM or mapping change)──▶ stale ──(mapping change undone)──▶ in step
      any ──(deleted in AEM)──▶ deleted

    The move after an enrichment is `Asset.synced`: one row, in plain SQL.
    """

    def known(self) -> AssetQuerySet:
        """Assets still in AEM (not deleted)."""
        return self.exclude(state=SyncState.DELETED)

    def affected_by_mapping(self) -> AssetQuerySet:
        """Assets a mapping change left stale (what "Re-sync the affected assets" re-syncs)."""
        return self.filter(state=SyncState.STALE, stale_cause=StaleCause.MAPPING)

    def stale(self, cause: str, reason: str, *, any_state: bool = False) -> int:
        """The in-step (or already stale) assets among these no longer hold what the PIM and the
        mapping say; `any_state`: failing and never-synced ones too (the caller knows they were
        just written). Deleted assets stay deleted."""
        assets = self if any_state else self.filter(state__in=(SyncState.IN_STEP, SyncState.STALE))
        return assets.known().update(
            state=SyncState.STALE, stale_cause=cause, stale_since=timezone.now(), state_reason=reason[:255]
        )

    def back_in_step(self) -> int:
        """Assets a mapping change left stale whose rules are what they were synced with again."""
        return self.affected_by_mapping().update(
            state=SyncState.IN_STEP, stale_cause="", stale_since=None, state_reason=""
        )

    def failing(self, reason: str, **described) -> int:
        """The enrichment failed for good."""
        return self.update(**described, state=SyncState.FAILING, state_reason=reason[:255])

    def deleted(self, deleted_at) -> int:
        """The asset was deleted in AEM at `deleted_at` (a later deletion only moves the time)."""
        newer = models.Q(deleted_at__isnull=True) | models.Q(deleted_at__lt=deleted_at)
        return self.filter(newer).update(
            deleted_at=deleted_at,
            state=SyncState.DELETED,
            state_reason=f"deleted in AEM at {deleted_at:%Y-%m-%d %H:%M:%S}",
            stale_cause="",
            stale_since=None,
        )


class Asset(Leased, models.Model):
    """One AEM asset pimsync knows (from an event, a backfill or the journal): where it is, which
    product it shows, whether AEM holds what the PIM and the mapping say, and the lease that keeps
    two workers from enriching it at once.

    `state` moves only through `AssetQuerySet`'s methods: with every enrichment (`pimsync.pipeline`)
    succeeded or unchanged → in step, failed → failing, deleted in AEM → deleted; a PIM change or a
    mapping change marks in-step assets stale (`pimsync.resync`) until a re-sync writes them again.
    The fingerprints say what the last good sync was computed from: the PIM product and the
    mapping rules that applied. The last written values let an echoing `metadata_updated` event be
    recognised and skipped.
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
    # Not indexed, nor is lease_token: an UPDATE that changes no indexed column can be a HOT
    # update in PostgreSQL (the new row version on the same page, no index touched), and taking a
    # lease is such an UPDATE on every enrichment. The drain finds leased assets by primary key.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_written = models.JSONField(default=dict, blank=True)
    last_written_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = AssetQuerySet.as_manager()

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
    def synced(
        cls,
        pk: str,
        started_at,
        *,
        pim_fingerprint: str,
        mapping_fingerprint: str,
        mapping_generation: int,
        release: tuple[str, dict | None] | None = None,
        **described,
    ) -> bool:
        """An enrichment that started at `started_at` with the rules of `mapping_generation` left
        AEM holding the mapped values: in step, unless the asset was marked stale after that
        enrichment read the PIM and the mapping (then only `described` and the sync time are
        written). False, and nothing written, when the rules changed since that generation: the
        caller says stale. `release`: (token, what pimsync has written to the asset, None if
        unchanged): give the lease back too, as `release` does, if that token still holds it.

        Every enrichment's last statement, so one UPDATE in plain SQL: each state column is chosen
        by a CASE on the row as it was. Two ORM UPDATEs cost 5% of a worker's CPU in py-spy, and
        one with the ORM's Case/When 25% (resolving the expressions)."""
        quote = connection.ops.quote_name
        adapt = connection.ops.adapt_datetimefield_value
        fields = {name: cls._meta.get_field(name) for name in described}
        assignments = [f"{quote(field.column)} = %s" for field in fields.values()]
        params = [field.get_db_prep_save(described[name], connection) for name, field in fields.items()]
        assignments.append(f"{quote('last_synced_at')} = %s")
        params.append(adapt(timezone.now()))
        since = quote("stale_since")
        after_change = f"({since} IS NULL OR {since} < %s)"
        started = adapt(started_at)
        for column, value in (
            ("state", SyncState.IN_STEP.value),
            ("state_reason", ""),
            ("stale_cause", ""),
            ("pim_fingerprint", pim_fingerprint),
            ("mapping_fingerprint", mapping_fingerprint),
        ):
            assignments.append(f"{quote(column)} = CASE WHEN {after_change} THEN %s ELSE {quote(column)} END")
            params += [started, value]
        # Every CASE reads the row as it was before this UPDATE (PostgreSQL and SQLite alike), so
        # stale_since can be cleared in the same statement that tests it.
        assignments.append(f"{since} = CASE WHEN {after_change} THEN NULL ELSE {since} END")
        params.append(started)
        if release is not None:
            token, written = release
            held = f"{quote('lease_token')} = %s"
            given_back = {"lease_until": None, "lease_token": ""}
            if written is not None:
                given_back = {"last_written": written, "last_written_at": timezone.now(), **given_back}
            for name, value in given_back.items():
                field = cls._meta.get_field(name)
                assignments.append(f"{quote(field.column)} = CASE WHEN {held} THEN %s ELSE {quote(field.column)} END")
                params += [token, field.get_db_prep_save(value, connection)]
        changed, changed_params = MappingConfig.changed_since_condition(mapping_generation)
        params += [pk, *changed_params]
        sql = (
            f"UPDATE {quote(cls._meta.db_table)} SET {', '.join(assignments)} "
            f"WHERE {quote('asset_id')} = %s AND NOT {changed}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount > 0

    @classmethod
    def registered(cls, asset_id: str, path: str, name: str, mime_type: str, *, known_from: str, why: str) -> Asset:
        """A new row for an asset pimsync has not synced yet (not saved)."""
        return cls(
            asset_id=asset_id,
            path=path,
            name=name,
            mime_type=mime_type,
            state=SyncState.NEVER_SYNCED,
            state_reason=why,
            known_from=known_from,
        )
