"""Pages for everyone, in real headless Chromium: colours that read in the admin's light and dark
themes (checked by axe-core), lists that keep their state and time columns on a small screen.

axe-core (MPL-2.0, from the npm registry) is vendored as tests/vendor/axe.min.js, so the suite
needs no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from pimsync.models import Asset, Event, Status, SyncState
from tests.conftest import product
from tests.test_browser import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
PAGES = {
    "overview": "/admin/",
    "event list": "/admin/pimsync/event/",
    "asset list": "/admin/pimsync/asset/",
    "mapping": "/admin/pimsync/mappingconfig/",
}


def themed_page(browser, live_server, scheme: str, size=(1360, 900)):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": size[0], "height": size[1]}, color_scheme=scheme
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def every_badge(client, world) -> None:
    """Events and assets in every status and state, so each badge colour is on some page."""
    for n in (1, 3, 5):
        world.pim.products[f"SKU-10000{n}"] = product(f"SKU-10000{n}")
    world.adobe.deliver(client, [world.upload(client, n) for n in range(1, 8)])
    world.drain()
    events = list(Event.objects.order_by("pk"))
    for event, status in zip(
        events[2:], [Status.UNCHANGED, Status.RETRYING, Status.RECEIVED, Status.IGNORED], strict=False
    ):
        Event.objects.filter(pk=event.pk).update(status=status)
    assets = list(Asset.objects.order_by("pk"))
    for asset, state in zip(assets, [SyncState.STALE, SyncState.NEVER_SYNCED, SyncState.DELETED], strict=False):
        Asset.objects.filter(pk=asset.pk).update(state=state)


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, nodes: v.nodes.length, wcag: v.tags.some(t => t.startsWith('wcag')),
                targets: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary),
            }));
        }"""
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_reads_in_the_admins_light_and_dark_theme(browser, live_server, client, world, scheme):
    every_badge(client, world)
    context, page = themed_page(browser, live_server, scheme)
    try:
        log_in(page, "Support")
        found = {}
        for name, url in PAGES.items():
            page.goto(url)
            page.wait_for_load_state("load")
            violations = axe_violations(page)
            shot(page, f"axe-{scheme}-{name.replace(' ', '-')}")
            # WCAG's rules; axe's best-practice rules flag Django's own search box (its label is an icon).
            found[name] = [v for v in violations if v["wcag"] and v["impact"] in ("serious", "critical")]
            found[name] += [v for v in violations if v["id"] == "color-contrast" and v not in found[name]]
        assert found == dict.fromkeys(PAGES, []), found
    finally:
        context.close()


def right_edges(page, selector: str) -> list[float]:
    return page.eval_on_selector_all(selector, "cells => cells.map(c => c.getBoundingClientRect().right)")


@pytest.mark.parametrize(
    "url, columns",
    [
        ("/admin/pimsync/event/", ["status_label", "received_at"]),
        ("/admin/pimsync/asset/", ["state_label", "outcome", "synced"]),
    ],
)
def test_on_a_1024_pixel_screen_the_lists_keep_their_state_outcome_and_time_columns(
    browser,
    live_server,
    client,
    world,
    url,
    columns,
):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(
        client,
        [
            world.upload(
                client,
                n,
                folder="/content/dam/products" + "/seasonal-campaign-2026-autumn-winter-outdoor-collection" * 3,
            )
            for n in (1, 2)
        ],
    )
    world.drain()
    context, page = themed_page(browser, live_server, "light", size=(1024, 700))
    try:
        log_in(page, "Support")
        page.goto(url)
        page.wait_for_selector("#result_list")
        shot(page, f"small-screen-{url.strip('/').replace('/', '-')}")
        # The list scrolls inside its own box: a column past that box's edge is hidden from view.
        width = page.evaluate(
            "Math.min(window.innerWidth, document.querySelector('#changelist .results').getBoundingClientRect().right)"
        )
        for column in columns:
            edges = right_edges(page, f"#result_list td.field-{column}")
            assert edges and max(edges) <= width, (column, edges, width)
    finally:
        context.close()
