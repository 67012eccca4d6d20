"""`manage.py seed`: make an empty database usable (what `make run` runs before serving).

Idempotent: it only fills what is empty, so running it on every start is safe.
"""

import io
import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from pimsync.mapping import import_config
from pimsync.models import MappingConfig, MappingRule

DEMO_MAPPINGS = settings.BASE_DIR / "pimsync" / "demo" / "mappings.json"


class Command(BaseCommand):
    help = "Create the roles, the demo mapping rules (demo PIM) and an admin user, where none exist."

    def handle(self, *args, **options):
        call_command("setup_roles", stdout=io.StringIO())
        MappingConfig.load()
        if not MappingRule.objects.exists() and settings.PIM_CONNECTOR == "demo":
            _, rules = import_config(json.loads(DEMO_MAPPINGS.read_text()))
            self.stdout.write(f"Seeded {len(rules)} demo mapping rules for the demo PIM catalog.")
        users = get_user_model().objects
        if not users.exists():
            password = os.environ.get("PIMSYNC_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            users.create_superuser("admin", "", password)
            shown = "from PIMSYNC_ADMIN_PASSWORD" if os.environ.get("PIMSYNC_ADMIN_PASSWORD") else password
            # Printed once, here; it is stored only as a hash.
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the admin user. Log in at {settings.PIMSYNC_PUBLIC_URL}/admin/ as admin / {shown}"
                )
            )
