"""Rules that mean what they show: a property pimsync wrote that no rule yields any more leaves the
asset at its next sync (unless the mapping keeps such values), a new rule goes last, and the
preview says which later rule overrides a value."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from pimsync import mapping, tasks
from pimsync.adobe import aem
from pimsync.models import Asset, Event, EventType, MappingConfig, MappingRule, SyncState
from standins.adobe import apply_json_patch
from tests.conftest import STANDARD_MAPPING, make_event, product, run_queued_tasks
from tests.test_dashboard import MAPPING, as_user, mapping_form

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/pimsync/mappingconfig/preview/"
OFFER = "/admin/pimsync/mappingconfig/resync-affected/"
PRICE_RULE = {"pim_field": "price.amount", "metadata_path": "pim:listprice"}


def priced(sku: str, amount: float = 49.9) -> dict:
    return {**product(sku), "price": {"amount": amount, "currency": "EUR"}}


def with_new_rule(data: dict, **fields) -> dict:
    """The change form with one more row filled in, as a browser sends a rule added in the table
    (its number left empty)."""
    n = int(data["rules-TOTAL_FORMS"])
    row = {"config": "1", "position": "", "enabled": "on", "transform": "none", **fields}
    return {**data, "rules-TOTAL_FORMS": str(n + 1), **{f"rules-{n}-{k}": v for k, v in row.items()}}


def row_of(metadata_path: str) -> int:
    rules = list(MappingRule.objects.order_by("position", "id"))
    return next(i for i, rule in enumerate(rules) if rule.metadata_path == metadata_path)


def asset_id(n: int) -> str:
    return make_event(n)["data"]["assetId"]


def check_and_resync_affected(client) -> int:
    """Run the mapping check as a worker would, re-sync what it found affected from the mapping
    page, and drain; the number the page offered to re-sync."""
    run_queued_tasks()
    affected = Asset.objects.affected_by_mapping().count()
    if affected:
        assert client.post(OFFER).status_code == 302
        run_queued_tasks()
        tasks.sweep()
        run_queued_tasks()
    return affected


@pytest.fixture
def editor(client, people):
    return as_user(client, people["Mapping editors"])


@pytest.fixture
def uploaded(client, world, settings):
    """Assets 1 and 2 under /content/dam/products, written by the worker from their uploads."""
    settings.PIMSYNC_RESYNC_RATE = 100_000  # a re-sync's events are due at once
    for n in (1, 2):
        world.pim.products[f"SKU-10000{n}"] = priced(f"SKU-10000{n}")
    world.adobe.deliver(client, [world.upload(client, n) for n in (1, 2)])
    world.drain()
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}
    return world


def removal(name: str) -> dict:
    return {"op": "remove", "path": aem.patch_path(name, "pointer")}


class TestNarrowingARule:
    def test_a_narrowed_rule_takes_its_old_value_off_the_affected_assets_and_they_show_in_step(self, editor, uploaded):
        world = uploaded
        assert editor.post(MAPPING, with_new_rule(mapping_form(), **PRICE_RULE)).status_code == 302
        assert check_and_resync_affected(editor) == 2
        assert {world.aem.assets[asset_id(n)]["pim:listprice"] for n in (1, 2)} == {49.9}
        assert all("pim:listprice" in a.last_written for a in Asset.objects.all())

        narrowed = mapping_form(**{f"rules-{row_of('pim:listprice')}-path_glob": "/content/dam/elsewhere/*"})
        assert editor.post(MAPPING, narrowed).status_code == 302
        world.aem.patches.clear()
        assert check_and_resync_affected(editor) == 2

        for n in (1, 2):
            assert "pim:listprice" not in world.aem.assets[asset_id(n)]
        assert [p["operations"] for p in world.aem.patches] == [[removal("pim:listprice")]] * 2
        latest = Event.objects.filter(type=EventType.RESYNC).order_by("-id")[:2]
        assert {e.reason for e in latest} == {"removed pim:listprice (no rule yields it any more)"}
        assets = Asset.objects.all()
        assert {a.state for a in assets} == {SyncState.IN_STEP}
        assert not any("pim:listprice" in a.last_written for a in assets)
        assert all(a.last_written["wknd-skuid"].startswith("SKU-") for a in assets)  # the rest stays recorded
        # Nothing is left to do: another change of the rule that applies to none of them affects none.
        moved = mapping_form(**{f"rules-{row_of('pim:listprice')}-path_glob": "/content/dam/third/*"})
        assert editor.post(MAPPING, moved).status_code == 302
        assert check_and_resync_affected(editor) == 0

    def test_a_mapping_that_keeps_such_values_leaves_them_until_it_says_remove(self, editor, uploaded):
        world = uploaded
        editor.post(MAPPING, with_new_rule(mapping_form(on_unmapped="keep"), **PRICE_RULE))
        check_and_resync_affected(editor)
        disabled = mapping_form(**{f"rules-{row_of('pim:listprice')}-enabled": ""})
        assert editor.post(MAPPING, disabled).status_code == 302
        assert check_and_resync_affected(editor) == 2
        assert {world.aem.assets[asset_id(n)]["pim:listprice"] for n in (1, 2)} == {49.9}
        assert {a.state for a in Asset.objects.all()} == {SyncState.IN_STEP}

        # Switching to remove: only the assets that hold such a value are affected.
        world.aem.write(asset_id(2), {"pim:listprice": 12})  # someone wrote it in AEM meanwhile
        Asset.objects.filter(pk=asset_id(2)).update(last_written={"wknd-skuid": "SKU-100002"})
        assert editor.post(MAPPING, mapping_form(on_unmapped="remove")).status_code == 302
        assert check_and_resync_affected(editor) == 1
        assert "pim:listprice" not in world.aem.assets[asset_id(1)]
        assert world.aem.assets[asset_id(2)]["pim:listprice"] == 12  # never pimsync's: left alone

    def test_a_property_already_gone_from_aem_is_forgotten_without_a_remove(self, client, uploaded):
        world = uploaded
        Asset.objects.update(last_written={"pim:listprice": 49.9})
        world.pim.products["SKU-100001"]["SupplierName"] = "Other"  # something to write
        world.adobe.deliver(client, make_event(1, type="aem.assets.asset.metadata_updated", id="ce-again"))
        world.drain()
        [patch] = world.aem.patches[-1:]
        assert all(op["op"] != "remove" for op in patch["operations"])
        assert "pim:listprice" not in Asset.objects.get(pk=asset_id(1)).last_written


class TestThePreviewAndTheAssetPage:
    def test_the_preview_shows_the_removal_of_a_deleted_rules_value(self, editor, uploaded, client):
        world = uploaded
        mapping.import_config({**STANDARD_MAPPING, "rules": [*STANDARD_MAPPING["rules"], PRICE_RULE]})
        world.aem.write(asset_id(1), {"pim:listprice": 49.9})
        Asset.objects.filter(pk=asset_id(1)).update(last_written={"pim:listprice": 49.9})
        deleted = mapping_form(**{f"rules-{row_of('pim:listprice')}-DELETE": "on"}, preview_key="SKU-100001")
        page = editor.post(PREVIEW, deleted).content.decode()
        assert "pim:listprice" in page and "removed: no rule yields it any more" in page

    def test_the_asset_page_says_the_next_sync_removes_what_no_rule_writes(self, editor, uploaded):
        Asset.objects.filter(pk=asset_id(1)).update(last_written={"pim:listprice": 49.9, "wknd-skuid": "SKU-100001"})
        url = reverse("admin:pimsync_asset_change", args=[asset_id(1)])
        page = editor.get(url).content.decode()
        assert "No rule writes <code>pim:listprice</code> any more" in page
        assert "the next sync removes it from AEM" in page
        MappingConfig.objects.update(on_unmapped="keep")
        mapping.forget()
        assert "the mapping keeps such values" in editor.get(url).content.decode()


class TestTheMappingFile:
    def test_on_unmapped_is_imported_and_exported_and_remove_is_the_default(self):
        mapping.import_config({**STANDARD_MAPPING, "on_unmapped": "keep"})
        assert MappingConfig.load().on_unmapped == "keep"
        assert mapping.export_config()["on_unmapped"] == "keep"
        mapping.import_config(STANDARD_MAPPING)
        assert MappingConfig.load().on_unmapped == "remove"
        assert "on_unmapped" not in mapping.export_config()

    @pytest.mark.parametrize("value", ["delete", 1, None, ["keep"]])
    def test_a_wrong_on_unmapped_is_refused_and_changes_nothing(self, value):
        mapping.import_config({**STANDARD_MAPPING, "on_unmapped": "keep"})
        if value is None:
            return  # null means the default: accepted
        with pytest.raises(ValidationError) as refused:
            mapping.import_config({**STANDARD_MAPPING, "rules": [], "on_unmapped": value})
        assert any(m.startswith("on_unmapped:") and "keep or remove" in m for m in refused.value.messages)
        assert MappingConfig.load().on_unmapped == "keep" and MappingRule.objects.count() == 4

    def test_the_form_refuses_a_wrong_value_and_saves_nothing(self, editor, world):
        response = editor.post(MAPPING, mapping_form(on_unmapped="sometimes"))
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        assert MappingConfig.load().on_unmapped == "remove"


class TestRuleOrder:
    def test_a_rule_added_in_the_table_goes_after_the_existing_ones_and_wins(self, editor, uploaded):
        world = uploaded
        data = with_new_rule(mapping_form(), pim_field="SKUID", metadata_path="wknd-suppliername")
        assert editor.post(MAPPING, data).status_code == 302
        new = MappingRule.objects.get(pim_field="SKUID", metadata_path="wknd-suppliername")
        assert new.position == 1 + max(r.position for r in MappingRule.objects.exclude(pk=new.pk))
        check_and_resync_affected(editor)
        assert world.aem.assets[asset_id(1)]["wknd-suppliername"] == "SKU-100001"

    def test_two_new_rules_are_numbered_in_the_order_of_the_table(self, editor, world):
        data = with_new_rule(mapping_form(), pim_field="a", metadata_path="pim:a")
        data = with_new_rule(data, pim_field="b", metadata_path="pim:b")
        assert editor.post(MAPPING, data).status_code == 302
        assert list(MappingRule.objects.order_by("position").values_list("metadata_path", "position"))[-2:] == [
            ("pim:a", 5),
            ("pim:b", 6),
        ]

    def test_the_table_shows_the_number_a_new_rule_will_get(self, editor, world):
        page = editor.get(MAPPING).content.decode()
        assert 'name="rules-4-position"' in page and 'placeholder="5"' in page

    def test_the_preview_says_which_later_rule_overrides_a_value(self):
        rules = [
            MappingRule(position=1, pim_field="SupplierName", metadata_path="dc:title"),
            MappingRule(position=2, pim_field="SKUID", metadata_path="wknd-skuid"),
            MappingRule(position=7, pim_field="SKUID", metadata_path="/dc:title"),
        ]
        asset = make_event(1)["data"]
        ref = Asset(asset_id=asset["assetId"], path="/content/dam/a.png").ref
        planned = mapping.plan(ref, "SKU-1", product("SKU-1"), {}, rules)
        assert "overridden by rule 7" in planned.results[0].note
        assert "overridden" not in planned.results[1].note + planned.results[2].note
        assert [c["new"] for c in planned.changes if c["path"] == "dc:title"] == ["SKU-1"]

    def test_the_preview_page_numbers_the_rules_and_names_the_winner(self, editor, uploaded):
        data = with_new_rule(mapping_form(preview_key="SKU-100001"), pim_field="SKUID", metadata_path="dc:title")
        page = editor.post(PREVIEW, data).content.decode()
        assert "overridden by rule 5" in page


class TestRemoveAsAdobeDescribesIt:
    def test_the_stand_in_removes_a_property_and_refuses_a_missing_one_failing_the_whole_patch(self):
        styles = {"pointer", "asset-metadata"}
        metadata = {"dc:title": "A", "pim:listprice": 1}
        updated, problem = apply_json_patch(metadata, [removal("pim:listprice")], styles)
        assert (updated, problem) == ({"dc:title": "A"}, "")
        operations = [{"op": "replace", "path": "/dc:title", "value": "B"}, removal("pim:gone")]
        updated, problem = apply_json_patch(metadata, operations, styles)
        assert updated == metadata and "remove: pim:gone does not exist" in problem

    def test_json_patch_writes_a_remove_without_a_value_in_every_path_style(self):
        change = {"path": "pim:list/price", "old": 1, "new": None, "exists": True, "op": "remove"}
        assert aem.json_patch([change], "pointer") == [{"op": "remove", "path": "/pim:list~1price"}]
        assert aem.json_patch([change], "asset-metadata") == [
            {"op": "remove", "path": "/assetMetadata/pim:list~1price"}
        ]
        assert aem.json_patch([change], "bare") == [{"op": "remove", "path": "pim:list/price"}]
