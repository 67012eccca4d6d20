"""`manage.py export_mappings [FILE]`: the mapping configuration as JSON, the format `import_mappings` reads."""

import json

from django.core.management.base import BaseCommand

from pimsync.mapping import export_config


class Command(BaseCommand):
    help = "Write the product-key rule and all mapping rules as JSON, to FILE or stdout."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?")

    def handle(self, *args, file=None, **options):
        text = json.dumps(export_config(), indent=2, ensure_ascii=False) + "\n"
        if file:
            with open(file, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"Wrote {file}")
        else:
            self.stdout.write(text, ending="")
