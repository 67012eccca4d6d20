"""The mapping page's field picker (every value of a sample product with the rule source that
reaches it) and the rule form's attribute select for a PIM that lists its attributes."""

from __future__ import annotations

import jmespath
import pytest

from dashboard import field_picker
from pimsync import mapping
from pimsync.models import MappingRule
from tests.conftest import product
from tests.test_attribute_rules import AKENEO_PRODUCT
from tests.test_dashboard import MAPPING, mapping_form

PICK = "/admin/pimsync/mappingconfig/pick/"


def leaves(nodes: list[dict]) -> list[dict]:
    found = []
    for node in nodes:
        found += leaves(node["children"]) if "children" in node else [node]
    return found


def node_at(nodes: list[dict], *names: str) -> dict:
    for node in nodes:
        if node["name"] == names[0] or node["name"].startswith(names[0] + " "):  # "[1] en_US/ecommerce"
            return node if len(names) == 1 else node_at(node["children"], *names[1:])
    raise AssertionError(f"no {names[0]} in {[n['name'] for n in nodes]}")


HOSTILE = {
    "dc:title": "quoted",
    'say "hi"\\': "escaped",
    "a.b": {"c d": [[1, 2], [3, {"x": None}]]},
    "values": {
        "name": [
            {"locale": "en_US", "scope": None, "data": None},
            {"locale": "en_US", "scope": "mobile", "data": "Mobile"},
            {"locale": "x' || 'y", "data": "injected?"},
            {"locale": "de_DE", "data": "A"},
            {"locale": "de_DE", "data": "B"},
        ]
    },
}


class TestExpressions:
    @pytest.mark.parametrize("document", [product("SKU-1"), AKENEO_PRODUCT, HOSTILE], ids=["demo", "akeneo", "hostile"])
    def test_every_leaf_expression_gives_back_that_leafs_value(self, document):
        for leaf in leaves(field_picker.tree(document)):
            found = jmespath.search(leaf["path"], document)
            shown = found if isinstance(found, str) else field_picker.json.dumps(found, ensure_ascii=False)
            assert shown == leaf["value"], leaf["path"]

    def test_akeneo_values_are_reached_by_their_locale_and_scope(self):
        nodes = field_picker.tree(product("SKU-1"))
        assert node_at(nodes, "values", "name", "[0]", "data")["path"] == "values.name[?locale=='en_US'].data | [0]"
        nodes = field_picker.tree(AKENEO_PRODUCT)
        assert node_at(nodes, "values", "description", "[1]")["name"] == "[1] en_US/ecommerce"
        assert (
            node_at(nodes, "values", "description", "[1]", "data")["path"]
            == "values.description[?locale=='en_US' && scope=='ecommerce'].data | [0]"
        )
        sku = node_at(nodes, "values", "sku", "[0]", "data")
        assert sku["path"] == "values.sku[?locale==`null` && scope==`null`].data | [0]"
        assert (
            node_at(nodes, "values", "price", "[0]", "data", "[1]", "amount")["path"]
            == "values.price[?locale==`null` && scope==`null`].data[1].amount | [0]"
        )

    def test_keys_that_are_not_identifiers_are_quoted_and_other_items_indexed(self):
        nodes = field_picker.tree(HOSTILE)
        assert node_at(nodes, "dc:title")["path"] == '"dc:title"'
        assert node_at(nodes, "a.b", "c d", "[1]", "[0]")["path"] == '"a.b"."c d"[1][0]'
        # A locale that is not a plain code, and two items with one locale, are reached by index.
        assert node_at(nodes, "values", "name", "[2]", "data")["path"] == "values.name[2].data"
        assert node_at(nodes, "values", "name", "[4]", "data")["path"] == "values.name[4].data"

    def test_a_huge_or_deep_product_is_cut_to_bounds(self):
        wide = {f"field_{i}": i for i in range(field_picker.MAX_NODES * 3)}
        nodes = field_picker.tree(wide)
        assert len(nodes) == field_picker.MAX_NODES + 1 and nodes[-1]["path"] is None
        deep: dict = {}
        cursor = deep
        for _ in range(200):
            cursor["a"] = {}
            cursor = cursor["a"]
        cursor["a"] = "bottom"
        assert "nested too deeply" in leaves(field_picker.tree(deep))[0]["value"]
        long_key = {"k" * 5000: "v", "text": "x" * 10_000}
        shown = field_picker.tree(long_key)
        assert shown[0]["path"] is None and len(shown[1]["value"]) == field_picker.MAX_TEXT + 1

    def test_a_list_of_8000_values_is_walked_in_a_few_passes_and_cut_to_the_node_cap(self):
        class Walked(list):
            passes = 0

            def __iter__(self):
                Walked.passes += 1
                return super().__iter__()

        names = Walked({"locale": f"l{n}", "scope": None, "data": f"Name {n}"} for n in range(8000))
        nodes = field_picker.tree({"values": {"name": names}}, akeneo=True)
        items = node_at(nodes, "values", "name")["children"]
        assert len(items) < field_picker.MAX_NODES and items[-1]["value"] == "(more fields than the picker shows)"
        assert items[0]["path"] == "values.name[?locale=='l0' && scope==`null`] | [0]"
        assert Walked.passes <= 3  # not once per value

    def test_on_akeneo_values_carry_the_attribute_rule(self):
        nodes = field_picker.tree(AKENEO_PRODUCT, akeneo=True)
        assert node_at(nodes, "values", "description", "[1]", "data")["rule"] == {
            "attribute": "description",
            "locale": "en_US",
            "channel": "ecommerce",
        }
        assert node_at(nodes, "values", "price")["rule"] == {"attribute": "price", "locale": "", "channel": ""}
        assert "rule" not in node_at(nodes, "family")
        assert "rule" not in node_at(field_picker.tree(AKENEO_PRODUCT), "values", "price")  # not on other PIMs


