"""`manage.py simulate_pim_change`: change a product in the sandbox's demo PIM and tell pimsync,
the way a PIM would: a signed POST to `/webhooks/pim`. The assets showing the product turn
`stale`, and once the worker has re-synced them, `in step` again with the new values."""

from __future__ import annotations

import copy
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from django.utils import timezone

from pimsync.models import DemoProduct
from pimsync.outbound import http
from pimsync.pim import webhook
from pimsync.pim.connectors import DemoConnector


class Command(BaseCommand):
    help = "Change a demo PIM product (field=value, dotted paths) and send the signed PIM webhook."

    def add_arguments(self, parser):
        parser.add_argument("key", help="the product key (SKUID), e.g. SKU-100201")
        parser.add_argument(
            "changes",
            nargs="*",
            metavar="field=value",
            help="e.g. SupplierName='Acme Outdoor' or values.name.0.data='Dome tent 3'; a value that is JSON "
            '(21.5, true, ["red"]) is set as such, anything else as text',
        )
        parser.add_argument("--reset", action="store_true", help="back to the shipped catalog's product")
        parser.add_argument("--url", default="", help="webhook URL (default: PIMSYNC_PUBLIC_URL/webhooks/pim)")

    def handle(self, *args, key, changes, reset, url, **options):
        if not settings.PIMSYNC_SANDBOX or settings.PIM_CONNECTOR != "demo":
            raise CommandError(
                "simulate_pim_change changes the demo PIM, so it needs sandbox mode with PIM_CONNECTOR=demo"
            )
        secrets = webhook.secrets()
        if not secrets:
            raise CommandError("PIM_WEBHOOK_SECRET is not set, so pimsync would not accept the webhook")
        product = copy.deepcopy(DemoConnector().get_product(key))  # never the cached catalog itself
        if product is None:
            raise CommandError(f"the demo PIM has no product {key!r} (see pimsync/demo/catalog.json)")
        if reset:
            DemoProduct.objects.filter(pk=key).delete()
            self.stdout.write(f"{key} is the shipped catalog's product again.")
        elif not changes:
            raise CommandError("give at least one field=value, or --reset")
        else:
            for change in changes:
                self.stdout.write(f"  {key}: {apply(product, change)}")
            DemoProduct.objects.update_or_create(pk=key, defaults={"data": product, "changed_at": timezone.now()})
        answer = notify(url or settings.PIMSYNC_PUBLIC_URL + "/webhooks/pim", key, secrets[0])
        self._report(key, answer)

    def _report(self, key: str, answer: dict) -> None:
        if not answer.get("job"):
            self.stdout.write(
                self.style.WARNING(f"pimsync knows no asset of {key} yet: upload some with simulate_upload first.")
            )
            return
        page = settings.PIMSYNC_PUBLIC_URL + reverse("admin:pimsync_event_job", args=[answer["job"]])
        self.stdout.write(
            self.style.SUCCESS(
                f"The PIM webhook marked {answer['assets']} asset(s) stale; re-sync job {answer['job']}."
            )
        )
        self.stdout.write(f"Watch it at {page}")


def apply(product: dict, change: str) -> str:
    """Set one `field=value` in `product` (dots go into objects, a number indexes a list); say what changed."""
    path, sep, raw = change.partition("=")
    if not sep or not path:
        raise CommandError(f"{change!r} is not field=value")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    *parents, last = path.split(".")
    target = product
    for part in parents:
        target = _child(target, part, path)
    if isinstance(target, list):
        index = _index(target, last, path)
        old, target[index] = target[index], value
    elif isinstance(target, dict):
        old, target[last] = target.get(last), value
    else:
        raise CommandError(f"{path}: {'.'.join(parents)} is neither an object nor a list")
    return f"{path}: {json.dumps(old, ensure_ascii=False)} → {json.dumps(value, ensure_ascii=False)}"


def _child(target: object, part: str, path: str) -> object:
    if isinstance(target, list):
        return target[_index(target, part, path)]
    if isinstance(target, dict) and isinstance(target.get(part), dict | list):
        return target[part]
    raise CommandError(f"{path}: the product has no object or list at {part!r}")


def _index(target: list, part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(target):
        raise CommandError(f"{path}: {part!r} is not an index of a list of {len(target)}")
    return int(part)


def notify(url: str, key: str, secret: str) -> dict:
    """POST the signed `{"product_keys": [key]}`, as a PIM would; pimsync's JSON answer."""
    body = json.dumps({"product_keys": [key]}).encode()
    headers = {"Content-Type": "application/json", webhook.HEADER: webhook.signed_header(body, secret)}
    try:
        response = http.request("POST", url, data=body, headers=headers, expected=(202,), error_class="webhook")
    except http.HttpError as exc:
        raise CommandError(
            f"the PIM webhook did not accept the change: {exc.message} {exc.body[:300]} (is `make run` running?)"
        ) from None
    return response.json()
