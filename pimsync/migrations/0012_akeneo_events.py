"""Akeneo's change notifications (stored first, handled by a task), the poll's cursor, and the
schedule that polls the PIM for changed products every few minutes (it does nothing unless the
connector can list changed products, i.e. PIM_CONNECTOR=akeneo)."""

import django.utils.timezone
from django.db import migrations, models

POLLER = "pimsync pim poll"


def add_poller(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=POLLER,
        defaults={"func": "pimsync.tasks.poll_pim", "schedule_type": "I", "minutes": 2, "repeats": -1},
    )


def remove_poller(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=POLLER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pimsync", "0011_rule_attributes"),
        ("pimsync", "0002_sweeper_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="PimCursor",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("cursor", models.JSONField(blank=True, default=dict)),
                ("polled_at", models.DateTimeField(blank=True, help_text="When a poll last reached the PIM", null=True)),
                ("last_error", models.TextField(blank=True)),
                ("lease_token", models.CharField(blank=True, max_length=32)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="PimNotification",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("notification_id", models.CharField(max_length=255, unique=True)),
                ("kind", models.CharField(help_text="e.g. product.updated", max_length=100)),
                ("author", models.CharField(blank=True, max_length=255)),
                ("product_key", models.CharField(blank=True, max_length=255)),
                ("product_uuid", models.CharField(blank=True, max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("received", "received"),
                            ("processing", "processing"),
                            ("done", "done"),
                            ("ignored", "ignored"),
                            ("failed", "failed"),
                        ],
                        default="received",
                        max_length=16,
                    ),
                ),
                ("reason", models.CharField(blank=True, max_length=255)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("received_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("claimed_at", models.DateTimeField(blank=True, null=True)),
                ("handled_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "indexes": [models.Index(fields=["status", "received_at"], name="pimnotification_status")],
            },
        ),
        migrations.RunPython(add_poller, remove_poller),
    ]
