"""Every deployment gets the sweeper schedule with `migrate`, not only laptops that ran `seed`."""

from django.db import migrations

SWEEPER = "pimsync sweeper"


def add_sweeper(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SWEEPER,
        defaults={"func": "pimsync.tasks.sweep", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_sweeper(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEPER).delete()


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0001_initial"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]
    operations = [migrations.RunPython(add_sweeper, remove_sweeper)]
