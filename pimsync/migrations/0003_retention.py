"""Every deployment gets the daily purge schedule with `migrate` (see pimsync.retention)."""

from django.db import migrations

PURGE = "pimsync purge"


def add_purge(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=PURGE, defaults={"func": "pimsync.tasks.purge", "schedule_type": "D", "repeats": -1}
    )


def remove_purge(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=PURGE).delete()


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0002_sweeper_schedule")]
    operations = [migrations.RunPython(add_purge, remove_purge)]
