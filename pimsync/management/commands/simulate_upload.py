"""`manage.py simulate_upload`: what AEM and Adobe I/O Events would send when people upload
images, signed with the sandbox key and POSTed to the webhook over HTTP, the way Adobe I/O Events
delivers them (docs/adobe-events.md). Every event also lands in the sandbox's journal, as Adobe
journals every event of a registration; `--webhook-down` leaves it there only, so the journal
pull has to recover it."""

from __future__ import annotations

import json
import random
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from pimsync.models import SandboxAsset, SandboxJournalEntry
from pimsync.outbound import http
from pimsync.pim.connectors import demo_catalog
from pimsync.sandbox.keys import signed_headers

FOLDERS = ("/content/dam/pimsync-demo/products", "/content/dam/pimsync-demo/lifestyle")
UNKNOWN_SHARE = 0.15  # the share of uploads whose SKU the demo PIM does not know


def build_event(asset: SandboxAsset) -> dict:
    """A real-shaped `processing_completed` event, as AEM as a Cloud Service emits it."""
    now = timezone.now()
    event_id = str(uuid.uuid4())
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": settings.AEM_EVENT_SOURCE,
        "type": "aem.assets.asset.processing_completed",
        "datacontenttype": "application/json",
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",  # Adobe sends nanoseconds
        "eventid": event_id,
        "event_id": event_id,
        "recipientclientid": settings.ADOBE_CLIENT_ID,
        "recipient_client_id": settings.ADOBE_CLIENT_ID,
        "data": {
            "assetId": asset.asset_id,
            "repositoryMetadata": {
                "repo:repositoryId": "author-p12345-e67890.adobeaemcloud.com",
                "repo:assetId": asset.asset_id,
                "repo:assetClass": "file",
                "repo:name": asset.name,
                "repo:path": asset.path,
                "repo:size": str(random.randint(200_000, 4_000_000)),
                "repo:state": "ACTIVE",
                "repo:createDate": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "dc:format": asset.mime_type,
                "aem:assetState": "processed",
            },
            "assetMetadata": {},
        },
    }


class Command(BaseCommand):
    help = "Upload sandbox assets and deliver signed processing_completed events to the webhook."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10, help="how many uploads (default 10)")
        parser.add_argument("--duplicates", action="store_true", help="deliver every event twice, like a retry")
        parser.add_argument("--unknown-sku", action="store_true", help="every upload has a SKU the PIM lacks")
        parser.add_argument("--batch", action="store_true", help="batch delivery: up to 20 events per request")
        parser.add_argument("--url", default="", help="webhook URL (default: PIMSYNC_PUBLIC_URL/webhooks/aem)")
        parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
        parser.add_argument(
            "--webhook-down",
            action="store_true",
            help="deliver nothing to the webhook: the events are only in the journal, for the journal pull to recover",
        )

    def handle(self, *args, count, duplicates, unknown_sku, batch, url, seed, webhook_down, **options):
        if not settings.PIMSYNC_SANDBOX:
            raise CommandError(
                "simulate_upload signs with the sandbox key, so it needs sandbox mode "
                "(AEM_AUTHOR_URL unset and DEBUG=1, or PIMSYNC_SANDBOX=1)."
            )
        if not 1 <= count <= 100_000:
            raise CommandError("--count must be between 1 and 100000")
        assets = upload(count, random.Random(seed), unknown_sku=unknown_sku)
        events = [build_event(asset) for asset in assets]
        SandboxJournalEntry.objects.bulk_create([SandboxJournalEntry(event=event) for event in events])
        if webhook_down:
            self.stdout.write(
                self.style.WARNING(
                    f"Uploaded {count} asset(s) with the webhook down: their events are only in the journal. The "
                    "scheduled journal pull recovers them within a minute or two (or run `manage.py pull_journal`)."
                )
            )
            return
        size = 20 if batch else 1
        bodies = [events[i : i + size] if batch else events[i] for i in range(0, len(events), size)]
        accepted, duplicate = self._deliver(bodies, url or settings.PIMSYNC_PUBLIC_URL + "/webhooks/aem", duplicates)
        self.stdout.write(
            self.style.SUCCESS(
                f"Uploaded {count} asset(s): {accepted} event(s) accepted, {duplicate} duplicate(s) recognised."
            )
        )
        self.stdout.write(f"Watch them at {settings.PIMSYNC_PUBLIC_URL}/admin/pimsync/event/")

    def _deliver(self, bodies: list, url: str, duplicates: bool) -> tuple[int, int]:
        """POST every body (twice with --duplicates, the second marked as Adobe's retry)."""
        accepted = duplicate = 0
        for number, document in enumerate(bodies, 1):
            body = json.dumps(document).encode()
            for delivery in range(2 if duplicates else 1):
                answer = deliver(url, body, number, retry_count=delivery)
                accepted += answer.get("accepted", 0)
                duplicate += answer.get("duplicates", 0)
            if number % 50 == 0 or number == len(bodies):
                self.stdout.write(f"  delivered {number}/{len(bodies)} request(s)")
        return accepted, duplicate


def upload(count: int, rng: random.Random, *, unknown_sku: bool) -> list[SandboxAsset]:
    """Create `count` sandbox assets named like product shots (`<SKU>_<view>_<n>.png`)."""
    skus = sorted(demo_catalog())
    assets = []
    for n in range(count):
        unknown = unknown_sku or rng.random() < UNKNOWN_SHARE
        sku = f"SKU-{rng.randint(900000, 999999)}" if unknown else rng.choice(skus)
        view = rng.choice(["front", "back", "detail", "lifestyle"])
        name = f"{sku}_{view}_{n + 1:03d}.{'jpg' if view == 'lifestyle' else 'png'}"
        mime_type = "image/jpeg" if name.endswith(".jpg") else "image/png"
        assets.append(
            SandboxAsset(
                asset_id=f"urn:aaid:aem:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                path=f"{FOLDERS[1] if view == 'lifestyle' else FOLDERS[0]}/{name}",
                name=name,
                mime_type=mime_type,
                metadata={"dc:format": mime_type},
            )
        )
    SandboxAsset.objects.bulk_create(assets, ignore_conflicts=True)
    return assets


def deliver(url: str, body: bytes, number: int, *, retry_count: int = 0) -> dict:
    """One signed delivery, as Adobe I/O Events sends it; the webhook's JSON answer."""
    headers = {
        "Content-Type": "application/cloudevents+json; charset=UTF-8",
        "x-adobe-delivery-id": str(uuid.uuid4()),
        **signed_headers(body),
    }
    if retry_count:
        headers["x-adobe-retry-count"] = str(retry_count)
    try:
        response = http.request("POST", url, data=body, headers=headers, error_class="webhook")
    except http.HttpError as exc:
        raise CommandError(
            f"the webhook did not accept delivery {number}: {exc.message} {exc.body[:300]} (is `make run` running?)"
        ) from None
    return response.json()
