"""Assets known before the upgrade (the per-asset lease rows) described from their events: path,
name and type from the newest event about them, the product key from the newest event that had
one, the state from the newest enrichment that ended (succeeded or unchanged: in step; failed:
failing; none: never synced; deleted in AEM: deleted). Their fingerprints stay empty: the first
mapping check counts them as affected, which is the honest answer.

Not atomic, in batches of BATCH assets, each its own transaction: a large history is described
without holding anything the webhook needs.

Also the index behind "N assets are affected by the last mapping change" (the mapping page shows
it on every visit) and the one a re-sync by state walks in asset id order."""

from django.db import migrations, models, transaction

BATCH = 500
ENRICHED = ("succeeded", "unchanged", "failed")
DELETED = "aem.assets.asset.deleted"


def describe(asset, Event) -> None:
    events = Event.objects.filter(asset_id=asset.asset_id).exclude(type=DELETED)
    newest = events.order_by("-received_at", "-id").only("asset_path", "asset_name", "mime_type").first()
    if newest is not None:
        asset.path, asset.name, asset.mime_type = newest.asset_path, newest.asset_name, newest.mime_type
    keyed = events.exclude(product_key="").order_by("-received_at", "-id").values_list("product_key", flat=True).first()
    asset.product_key = keyed or ""
    ended = events.filter(status__in=ENRICHED, finished_at__isnull=False).order_by("-finished_at", "-id").first()
    if ended is not None:
        asset.last_outcome = ended.status
        asset.state = "failing" if ended.status == "failed" else "in_step"
        asset.state_reason = ended.reason[:255] if ended.status == "failed" else ""
        if asset.state == "in_step":
            asset.last_synced_at = ended.finished_at
    first = events.order_by("received_at").values_list("received_at", flat=True).first()
    if first is not None:
        asset.first_seen_at = first
    if asset.deleted_at is not None:
        asset.state = "deleted"


def describe_known_assets(apps, schema_editor):
    Asset = apps.get_model("pimsync", "Asset")
    Event = apps.get_model("pimsync", "Event")
    fields = ["path", "name", "mime_type", "product_key", "last_outcome", "state", "state_reason"]
    fields += ["last_synced_at", "first_seen_at"]
    last = ""
    while True:
        with transaction.atomic():
            assets = list(Asset.objects.filter(asset_id__gt=last, path="").order_by("asset_id")[:BATCH])
            if not assets:
                return
            last = assets[-1].asset_id
            for asset in assets:
                describe(asset, Event)
            Asset.objects.bulk_update(assets, fields)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("pimsync", "0013_demo_pim")]

    operations = [
        migrations.RunPython(describe_known_assets, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(
                fields=["asset_id"],
                condition=models.Q(state="stale", stale_cause="mapping"),
                name="asset_mapping_affected",
            ),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["state", "asset_id"], name="asset_state_id"),
        ),
    ]
