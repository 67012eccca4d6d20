"""The review fixes of the Akeneo connector: the write-back's per-product lock, when a waiting
PIM notification is handed out again, and the product's uuid on its assets."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0014_asset_upgrade")]

    operations = [
        migrations.CreateModel(
            name="ProductLinks",
            fields=[
                ("product_key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("lease_token", models.CharField(blank=True, max_length=32)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                (
                    "written_at",
                    models.DateTimeField(blank=True, help_text="When pimsync last wrote the links", null=True),
                ),
            ],
            options={"verbose_name_plural": "product links"},
        ),
        migrations.AddField(
            model_name="pimnotification",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="asset",
            name="pim_product_uuid",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["pim_product_uuid"], name="asset_pim_product_uuid"),
        ),
    ]
