"""Alerts: their history, the webhook's refusals per minute, and the check every minute
(a schedule created by `migrate`, like the sweeper's)."""

import django.utils.timezone
from django.db import migrations, models

CHECKER = "pimsync alerts"


def add_checker(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=CHECKER,
        defaults={"func": "pimsync.tasks.check_alerts", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_checker(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=CHECKER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pimsync", "0006_journal"),
        ("pimsync", "0002_sweeper_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="Alert",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("condition", models.CharField(max_length=64)),
                ("summary", models.TextField(help_text="What was wrong when the alert was opened or last changed")),
                (
                    "link",
                    models.CharField(blank=True, help_text="The dashboard page that shows it (a path)", max_length=500),
                ),
                ("opened_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("last_checked_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("notified_open", models.JSONField(blank=True, default=list)),
                ("notified_resolved", models.JSONField(blank=True, default=list)),
                (
                    "notify_failures",
                    models.PositiveIntegerField(default=0, help_text="Messages a channel failed to deliver"),
                ),
            ],
            options={
                "ordering": ["-opened_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="SignatureRefusals",
            fields=[
                ("minute", models.DateTimeField(primary_key=True, serialize=False)),
                ("count", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name="attempt",
            index=models.Index(fields=["started_at"], name="attempt_started"),
        ),
        migrations.AddIndex(
            model_name="alert",
            index=models.Index(fields=["-opened_at", "-id"], name="alert_newest"),
        ),
        migrations.AddIndex(
            model_name="alert",
            index=models.Index(fields=["resolved_at"], name="alert_resolved"),
        ),
        migrations.AddConstraint(
            model_name="alert",
            constraint=models.UniqueConstraint(
                condition=models.Q(("resolved_at__isnull", True)), fields=("condition",), name="alert_one_open"
            ),
        ),
        migrations.RunPython(add_checker, remove_checker),
    ]
