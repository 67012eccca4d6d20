"""`manage.py setup_roles`: create the dashboard's groups with exactly their permissions."""

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError

VIEW = ["view_event", "view_attempt", "view_mappingconfig", "view_mappingrule", "view_alert", "view_asset"]
ROLES = {
    "Viewers": VIEW,
    "Support": [*VIEW, "retry_event", "resync_asset", "silence_alert"],
    # Mapping editors may re-sync: after changing a rule they re-sync the assets it affects.
    "Mapping editors": [
        *VIEW,
        "change_mappingconfig",
        "add_mappingrule",
        "change_mappingrule",
        "delete_mappingrule",
        "resync_asset",
    ],
}


class Command(BaseCommand):
    help = "Create or reset the groups Mapping editors, Support and Viewers. Members must also be staff users."

    def handle(self, *args, **options):
        incomplete = []
        for name, codenames in ROLES.items():
            group, created = Group.objects.get_or_create(name=name)
            permissions = Permission.objects.filter(content_type__app_label="pimsync", codename__in=codenames)
            missing = set(codenames) - set(permissions.values_list("codename", flat=True))
            group.permissions.set(permissions)
            self.stdout.write(f"{'Created' if created else 'Updated'} {name}: {', '.join(sorted(codenames))}")
            if missing:
                incomplete.append(f"{name} lacks {', '.join(sorted(missing))}")
        if incomplete:
            # A group without its permissions looks set up and lets nobody work: a deploy script
            # must stop here. Permissions are created by migrate.
            raise CommandError(
                "some permissions do not exist (run `manage.py migrate` first, then this again): "
                + "; ".join(incomplete)
            )
