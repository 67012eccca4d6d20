"""`python manage.py doctor [--asset ID] [--product-key K] [--write-test] [--json]`: prove every
connection of the configured deployment (`pimsync.doctor`); exit status 1 when a check fails."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from pimsync import doctor
from pimsync.backfill import ASSET_ID


class Command(BaseCommand):
    help = "Check every connection of this deployment (IMS, I/O Events, the journal, AEM, backfill, PIM, secrets)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--asset", default="", help="the AEM asset id to read (default: the newest known asset)")
        parser.add_argument("--product-key", default="", help="a product key to look up in the PIM")
        parser.add_argument(
            "--write-test",
            action="store_true",
            help="write one property's current value back to the asset once per PATCH path style",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")

    def handle(self, *args, asset: str, product_key: str, write_test: bool, json: bool, **options) -> None:
        asset = asset.strip()
        if asset and not ASSET_ID.match(asset):
            raise CommandError(f"--asset {asset[:80]!r} is not an AEM asset id (urn:aaid:aem:<uuid>)")
        if len(product_key) > 255:
            raise CommandError("--product-key is longer than 255 characters")
        show = None if json else (lambda line: self.stdout.write(line.text()))
        report = doctor.run(doctor.Options(asset, product_key.strip(), write_test), progress=show)
        report.store()
        if json:
            self.stdout.write(report.as_json())
        else:
            self.stdout.write(
                f"{report.count(doctor.OK)} OK, {report.count(doctor.FAIL)} failed, {report.count(doctor.SKIP)} skipped"
            )
        if report.failed:
            raise SystemExit(1)
