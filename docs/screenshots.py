"""Take the README's screenshots from a running pimsync (`make run` plus `simulate_upload`).

PIMSYNC_ADMIN_PASSWORD=… .venv/bin/python docs/screenshots.py [http://127.0.0.1:8000]
"""

import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
OUT = Path(__file__).parent / "screenshots"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(base_url=BASE, viewport={"width": 1360, "height": 900})
        page.goto("/admin/login/")
        page.fill("#id_username", os.environ.get("PIMSYNC_ADMIN_USER", "admin"))
        page.fill("#id_password", os.environ["PIMSYNC_ADMIN_PASSWORD"])
        page.click("input[type=submit]")
        page.wait_for_selector("#overview")
        page.screenshot(path=OUT / "overview.png", full_page=True)
        page.goto("/admin/pimsync/event/?status__exact=failed")
        page.screenshot(path=OUT / "event-list.png")
        page.goto("/admin/pimsync/event/?status__exact=succeeded")
        page.locator("#result_list tbody tr a").first.click()
        page.wait_for_selector("#event-detail")
        page.screenshot(path=OUT / "event-detail.png")
        event_id = page.locator("#event-detail code").nth(1).inner_text()
        page.goto("/admin/pimsync/mappingconfig/")
        row = page.locator("tr.form-row", has=page.locator("input[value='pim:category']"))
        row.locator("select[name$='-transform']").select_option("upper")
        page.fill("#preview_event", event_id)
        page.click("#preview-button")
        page.wait_for_selector("#preview")
        page.screenshot(path=OUT / "mapping-preview.png", full_page=True)
        browser.close()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT}")


if __name__ == "__main__":
    main()
