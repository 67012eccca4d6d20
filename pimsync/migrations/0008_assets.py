"""Assets as a first-class object (the Assets list, sync states, fingerprints), events created
by re-sync jobs (their priority and job), and re-sync jobs themselves.

Assets known before the upgrade are described from their events by 0014_asset_upgrade."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pimsync", "0007_alerts"),
    ]

    operations = [
        # The per-asset lease row becomes the Assets list: renamed, not recreated, so leases and
        # the last written values survive the upgrade.
        migrations.RenameModel(old_name="AssetState", new_name="Asset"),
        migrations.AddField(model_name="asset", name="path", field=models.CharField(blank=True, max_length=1024)),
        migrations.AddField(model_name="asset", name="name", field=models.CharField(blank=True, max_length=255)),
        migrations.AddField(model_name="asset", name="mime_type", field=models.CharField(blank=True, max_length=255)),
        migrations.AddField(model_name="asset", name="product_key", field=models.CharField(blank=True, max_length=255)),
        migrations.AddField(
            model_name="asset",
            name="state",
            field=models.CharField(
                choices=[
                    ("in_step", "in step"),
                    ("stale", "stale"),
                    ("failing", "failing"),
                    ("never_synced", "never synced"),
                    ("deleted", "deleted"),
                ],
                default="never_synced",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="asset",
            name="state_reason",
            field=models.CharField(blank=True, help_text="Why the asset is in its state", max_length=255),
        ),
        migrations.AddField(
            model_name="asset",
            name="stale_cause",
            field=models.CharField(
                blank=True, choices=[("pim", "PIM data changed"), ("mapping", "mapping changed")], max_length=16
            ),
        ),
        migrations.AddField(model_name="asset", name="stale_since", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="asset", name="last_outcome", field=models.CharField(blank=True, max_length=16)),
        migrations.AddField(
            model_name="asset",
            name="last_synced_at",
            field=models.DateTimeField(blank=True, help_text="When AEM last held the mapped values", null=True),
        ),
        migrations.AddField(
            model_name="asset", name="pim_fingerprint", field=models.CharField(blank=True, max_length=64)
        ),
        migrations.AddField(
            model_name="asset", name="mapping_fingerprint", field=models.CharField(blank=True, max_length=64)
        ),
        migrations.AddField(
            model_name="asset", name="first_seen_at", field=models.DateTimeField(default=django.utils.timezone.now)
        ),
        migrations.AddField(
            model_name="asset",
            name="known_from",
            field=models.CharField(default="event", help_text="event, journal or backfill", max_length=16),
        ),
        migrations.AlterModelOptions(
            name="asset",
            options={"ordering": ["path", "asset_id"], "permissions": [("resync_asset", "Can re-sync assets")]},
        ),
        migrations.AddField(
            model_name="event",
            name="job",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="events",
                to="pimsync.job",
            ),
        ),
        migrations.AddField(
            model_name="event",
            name="priority",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="job",
            name="asset_position",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="job",
            name="assets",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="failed",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="job",
            name="scheduled_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="unchanged",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="job",
            name="why",
            field=models.CharField(blank=True, help_text="Why the job was started", max_length=255),
        ),
        migrations.AlterField(
            model_name="event",
            name="arrived_by",
            field=models.CharField(
                choices=[("webhook", "webhook"), ("journal", "journal"), ("resync", "resync")],
                default="webhook",
                help_text="How the event reached pimsync first: pushed to the webhook, pulled from the journal, or created by a re-sync",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                choices=[("retry", "retry"), ("resync", "re-sync"), ("affected", "mapping check")],
                default="retry",
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["status", "priority", "next_attempt_at"], name="event_due_priority"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["job", "status"], name="event_job_status"),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["path", "asset_id"], name="asset_by_path"),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["state", "path", "asset_id"], name="asset_state_path"),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["path"], name="asset_path_prefix", opclasses=["varchar_pattern_ops"]),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["name"], name="asset_name_prefix", opclasses=["varchar_pattern_ops"]),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["product_key"], name="asset_product_key", opclasses=["varchar_pattern_ops"]),
        ),
    ]
