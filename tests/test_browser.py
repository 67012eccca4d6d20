"""The dashboard in real headless Chromium: support retries a failure, an editor previews and
saves a rule change, and re-syncs the assets the change affects. Chromium is Debian's package
(`.ci/run` installs it when missing)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from pimsync import mapping, tasks
from pimsync.models import Asset, Event, Job, MappingRule, Status, SyncState
from tests.conftest import STANDARD_MAPPING, product, run_queued_tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# PIMSYNC_SCREENSHOTS_DIR=docs/screenshots keeps the pages the tests saw.
SCREENSHOTS = os.environ.get("PIMSYNC_SCREENSHOTS_DIR")
DEMO_MAPPINGS = Path(__file__).resolve().parent.parent / "pimsync" / "demo" / "mappings.json"


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def log_in(page, role: str) -> None:
    call_command("setup_roles", stdout=io.StringIO())
    user = User.objects.create_user(role.split()[0].lower(), password="a-browser-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    page.goto("/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "a-browser-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#overview")


def test_support_finds_a_failed_event_by_asset_name_and_retries_it(page, client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, [world.upload(client, 1), world.upload(client, 2)])
    world.drain()
    log_in(page, "Support")
    assert "is not in the PIM" in page.inner_text("#latest-failures")
    shot(page, "overview")

    page.get_by_role("link", name="Events", exact=True).click()
    page.fill("#searchbar", "SKU-100002")
    page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "failed" in rows.first.inner_text().lower()
    shot(page, "event-list")

    rows.first.locator("a").first.click()
    page.wait_for_selector("#event-detail")
    assert "product 'SKU-100002' is not in the PIM" in page.inner_text("#event-detail")
    page.click("#retry-button")  # asks first, and says a retry alone cannot bring the product
    assert "This event failed for a reason a retry does not change" in page.inner_text("#retry-cannot-help")
    assert "Create the product in the PIM" in page.inner_text("#retry-cannot-help")
    assert Event.objects.get(asset_name="SKU-100002_front.png").status == Status.FAILED
    world.pim.products["SKU-100002"] = product("SKU-100002")  # the product is added to the PIM
    page.click("input[value='Yes, retry 1 event']")
    page.wait_for_selector("text=Retry queued")
    world.drain()  # the worker picks it up
    page.reload()
    assert page.inner_text("#event-detail h2").lower().startswith("succeeded")
    assert "Trail backpack 35L" in page.inner_text("table.changes")
    shot(page, "event-detail")
    assert Event.objects.get(asset_name="SKU-100002_front.png").status == Status.SUCCEEDED


def test_a_mapping_editor_changes_a_rule_previews_it_and_saves_it(page, client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    log_in(page, "Mapping editors")
    page.goto("/admin/pimsync/mappingconfig/")
    row = page.locator("tr.form-row", has=page.locator("input[value='wknd-suppliername']"))
    row.locator("select[name$='-transform']").select_option("lower")
    page.fill("#preview_key", "SKU-100001")
    page.click("#preview-button")
    page.wait_for_selector("#preview")
    assert "These results use your unsaved edits" in page.inner_text("#preview")
    patch = page.inner_text("#patch")
    assert "NORDWAND OUTDOOR" in patch and "nordwand outdoor" in patch
    assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "upper"
    shot(page, "mapping-preview")

    page.click("#save-previewed")
    page.wait_for_selector(".messagelist")
    assert "The mapping rules were changed successfully." in page.inner_text(".messagelist")
    assert MappingRule.objects.get(metadata_path="wknd-suppliername").transform == "lower"


def rules_page(page, role: str = "Mapping editors", size=(1280, 800)) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    log_in(page, role)
    page.goto("/admin/pimsync/mappingconfig/")
    page.wait_for_selector("#rules-group table")


@pytest.mark.parametrize("pim_connector", ["demo", "akeneo"])
def test_the_rules_table_fits_a_1280_pixel_window(page, settings, request, pim_connector):
    settings.PIM_CONNECTOR = "demo"
    if pim_connector == "akeneo":  # the attribute rule's inputs take room of their own
        request.getfixturevalue("akeneo").add_sample_catalog()
    mapping.import_config(json.loads(DEMO_MAPPINGS.read_text()))
    rules_page(page)
    right, width, scroll = page.evaluate(
        "[document.querySelector('#rules-group table').getBoundingClientRect().right, window.innerWidth,"
        " document.documentElement.scrollWidth]"
    )
    assert right <= width and scroll <= width, (right, width, scroll)
    for name in ("metadata_path", "transform", "default", "path_glob", "mime_glob", "DELETE"):
        box = page.locator(f"[name='rules-0-{name}']").bounding_box()
        assert box["x"] + box["width"] <= width, name
    shot(page, f"mapping-rules-1280-{pim_connector}")


def test_a_mapping_editor_picks_a_field_from_a_sample_product_saves_and_previews_it(page, settings):
    settings.PIM_CONNECTOR = "demo"
    mapping.import_config(STANDARD_MAPPING)
    rules_page(page)
    new = len(STANDARD_MAPPING["rules"])  # the empty row for a new rule
    page.fill(f"[name='rules-{new}-metadata_path']", "pim:title_fr")
    assert "rule 5" in page.inner_text("#picker-target")
    page.fill("#picker-key", "SKU-100201")
    page.press("#picker-key", "Enter")
    tree = page.locator("#picker-tree")
    tree.locator("summary", has_text="name").first.click()
    tree.locator("summary", has_text="[1]").first.click()
    tree.get_by_role("button", name="Tente Dome tent 2").click()
    assert page.input_value(f"[name='rules-{new}-pim_field']") == "values.name[?locale=='fr_FR'].data | [0]"
    shot(page, "mapping-picker")

    page.click("input[name='_continue']")
    page.wait_for_selector(".messagelist")
    assert MappingRule.objects.get(metadata_path="pim:title_fr").pim_field == "values.name[?locale=='fr_FR'].data | [0]"
    page.fill("#preview_key", "SKU-100201")
    page.click("#preview-button")
    row = page.locator("#rule-results tr", has_text="pim:title_fr")
    assert "Tente Dome tent 2" in row.inner_text()


def akeneo_rule_row(page, n: int, metadata_path: str):
    """Rule row `n` (added with "Add another" when the page has none yet), its target path typed."""
    if not page.locator(f"#rules-{n}").count():
        page.click("#rules-group .add-row a")
    page.fill(f"[name='rules-{n}-metadata_path']", metadata_path)
    return page.locator(f"#rules-{n}")


def visible(row, *details: str) -> set[str]:
    return {name for name in details if row.locator(f".rule-{name}").is_visible()}


def test_on_akeneo_an_editor_picks_attributes_and_an_upload_is_enriched_with_their_values(
    page, client, world, akeneo, settings
):
    akeneo.add_sample_catalog()  # SKU-SAMPLE: labelled options, prices, a localized name, scoped descriptions
    akeneo.add_attribute("aem_links", "pim_catalog_textarea", labels={"en_US": "AEM assets"})
    settings.PIM_CONNECTOR, settings.PIM_BASE_URL = "akeneo", akeneo.url
    settings.PIM_ASSET_LINK_ATTRIBUTE = "aem_links"
    mapping.import_config({**STANDARD_MAPPING, "rules": [{"attribute": "sku", "metadata_path": "pim:sku"}]})
    rules_page(page)
    offered = page.eval_on_selector_all("[name='rules-1-attribute'] option", "options => options.map(o => o.value)")
    assert set(offered) == {"", *(a["code"] for a in akeneo.attributes)}  # the list the stand-in serves

    colour = akeneo_rule_row(page, 1, "pim:colour")
    colour.locator("[name='rules-1-attribute']").select_option("color")
    assert visible(colour, "locale", "channel", "currency", "option_codes") == {"option_codes"}
    price = akeneo_rule_row(page, 2, "pim:price")
    price.locator("[name='rules-2-attribute']").select_option("price")
    assert visible(price, "locale", "channel", "currency", "option_codes") == {"currency"}
    price.locator("[name='rules-2-currency']").fill("EUR")
    name = akeneo_rule_row(page, 3, "dc:title")
    name.locator("[name='rules-3-attribute']").select_option("name")
    assert visible(name, "locale", "channel", "currency", "option_codes") == {"locale"}
    name.locator("[name='rules-3-locale']").fill("de_DE")
    shot(page, "mapping-attribute-rule")

    # The picker fills an attribute rule, with the locale and channel of the value clicked.
    description = akeneo_rule_row(page, 4, "dc:description")
    page.fill("#picker-key", "SKU-SAMPLE")
    page.click("#picker-load")
    tree = page.locator("#picker-tree")
    branch = tree.locator("xpath=.//details[summary[starts-with(normalize-space(.), 'description')]]")
    branch.locator(":scope > summary").click()
    branch.locator("summary", has_text="[1]").first.click()
    branch.get_by_role("button", name="Boot.").click()
    assert [page.input_value(f"[name='rules-4-{field}']") for field in ("attribute", "locale", "channel")] == [
        "description",
        "en_US",
        "print",
    ]
    assert visible(description, "locale", "channel", "currency", "option_codes") == {"locale", "channel"}

    page.click("input[name='_continue']")
    page.wait_for_selector(".messagelist")
    saved = {r.metadata_path: (r.attribute, r.locale, r.channel, r.currency) for r in MappingRule.objects.all()}
    assert saved == {
        "pim:sku": ("sku", "", "", ""),
        "pim:colour": ("color", "", "", ""),
        "pim:price": ("price", "", "", "EUR"),
        "dc:title": ("name", "de_DE", "", ""),
        "dc:description": ("description", "en_US", "print", ""),
    }

    upload = world.upload(client, 1, sku="SKU-SAMPLE")
    world.adobe.deliver(client, upload)
    world.drain()  # the worker enriches it from Akeneo
    assert Event.objects.get(asset_id=upload["data"]["assetId"]).status == Status.SUCCEEDED
    [patch] = world.aem.patches
    assert {op["path"]: op["value"] for op in patch["operations"]} == {
        "/pim:sku": "SKU-SAMPLE",  # RFC 6901 pointers, as Adobe's metadata guide has them
        "/pim:colour": "Red",  # the option's label, not its code
        "/pim:price": "49.90 EUR",
        "/dc:title": "Wanderschuh",
        "/dc:description": "Boot.",
    }
    links = akeneo.product("SKU-SAMPLE")["values"]["aem_links"][0]["data"]
    assert links == f"{world.aem.url}/ui#/aem/assetdetails.html/content/dam/products/SKU-SAMPLE_front.png"


def test_a_mapping_editor_changes_a_rule_and_resyncs_the_assets_it_affects(page, client, world, settings):
    settings.PIMSYNC_RESYNC_RATE = 100_000  # a re-sync's events are due at once
    for n in (1, 2):
        world.pim.products[f"SKU-10000{n}"] = product(f"SKU-10000{n}")
    world.adobe.deliver(client, [world.upload(client, 1), world.upload(client, 2)])
    world.drain()
    log_in(page, "Mapping editors")
    page.goto("/admin/pimsync/mappingconfig/")
    row = page.locator("tr.form-row", has=page.locator("input[value='wknd-suppliername']"))
    row.locator("select[name$='-transform']").select_option("lower")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    assert "Checking which known assets this change affects… (0 of 2)" in page.inner_text("#mapping-check")

    run_queued_tasks()  # a worker runs the mapping check; the page reloads the box by itself
    page.wait_for_selector("#resync-affected")
    assert "2 known assets are affected by the last mapping change" in page.inner_text("#mapping-check")
    shot(page, "mapping-change-offer")
    page.click("#resync-affected")  # asks first, with how long it takes at PIMSYNC_RESYNC_RATE
    assert page.inner_text("#resync-count") == "2" and page.inner_text("#resync-estimate") == "1 s"
    page.click("#resync-yes")
    page.wait_for_selector("#job-status")
    assert "mapping changed" in page.inner_text("#job-why")
    page.evaluate("window.notReloaded = true")

    run_queued_tasks()  # the re-sync schedules its events and the worker drains them
    tasks.sweep()  # the sweeper's minute: the re-sync sees all its events ended
    page.wait_for_selector("#job-status:text('finished')")  # the job page updates itself until then
    assert page.evaluate("window.notReloaded === true")  # in place, not by reloading the page
    assert page.inner_text("#job-announce").startswith("Job ")  # what screen readers hear
    assert page.locator("#cancel-job").count() == 0
    assert page.inner_text("#job-done") == "2/2"
    assert "2 written" in page.inner_text("#job-outcomes")
    shot(page, "resync-job")
    assert Job.objects.get(kind=Job.Kind.RESYNC).status == Job.State.FINISHED
    assert {world.aem.assets[a.pk]["wknd-suppliername"] for a in Asset.objects.all()} == {"nordwand outdoor"}
    assert set(Asset.objects.values_list("state", flat=True)) == {SyncState.IN_STEP}

    page.goto("/admin/pimsync/asset/")
    page.fill("#filter-path__startswith", "/content/dam/products/SKU-100002")
    page.press("#filter-path__startswith", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "in step" in rows.first.inner_text().lower()
    shot(page, "asset-list")


def test_a_long_reason_never_pushes_the_event_lists_columns_off_a_1280_pixel_window(page, client, world):
    world.adobe.deliver(client, world.upload(client, 1))
    long_reason = "GET http://aem.example/adobe/assets/urn:aaid:aem:" + "0f" * 980 + "/metadata answered 404"
    assert len(long_reason) > 2000
    Event.objects.update(status=Status.FAILED, reason=long_reason, asset_path="/content/dam/" + "p" * 300 + ".png")
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, "Support")
    page.goto("/admin/pimsync/event/")
    page.wait_for_selector("#result_list")
    right, width = page.evaluate(
        "[document.querySelector('#result_list tbody tr td:last-child').getBoundingClientRect().right,"
        " window.innerWidth]"
    )
    assert right <= width, (right, width)
    assert page.get_attribute("#result_list td.field-short_reason [title]", "title") == long_reason


def test_a_new_rule_goes_last_and_the_preview_names_the_rule_that_overrides_an_older_one(page, client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    rules_page(page)
    new = len(STANDARD_MAPPING["rules"])  # the empty row for a new rule
    page.fill(f"[name='rules-{new}-pim_field']", "SKUID")
    page.fill(f"[name='rules-{new}-metadata_path']", "wknd-suppliername")
    assert page.inner_text("#picker-target") == "Values go into rule 5."
    page.fill("#preview_key", "SKU-100001")
    page.click("#preview-button")
    page.wait_for_selector("#preview")
    older = page.locator("#rule-results tbody tr").nth(1)  # rule 2: SupplierName → wknd-suppliername
    assert older.inner_text().startswith("2\tSupplierName") and "overridden by rule 5" in older.inner_text()
    patch = page.locator("#patch tr", has_text="wknd-suppliername").inner_text()
    assert "NORDWAND OUTDOOR" in patch and "SKU-100001" in patch  # the new rule's value is what is sent
    shot(page, "mapping-preview-overridden")

    page.click("#save-previewed")
    page.wait_for_selector(".messagelist")
    assert MappingRule.objects.get(pim_field="SKUID", metadata_path="wknd-suppliername").position == 5


def test_the_picker_names_a_rule_by_its_number_in_the_table(page, settings):
    settings.PIM_CONNECTOR = "demo"
    mapping.import_config(STANDARD_MAPPING)
    for rule in MappingRule.objects.all():
        MappingRule.objects.filter(pk=rule.pk).update(position=rule.position * 10)
    rules_page(page)
    page.click("[name='rules-1-metadata_path']")
    assert page.inner_text("#picker-target") == "Values go into rule 20."
    page.click("[name='rules-4-metadata_path']")  # the empty row: the number it gets when saved
    assert page.inner_text("#picker-target") == "Values go into rule 41."
    page.click("#rules-group .add-row a")
    assert page.get_attribute("[name='rules-5-position']", "placeholder") == "42"
    page.click("[name='rules-5-metadata_path']")
    assert page.inner_text("#picker-target") == "Values go into rule 42."


def test_enter_in_a_rule_field_saves_the_rules_as_the_main_button_does(page, settings):
    settings.PIM_CONNECTOR = "demo"
    mapping.import_config(STANDARD_MAPPING)
    rules_page(page)
    page.locator("[name='rules-1-transform']").select_option("lower")
    page.fill("[name='rules-1-path_glob']", "/content/dam/products/*")
    page.press("[name='rules-1-path_glob']", "Enter")
    page.wait_for_selector(".messagelist")
    assert "changed successfully" in page.inner_text(".messagelist")
    assert "/preview/" not in page.url
    rule = MappingRule.objects.get(metadata_path="wknd-suppliername")
    assert (rule.transform, rule.path_glob) == ("lower", "/content/dam/products/*")

    page.fill("#preview_key", "SKU-100201")  # Enter in the preview's own fields previews
    page.press("#preview_key", "Enter")
    page.wait_for_selector("#rule-results")
    assert "/preview/" in page.url
