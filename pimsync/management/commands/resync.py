"""`manage.py resync`: what the Assets page's Re-sync does, from a shell (a cron job, a deploy script)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Max
from django.urls import reverse

from pimsync import jobs, resync, worker
from pimsync.models import Job, MappingConfig, MappingRule

SHOWN_PATHS = 20


class Command(BaseCommand):
    help = "Re-sync known assets (enrich them again from the PIM) as a background job."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every known asset (deleted ones never)")
        which.add_argument(
            "--product-key", action="append", metavar="KEY", help="the assets of this product (repeatable)"
        )
        which.add_argument("--path-prefix", metavar="P", help="the assets whose path starts with P")
        which.add_argument("--state", metavar="S", help="the assets in this state, e.g. stale or failing")
        which.add_argument("--mapping-affected", action="store_true", help="the assets the last mapping change affects")
        parser.add_argument(
            "--dry-run", action="store_true", help="say which assets would be re-synced; change nothing"
        )
        parser.add_argument("--why", default="", help="why, for the job history (default: 'resync command')")
        parser.add_argument("--wait", action="store_true", help="run the job in this process until it is done")

    def handle(self, *args, dry_run, why, wait, **options):
        spec = selection(options)
        try:
            resync.check(spec)
        except resync.SelectionError as exc:
            raise CommandError(str(exc)) from None
        if "mapping_affected" in spec and not dry_run:
            self._check_mapping()
        assets = resync.select(spec)
        if dry_run:
            self._describe(spec, assets)
            return
        job = resync.start(None, spec, why or "resync command")
        page = settings.PIMSYNC_PUBLIC_URL + reverse("admin:pimsync_event_job", args=[job.pk])
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk}: {job.description} ({job.total} asset(s))."))
        self.stdout.write(f"Follow it at {page}")
        if wait:
            self._wait(job)
        else:
            self.stdout.write("A running worker does the work; or run this again with --wait to do it here.")

    def _describe(self, spec: dict, assets) -> None:
        total = assets.count()
        self.stdout.write(f"{total} asset(s) would be re-synced ({resync.describe(spec)}):")
        for path, asset_id in assets.order_by("path", "asset_id").values_list("path", "asset_id")[:SHOWN_PATHS]:
            self.stdout.write(f"  {path or asset_id}")
        if total > SHOWN_PATHS:
            self.stdout.write(f"  … and {total - SHOWN_PATHS} more")
        if "mapping_affected" in spec and not mapping_check_current():
            self.stdout.write(
                self.style.WARNING(
                    "The mapping changed since the last check of the affected assets; without --dry-run "
                    "the check runs first, so the number may differ."
                )
            )

    def _check_mapping(self) -> None:
        """Find the assets the last mapping change affects, here, unless a finished check already did."""
        if mapping_check_current():
            return
        self.stdout.write("Checking which assets the last mapping change affects…")
        job = resync.mapping_changed(None)
        while Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE).exists():
            resync.find_affected(job.pk)
        self.stdout.write(f"  {resync.affected_count()} asset(s) affected.")

    def _wait(self, job: Job) -> None:
        """Step the job and drain its events here until it ends (a worker may help meanwhile)."""
        shown = None
        try:
            while True:
                resync.run(job.pk)
                job.refresh_from_db()
                progress = jobs.progress(job)
                line = (
                    f"  {progress.done}/{progress.total} done: {progress.succeeded} written, "
                    f"{progress.unchanged} unchanged, {progress.failed} failed, {progress.skipped} skipped"
                )
                if line != shown:
                    self.stdout.write(line)
                    shown = line
                if not job.is_active:
                    break
                drained = worker.drain()
                if drained == "drained 0 asset(s)" or not drained.startswith("drained"):
                    time.sleep(0.5)  # the next events are not due yet (PIMSYNC_RESYNC_RATE paces them)
        except KeyboardInterrupt:
            self.stdout.write("Stopped waiting; a running worker carries on with the job (cancel it on its page).")
            return
        if job.status != Job.State.FINISHED or job.failed:
            # A script that waits must hear that the re-sync did not do its work (exit status 1).
            raise CommandError(f"Job {job.pk} {job.status}: {resync.summary(job)}.")
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk} {job.status}: {resync.summary(job)}."))


def selection(options: dict) -> dict:
    """The re-sync selection the one given option names."""
    if options["all"]:
        return {"all": True}
    if options["product_key"]:
        return {"product_keys": options["product_key"]}
    if options["path_prefix"] is not None:
        return {"path_prefix": options["path_prefix"]}
    if options["state"] is not None:
        return {"state": options["state"]}
    return {"mapping_affected": True}


def mapping_check_current() -> bool:
    """Whether a check of the affected assets finished after the mapping last changed."""
    changed = max(
        filter(
            None,
            [
                MappingConfig.objects.aggregate(at=Max("updated_at"))["at"],
                MappingRule.objects.aggregate(at=Max("updated_at"))["at"],
            ],
        ),
        default=None,
    )
    checks = Job.objects.filter(kind=Job.Kind.AFFECTED, status=Job.State.FINISHED)
    # No mapping saved yet: no change can have affected anything.
    return checks.filter(created_at__gte=changed).exists() if changed else True
