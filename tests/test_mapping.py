"""Mapping rules: the product key, what each rule yields, validation, import/export."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from dashboard.preview import preview
from pimsync import enrichment, mapping
from pimsync.adobe import aem
from pimsync.mapping import AssetRef
from pimsync.models import Event, Job, MappingConfig, MappingRule, Status
from pimsync.outbound import http
from pimsync.pim import connectors
from tests.conftest import STANDARD_MAPPING, product

pytestmark = pytest.mark.django_db

ASSET = AssetRef("urn:aaid:aem:1", "/content/dam/products/SKU-1_front.png", "SKU-1_front.png", "image/png")


def key_for(asset=ASSET, metadata=None, **config) -> str:
    return mapping.product_key(asset, MappingConfig(**config), metadata)


class TestProductKey:
    def test_the_default_is_the_asset_name_without_its_extension(self):
        assert key_for() == "SKU-1_front"

    def test_a_named_group_picks_the_key(self):
        assert key_for(key_pattern=r"^(?P<key>[^_.]+)") == "SKU-1"

    def test_without_a_named_group_the_whole_match_is_the_key(self):
        assert key_for(key_pattern=r"SKU-\d+") == "SKU-1"

    def test_it_can_come_from_the_path(self):
        assert key_for(key_from="asset_path", key_pattern=r"/products/(?P<key>[^/_]+)") == "SKU-1"

    def test_it_can_come_from_a_metadata_property(self):
        assert key_for(metadata={"pim:sku": "SKU-9"}, key_from="metadata", key_metadata_property="pim:sku") == "SKU-9"

    def test_a_pattern_that_does_not_match_says_so(self):
        with pytest.raises(mapping.MappingError, match="does not match 'SKU-1_front.png'"):
            key_for(key_pattern=r"^ART-(?P<key>\d+)")


def rule(**fields) -> MappingRule:
    return MappingRule(**{"pim_field": "SKUID", "metadata_path": "pim:sku", **fields})


class TestPlan:
    def test_only_changed_properties_are_patched(self):
        planned = mapping.plan(
            ASSET,
            "SKU-1",
            product("SKU-1"),
            {"pim:sku": "SKU-1"},
            [
                rule(),
                rule(pim_field="SupplierName", metadata_path="pim:supplier", transform="lower"),
            ],
        )
        assert aem.json_patch(planned.changes) == [{"op": "add", "path": "/pim:supplier", "value": "nordwand outdoor"}]
        assert planned.changes == [{"path": "pim:supplier", "old": None, "new": "nordwand outdoor", "exists": False}]

    @pytest.mark.parametrize(
        "name, value, expected",
        [
            ("upper", "a b", "A B"),
            ("lower", "A", "a"),
            ("strip", "  x ", "x"),
            ("join", ["a", "b"], "a, b"),
            ("string", {"h": 1}, '{"h": 1}'),
            ("string", 3, "3"),
            ("none", ["a"], ["a"]),
        ],
    )
    def test_transforms(self, name, value, expected):
        assert mapping.transform(name, value) == expected

    def test_an_empty_pim_value_takes_the_default(self):
        planned = mapping.plan(ASSET, "k", {"SKUID": ""}, {}, [rule(default="n/a")])
        assert aem.json_patch(planned.changes) == [{"op": "add", "path": "/pim:sku", "value": "n/a"}]
        assert planned.results[0].note == "PIM value empty: default used"

    def test_an_empty_pim_value_without_default_writes_nothing(self):
        planned = mapping.plan(ASSET, "k", {}, {}, [rule()])
        assert aem.json_patch(planned.changes) == []
        # The rule applied and found nothing (not skipped for some other reason).
        [result] = planned.results
        assert result.applies and result.note == "no PIM value and no default: not written"

    def test_path_and_type_conditions_limit_a_rule(self):
        rules = [
            rule(path_glob="/content/dam/other/*"),
            rule(metadata_path="a:b", mime_glob="video/*"),
            rule(metadata_path="c:d", path_glob="/content/dam/products/*", mime_glob="image/*"),
        ]
        planned = mapping.plan(ASSET, "k", {"SKUID": "X"}, {}, rules)
        assert [c["path"] for c in planned.changes] == ["c:d"]
        assert [r.applies for r in planned.results] == [False, False, True]

    def test_a_jmespath_expression_selects_the_locale(self):
        planned = mapping.plan(
            ASSET,
            "k",
            product("SKU-1", name="Tent"),
            {},
            [
                rule(pim_field="values.name[?locale=='en_US'].data | [0]", metadata_path="dc:title"),
            ],
        )
        assert aem.json_patch(planned.changes) == [{"op": "add", "path": "/dc:title", "value": "Tent"}]


class TestValidation:
    @pytest.mark.parametrize(
        "fields, field, message",
        [
            ({"pim_field": "values.name[?locale=="}, "pim_field", "not a valid JMESPath"),
            ({"metadata_path": "has space"}, "metadata_path", "not a metadata property name"),
            ({"metadata_path": "jcr:uuid"}, "metadata_path", "owned by AEM"),
            ({"transform": "shout"}, "transform", "not one of"),
        ],
    )
    def test_a_bad_rule_names_the_field_and_why(self, fields, field, message):
        with pytest.raises(ValidationError) as error:
            rule(**fields).full_clean()
        assert message in " ".join(error.value.message_dict[field])

    def test_a_key_pattern_with_unnamed_groups_is_refused(self):
        with pytest.raises(ValidationError, match="must name one of them"):
            MappingConfig(key_pattern=r"^(\w+)_").full_clean()

    def test_an_invalid_regex_is_refused(self):
        with pytest.raises(ValidationError, match="not a valid regular expression"):
            MappingConfig(key_pattern=r"^(?P<key>").full_clean()


class TestImportExport:
    def test_export_of_an_import_is_exact(self, tmp_path):
        document = {
            "product_key": {"from": "metadata:pim:sku"},
            "rules": [
                *STANDARD_MAPPING["rules"],
                {
                    "pim_field": "x",
                    "metadata_path": "y:z",
                    "default": 0,
                    "path_glob": "/a/*",
                    "mime_glob": "image/*",
                    "enabled": False,
                },
            ],
        }
        source = tmp_path / "in.json"
        source.write_text(json.dumps(document))
        call_command("import_mappings", str(source), stdout=io.StringIO())
        out = io.StringIO()
        call_command("export_mappings", stdout=out)
        assert json.loads(out.getvalue()) == document
        call_command("export_mappings", str(tmp_path / "out.json"), stderr=io.StringIO())
        assert json.loads((tmp_path / "out.json").read_text()) == document

    def test_the_readme_example_round_trips(self):
        document = {
            "product_key": {"from": "asset_name", "pattern": "^(?P<key>[^_.]+)"},
            "rules": [
                {"pim_field": "SKUID", "metadata_path": "wknd-skuid"},
                {"pim_field": "SupplierName", "metadata_path": "wknd-suppliername", "transform": "upper"},
                {
                    "pim_field": "values.name[?locale=='en_US'].data | [0]",
                    "metadata_path": "dc:title",
                    "default": "",
                    "path_glob": "/content/dam/products/*",
                },
            ],
        }
        mapping.import_config(document)
        assert mapping.export_config() == document

    def test_an_invalid_file_changes_nothing_and_lists_every_problem(self, tmp_path):
        mapping.import_config(STANDARD_MAPPING)
        bad = {
            "product_key": {"from": "asset_name", "pattern": "(unclosed"},
            "rules": [{"pim_field": "ok", "metadata_path": "a:b"}, {"pim_field": "[", "metadata_path": "bad path"}],
        }
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(CommandError) as error:
            call_command("import_mappings", str(path))
        message = str(error.value)
        assert "nothing was changed" in message
        assert "product_key" in message
        assert "rules[1]" in message and "JMESPath" in message and "bad path" in message
        assert mapping.export_config() == STANDARD_MAPPING

    def test_a_file_that_is_not_json_is_a_clear_error(self, tmp_path):
        path = tmp_path / "x.json"
        path.write_text("{nope")
        with pytest.raises(CommandError, match="is not valid JSON"):
            call_command("import_mappings", str(path))

    def test_a_missing_file_is_a_clear_error(self, tmp_path):
        with pytest.raises(CommandError, match="cannot read"):
            call_command("import_mappings", str(tmp_path / "missing.json"))

    def test_a_dash_reads_the_file_from_standard_input(self, monkeypatch):
        # A text stream over bytes, as a process's real standard input is.
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(STANDARD_MAPPING).encode())))
        out = io.StringIO()
        call_command("import_mappings", "-", stdout=out)
        assert "Imported the product-key rule and 4 mapping rule(s)." in out.getvalue()
        assert mapping.export_config() == STANDARD_MAPPING

    def test_standard_input_that_is_not_json_is_a_clear_error(self, monkeypatch):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{nope")))
        with pytest.raises(CommandError, match="standard input is not valid JSON"):
            call_command("import_mappings", "-")

    def test_check_validates_a_good_file_and_changes_nothing(self, tmp_path):
        mapping.import_config(STANDARD_MAPPING)
        document = {"product_key": {"from": "asset_name"}, "rules": [{"pim_field": "x", "metadata_path": "y:z"}]}
        path = tmp_path / "new.json"
        path.write_text(json.dumps(document))
        out = io.StringIO()
        call_command("import_mappings", "--check", str(path), stdout=out)
        assert "The file is valid: the product-key rule and 1 mapping rule(s)." in out.getvalue()
        assert mapping.export_config() == STANDARD_MAPPING
        assert not Job.objects.exists()  # no check of affected assets: nothing changed

    def test_check_lists_every_problem_of_a_bad_file(self, tmp_path):
        bad = {"product_key": {"from": "asset_name", "pattern": "(unclosed"}, "rules": [{"pim_field": "["}]}
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(CommandError) as error:
            call_command("import_mappings", "--check", str(path))
        assert "product_key" in str(error.value) and "rules[0]" in str(error.value)
        assert not MappingRule.objects.exists()


class TestAConnectorThisVersionDoesNotHave:
    """A PIM_CONNECTOR this version does not have passes the settings import (a system check
    reports it); an event then fails with a configuration reason, not as if the PIM had answered."""

    def test_it_is_a_configuration_error_not_an_http_one(self, settings):
        settings.PIM_CONNECTOR = "sap"
        with pytest.raises(connectors.ConfigurationError):
            connectors.connector()
        assert not issubclass(connectors.ConfigurationError, http.HttpError)

    def test_the_event_fails_with_a_configuration_reason(self, settings):
        settings.PIM_CONNECTOR = "sap"
        event = Event(asset_id="urn:aaid:aem:1", asset_name="SKU-1_front.png", payload={})
        outcome = enrichment.enrich(event)
        assert outcome.status == Status.FAILED
        assert outcome.error_class == "config"
        assert outcome.reason == "PIM_CONNECTOR='sap' is not available in this version"
        assert outcome.product_key == "SKU-1_front"

    def test_the_preview_says_so(self, settings):
        settings.PIM_CONNECTOR = "sap"
        result = preview(MappingConfig.load(), [], key="SKU-1")
        assert result.problems == ["PIM_CONNECTOR='sap' is not available in this version"]
