"""Attribute rules: an Akeneo attribute read as a person reads it (labels, prices, measures), with
locale and channel, validated, imported and exported, fingerprinted and previewed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from dashboard.preview import preview
from pimsync import mapping
from pimsync.adobe import aem
from pimsync.mapping import AssetRef
from pimsync.models import MappingConfig, MappingRule
from pimsync.pim import akeneo_values

ASSET = AssetRef("urn:aaid:aem:1", "/content/dam/products/K1_front.png", "K1_front.png", "image/png")


def value(data, locale=None, scope=None, **extra) -> dict:
    return {"locale": locale, "scope": scope, "data": data, **extra}


# One product as Akeneo answers GET /api/rest/v1/products/K1?with_attribute_options=true.
AKENEO_PRODUCT = {
    "identifier": "K1",
    "family": "backpacks",
    "values": {
        "sku": [value("K1")],
        "name": [value("Trail backpack", "en_US"), value("Rucksack", "de_DE")],
        "description": [
            value("Short text", "en_US", "mobile"),
            value("Long text for the web shop", "en_US", "ecommerce"),
            value("Langer Text", "de_DE", "ecommerce"),
        ],
        "color": [value("red", linked_data={"attribute": "color", "code": "red", "labels": {"en_US": "Red"}})],
        "materials": [
            value(
                ["cotton", "nylon"],
                linked_data={
                    "cotton": {"attribute": "materials", "code": "cotton", "labels": {"en_US": "Cotton"}},
                    "nylon": {"attribute": "materials", "code": "nylon", "labels": {"de_DE": "Nylon (de)"}},
                },
            )
        ],
        "price": [value([{"amount": "49.90", "currency": "EUR"}, {"amount": "54.00", "currency": "USD"}])],
        "weight": [value({"amount": "1.2000", "unit": "KILOGRAM"})],
        "waterproof": [value(True)],
        "capacity": [value(35)],
    },
}


def read(attribute, locale="en_US", channel="ecommerce", **options):
    return akeneo_values.read(AKENEO_PRODUCT, attribute, locale=locale, channel=channel, **options)


class TestReadingValues:
    @pytest.mark.parametrize(
        "attribute, options, expected",
        [
            ("sku", {}, "K1"),
            ("color", {}, "Red"),
            ("color", {"option_codes": True}, "red"),
            ("materials", {}, ["Cotton", "nylon"]),  # no en_US label for nylon: its code
            ("materials", {"option_codes": True}, ["cotton", "nylon"]),
            ("price", {}, "49.90 EUR"),
            ("price", {"currency": "USD"}, "54.00 USD"),
            ("weight", {}, "1.2 KILOGRAM"),
            ("waterproof", {}, True),
            ("capacity", {}, 35),
        ],
    )
    def test_each_type_reads_as_a_person_reads_it(self, attribute, options, expected):
        assert read(attribute, **options) == (expected, "")

    def test_the_locale_and_channel_pick_the_value(self):
        assert read("name", locale="de_DE") == ("Rucksack", "")
        assert read("description") == ("Long text for the web shop", "")
        assert read("description", channel="mobile") == ("Short text", "")
        assert read("description", locale="de_DE") == ("Langer Text", "")

    def test_labels_follow_the_rules_locale(self):
        assert read("materials", locale="de_DE") == (["cotton", "Nylon (de)"], "")

    def test_a_value_without_locale_or_scope_fits_every_locale_and_channel(self):
        assert read("sku", locale="fr_FR", channel="print") == ("K1", "")

    def test_an_exact_value_wins_over_one_for_every_locale(self):
        product = {"values": {"name": [value("Any"), value("English", "en_US")]}}
        assert akeneo_values.read(product, "name", locale="en_US", channel="ecommerce") == ("English", "")

    def test_a_missing_locale_says_which_ones_the_product_has(self):
        expected = "no value of name for fr_FR, ecommerce (the product has de_DE, en_US)"
        assert read("name", locale="fr_FR") == (None, expected)

    def test_a_missing_currency_says_which_ones_the_product_has(self):
        assert read("price", currency="GBP") == (None, "no GBP price in price (the product has EUR, USD)")

    def test_a_missing_attribute_is_no_value(self):
        assert read("colour") == (None, "the product has no value for colour")

    @pytest.mark.parametrize(
        "amount, shown", [("1.2000", "1.2"), ("10.0000", "10"), ("100", "100"), ("0.5", "0.5"), (2.50, "2.5")]
    )
    def test_trailing_zeros_of_a_measure_go(self, amount, shown):
        product = {"values": {"weight": [value({"amount": amount, "unit": "KILOGRAM"})]}}
        assert akeneo_values.read(product, "weight", locale="en_US", channel="e") == (f"{shown} KILOGRAM", "")

    @pytest.mark.parametrize(
        "values, note",
        [
            ({"color": [value("red", linked_data="oops")]}, ""),
            ({"color": [value("red", linked_data={"code": "red", "labels": ["Red"]})]}, ""),
            ({"color": "red"}, "values.color is not a list of values: ignored"),
            ({"color": [value({"a": 1})]}, "values.color holds an object, which an attribute rule cannot read"),
            ({"color": [value(["a", {"b": 1}])]}, "values.color holds a list of an object and text"),
            ({"color": [value([{"amount": "x; drop", "currency": "EUR"}])]}, "a price that is not an amount"),
            ({"color": [value({"amount": [], "unit": "KILOGRAM"})]}, "a measure that is not an amount and a unit"),
            ({"color": ["not an entry", 7, None]}, "no value of color for en_US, ecommerce"),
        ],
    )
    def test_odd_shapes_give_no_crash_and_a_note(self, values, note):
        found, said = akeneo_values.read({"values": values}, "color", locale="en_US", channel="ecommerce")
        if note:
            assert found is None and note in said
        else:
            assert (found, said) == ("red", "")  # without usable labels: the option's code

    def test_a_list_nested_100000_deep_gives_a_note_not_a_recursion_error(self):
        data: list = []
        for _ in range(100_000):
            data = [data]
        found, note = akeneo_values.read({"values": {"color": [value(data)]}}, "color", locale="en_US", channel="e")
        assert found is None and "values.color holds a list of a list" in note

    @pytest.mark.parametrize("product", [None, [], {"values": []}, {"values": "x"}, {}])
    def test_a_product_without_values_is_no_value(self, product):
        assert akeneo_values.read(product, "name", locale="en_US", channel="e") == (
            None,
            "the product has no Akeneo values",
        )

    def test_a_huge_list_is_read_only_up_to_its_bound(self):
        entries = [value("x", "xx_XX")] * (akeneo_values.MAX_ITEMS * 5) + [value("late", "en_US")]
        found, note = akeneo_values.read({"values": {"name": entries}}, "name", locale="en_US", channel="e")
        assert found is None and "the product has xx_XX" in note


def attribute_rule(**fields) -> MappingRule:
    return MappingRule(**{"attribute": "name", "metadata_path": "dc:title", **fields})


class TestInPlan:
    def test_the_transform_and_the_default_still_apply(self):
        rules = [
            attribute_rule(transform="upper"),
            attribute_rule(attribute="materials", metadata_path="pim:materials", transform="join"),
            attribute_rule(attribute="name", locale="fr_FR", metadata_path="pim:title_fr", default="n/a"),
        ]
        planned = mapping.plan(ASSET, "K1", AKENEO_PRODUCT, {}, rules)
        assert aem.json_patch(planned.changes) == [
            {"op": "add", "path": "/dc:title", "value": "TRAIL BACKPACK"},
            {"op": "add", "path": "/pim:materials", "value": "Cotton, nylon"},
            {"op": "add", "path": "/pim:title_fr", "value": "n/a"},
        ]
        assert planned.results[2].note == (
            "no value of name for fr_FR, ecommerce (the product has de_DE, en_US); PIM value empty: default used"
        )

    def test_an_empty_locale_and_channel_are_the_settings(self, settings):
        rules = [attribute_rule(attribute="description")]
        settings.AKENEO_LOCALE, settings.AKENEO_CHANNEL = "de_DE", "ecommerce"
        planned = mapping.plan(ASSET, "K1", AKENEO_PRODUCT, {}, rules)
        shown = (planned.results[0].source, planned.results[0].value)
        assert shown == ("description (de_DE, ecommerce)", "Langer Text")
        settings.AKENEO_LOCALE, settings.AKENEO_CHANNEL = "en_US", "mobile"
        planned = mapping.plan(ASSET, "K1", AKENEO_PRODUCT, {}, rules)
        assert (planned.results[0].source, planned.results[0].value) == ("description (en_US, mobile)", "Short text")

    def test_the_fingerprint_covers_every_attribute_field(self, settings):
        config = MappingConfig()
        base = mapping.fingerprint(config, [attribute_rule()], ASSET)
        for change in ({"locale": "de_DE"}, {"channel": "print"}, {"currency": "EUR"}, {"option_codes": True}):
            assert mapping.fingerprint(config, [attribute_rule(**change)], ASSET) != base, change
        assert mapping.fingerprint(config, [attribute_rule(locale="en_US")], ASSET) == base  # the default, spelt out
        settings.AKENEO_LOCALE = "de_DE"
        assert mapping.fingerprint(config, [attribute_rule()], ASSET) != base

    def test_a_jmespath_rules_fingerprint_is_what_it_was_before_attribute_rules(self):
        # Stored fingerprints stay valid: an upgrade alone does not mark every asset as changed.
        config = MappingConfig()
        rule = MappingRule(pim_field="SKUID", metadata_path="pim:sku", transform="upper", default="n/a")
        before = {"key": ["asset_name", "", ""], "rules": [["SKUID", "pim:sku", "upper", "n/a"]]}
        assert mapping.fingerprint(config, [rule], ASSET) == mapping._digest(before)


class TestValidation:
    @pytest.mark.parametrize(
        "fields, field, message",
        [
            ({"attribute": ""}, "pim_field", "a PIM field (JMESPath expression) or an Akeneo attribute is required"),
            ({"pim_field": "SKUID"}, "attribute", "either a PIM field (JMESPath) or an Akeneo attribute"),
            ({"attribute": "na me"}, "attribute", "'na me' is not an Akeneo attribute code"),
            ({"locale": "english"}, "locale", "'english' is not a locale code such as en_US"),
            ({"channel": "e-commerce"}, "channel", "'e-commerce' is not an Akeneo channel code"),
            ({"currency": "eur"}, "currency", "'eur' is not a currency code such as EUR"),
            ({"attribute": "", "pim_field": "SKUID", "locale": "en_US"}, "locale", "only read by Akeneo attribute"),
            ({"attribute": "", "pim_field": "SKUID", "option_codes": True}, "option_codes", "only read by Akeneo"),
        ],
    )
    def test_a_bad_source_names_the_field_and_why(self, fields, field, message):
        with pytest.raises(ValidationError) as caught:
            attribute_rule(**fields).full_clean(exclude=["config"])
        assert message in " ".join(caught.value.message_dict[field])

    def test_a_good_attribute_rule_is_accepted(self):
        attribute_rule(locale="zh_Hans_CN", channel="print", currency="EUR", option_codes=True).full_clean(
            exclude=["config"]
        )


DOCUMENT = {
    "product_key": {"from": "asset_name"},
    "rules": [
        {"pim_field": "SKUID", "metadata_path": "wknd-skuid"},
        {"attribute": "name", "metadata_path": "dc:title"},
        {"attribute": "description", "locale": "de_DE", "channel": "print", "metadata_path": "dc:description"},
        {"attribute": "price", "currency": "USD", "metadata_path": "pim:price"},
        {"attribute": "materials", "option_codes": True, "metadata_path": "pim:materials", "transform": "join"},
    ],
}


@pytest.mark.django_db
class TestImportExport:
    def test_attribute_rules_round_trip_and_export_omits_empty_fields(self):
        mapping.import_config(DOCUMENT)
        assert mapping.export_config() == DOCUMENT
        rule = MappingRule.objects.get(metadata_path="dc:description")
        assert (rule.attribute, rule.locale, rule.channel, rule.pim_field) == ("description", "de_DE", "print", "")

    @pytest.mark.parametrize(
        "item, message",
        [
            ({"attribute": "name", "pim_field": "SKUID"}, "either a PIM field (JMESPath) or an Akeneo attribute"),
            ({"attribute": "name", "currency": "Euro"}, "'Euro' is not a currency code"),
            ({"attribute": "name", "option_codes": "yes"}, "option_codes must be true or false"),
            ({}, "a PIM field (JMESPath expression) or an Akeneo attribute is required"),
        ],
    )
    def test_a_bad_attribute_rule_is_refused_and_nothing_changes(self, item, message):
        mapping.import_config(DOCUMENT)
        with pytest.raises(ValidationError) as caught:
            mapping.import_config({"rules": [{"metadata_path": "dc:title", **item}]})
        assert message in " ".join(caught.value.messages)
        assert mapping.export_config() == DOCUMENT


@pytest.mark.django_db
def test_the_preview_shows_an_attribute_rule_with_its_source_value_and_note(akeneo):
    akeneo.add_sample_catalog()
    rules = [attribute_rule(), attribute_rule(attribute="price", currency="GBP", metadata_path="pim:price")]
    result = preview(MappingConfig.load(), rules, key="SKU-SAMPLE")
    assert [(r.source, r.value, r.note) for r in result.plan.results] == [
        ("name (en_US, ecommerce)", "Trail boot", ""),
        (
            "price (en_US, ecommerce, GBP)",
            None,
            "no GBP price in price (the product has EUR, USD); no PIM value and no default: not written",
        ),
    ]
