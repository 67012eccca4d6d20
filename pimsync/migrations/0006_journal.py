"""The I/O Events journal: how each event arrived, where the journal pull is, and its schedule.

The schedule runs every minute (django-q2 schedules count in whole minutes); the task itself skips
a run until PIMSYNC_JOURNAL_POLL_SECONDS have passed since the last pull and any retry-after the
journal asked for, so changing the setting needs no new migration.
"""

import django.utils.timezone
from django.db import migrations, models

JOURNAL = "pimsync journal pull"


def add_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=JOURNAL,
        defaults={"func": "pimsync.tasks.pull_journal", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=JOURNAL).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pimsync", "0005_metrics"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="JournalCursor",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                (
                    "position",
                    models.CharField(
                        blank=True, help_text="The journal position read up to ('' : none)", max_length=1024
                    ),
                ),
                ("next_url", models.CharField(blank=True, max_length=2048)),
                (
                    "newest_event_time",
                    models.DateTimeField(blank=True, help_text="`time` of the newest journal event", null=True),
                ),
                (
                    "last_pulled_at",
                    models.DateTimeField(blank=True, help_text="When a pull last reached the journal", null=True),
                ),
                (
                    "caught_up_at",
                    models.DateTimeField(blank=True, help_text="When a pull last reached the end (204)", null=True),
                ),
                ("last_error", models.TextField(blank=True)),
                (
                    "not_before",
                    models.DateTimeField(blank=True, help_text="No pull before this (retry-after)", null=True),
                ),
                (
                    "expired_at",
                    models.DateTimeField(blank=True, help_text="When the journal last answered 410 Gone", null=True),
                ),
                (
                    "pulled_total",
                    models.BigIntegerField(default=0, help_text="Journal events read since the cursor was created"),
                ),
                ("lease_token", models.CharField(blank=True, max_length=32)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="SandboxJournalEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event", models.JSONField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name="event",
            name="arrived_by",
            field=models.CharField(
                choices=[("webhook", "webhook"), ("journal", "journal")],
                default="webhook",
                help_text="How the event reached pimsync first: pushed to the webhook or pulled from the journal",
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["arrived_by", "-received_at"], name="event_arrival"),
        ),
        migrations.RunPython(add_schedule, remove_schedule),
    ]
