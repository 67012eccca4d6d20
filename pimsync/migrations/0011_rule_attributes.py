"""Mapping rules can read an Akeneo attribute (with locale, channel, currency, option codes)
instead of a JMESPath expression, so `pim_field` may now be empty."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0010_akeneo")]

    operations = [
        migrations.AddField(
            model_name="mappingrule",
            name="attribute",
            field=models.CharField(
                blank=True,
                help_text="An Akeneo attribute code, e.g. name or color",
                max_length=100,
                verbose_name="Akeneo attribute",
            ),
        ),
        migrations.AddField(
            model_name="mappingrule",
            name="channel",
            field=models.CharField(
                blank=True, help_text="Empty: AKENEO_CHANNEL (for scopable attributes)", max_length=100
            ),
        ),
        migrations.AddField(
            model_name="mappingrule",
            name="currency",
            field=models.CharField(blank=True, help_text="For prices, e.g. EUR; empty: the first price", max_length=3),
        ),
        migrations.AddField(
            model_name="mappingrule",
            name="locale",
            field=models.CharField(
                blank=True, help_text="Empty: AKENEO_LOCALE (for localizable attributes)", max_length=32
            ),
        ),
        migrations.AddField(
            model_name="mappingrule",
            name="option_codes",
            field=models.BooleanField(
                default=False,
                help_text="Write the codes of select options instead of their labels",
                verbose_name="option codes",
            ),
        ),
        migrations.AlterField(
            model_name="mappingrule",
            name="pim_field",
            field=models.CharField(
                blank=True,
                help_text="JMESPath over the PIM product JSON; a plain field name is one",
                max_length=500,
                verbose_name="PIM field",
            ),
        ),
    ]