@pytest.mark.django_db
class TestPickView:
    def test_an_editor_gets_the_products_fields(self, client, people, world):
        world.pim.products["SKU-1"] = product("SKU-1")
        client.force_login(people["Mapping editors"])
        body = client.get(PICK, {"key": "SKU-1"}).json()
        assert body["connector"] == "rest"
        assert node_at(body["fields"], "SupplierName") == {
            "name": "SupplierName",
            "path": "SupplierName",
            "value": "Nordwand Outdoor",
        }

    @pytest.mark.parametrize("role", ["Viewers", "Support"])
    def test_who_may_not_change_the_mapping_gets_403_and_the_pim_is_not_asked(self, client, people, world, role):
        client.force_login(people[role])
        assert client.get(PICK, {"key": "SKU-1"}).status_code == 403
        assert world.pim.calls == []

    @pytest.mark.parametrize(
        "key, status, message",
        [
            ("SKU-404", 404, "Product 'SKU-404' is not in the PIM."),
            ("", 400, "Type the key of a product"),
            ("..", 400, "cannot be a product key"),
        ],
    )
    def test_a_key_without_product_is_a_clear_message(self, client, people, world, key, status, message):
        client.force_login(people["Mapping editors"])
        response = client.get(PICK, {"key": key})
        assert response.status_code == status and message in response.json()["error"]

    def test_a_pim_that_is_down_is_a_clear_message(self, client, people, world, settings):
        settings.PIM_BASE_URL = "http://127.0.0.1:9"
        client.force_login(people["Mapping editors"])
        response = client.get(PICK, {"key": "SKU-1"})
        assert response.status_code == 502
        assert response.json()["error"].startswith("The PIM could not be read: ")

    def test_a_pim_answering_500_is_a_clear_message(self, client, people, world):
        world.pim.faults.add("GET", 500)
        client.force_login(people["Mapping editors"])
        response = client.get(PICK, {"key": "SKU-1"})
        assert response.status_code == 502 and "500" in response.json()["error"]


@pytest.mark.django_db
class TestRuleForm:
    def test_on_akeneo_the_attribute_is_chosen_from_its_list(self, client, people, akeneo):
        akeneo.add_attribute("name", "pim_catalog_text", localizable=True, labels={"en_US": "Name"})
        akeneo.add_attribute("price", "pim_catalog_price_collection")
        mapping.import_config({"rules": [{"attribute": "retired", "metadata_path": "pim:old"}]})
        client.force_login(people["Mapping editors"])
        page = client.get(MAPPING).content.decode()
        assert '<select name="rules-0-attribute"' in page
        assert '<option value="name">Name (name)</option>' in page
        assert '<option value="retired" selected>retired (not in the PIM)</option>' in page
        assert '"price": {"type": "pim_catalog_price_collection", "localizable": false' in page
        assert 'id="attribute-notice"' not in page

    def test_when_akeneo_is_down_the_page_offers_a_text_input_and_says_why(self, client, people, akeneo):
        mapping.import_config({"rules": [{"pim_field": "SKUID", "metadata_path": "wknd-skuid"}]})
        akeneo.faults.add("GET", 503)
        client.force_login(people["Mapping editors"])
        page = client.get(MAPPING).content.decode()
        assert '<input type="text" name="rules-0-attribute"' in page
        call = f"GET {akeneo.url}/api/rest/v1/attributes?limit=100"
        assert f"The PIM&#x27;s attribute list could not be read ({call} answered 503)" in page

    def test_an_attribute_rule_saved_through_the_form_is_stored(self, client, people, world):
        client.force_login(people["Mapping editors"])
        form = mapping_form()
        form.update({"rules-0-pim_field": "", "rules-0-attribute": "name", "rules-0-locale": "de_DE"})
        response = client.post(MAPPING, form)
        assert response.status_code == 302
        rule = MappingRule.objects.get(metadata_path="wknd-skuid")
        assert (rule.pim_field, rule.attribute, rule.locale, rule.channel) == ("", "name", "de_DE", "")

    def test_the_form_refuses_both_sources_with_the_message(self, client, people, world):
        client.force_login(people["Mapping editors"])
        response = client.post(MAPPING, {**mapping_form(), "rules-0-attribute": "name"})
        assert response.status_code == 200
        assert "a rule reads either a PIM field (JMESPath) or an Akeneo attribute" in response.content.decode()
        assert MappingRule.objects.get(metadata_path="wknd-skuid").attribute == ""

    def test_a_viewer_sees_each_rules_source_and_no_picker(self, client, people):
        mapping.import_config({"rules": [{"attribute": "name", "locale": "de_DE", "metadata_path": "dc:title"}]})
        client.force_login(people["Viewers"])
        page = client.get(MAPPING).content.decode()
        assert '<span class="rule-field rule-attribute"><label>or attribute</label>name</span>' in page
        assert '<span class="rule-field rule-locale"><label>locale</label>de_DE</span>' in page
        assert "rule-pim_field" not in page and "rule-currency" not in page
        assert 'id="picker-box"' not in page
