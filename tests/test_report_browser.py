"""The report opened in a real headless Chromium: every section present, every image loaded."""

import os
import shutil

import pytest

from mnistlab.sections import SECTIONS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (setup.sh installs it as root)", allow_module_level=True)


def test_report_opens_offline_with_every_section_and_image(quick_run):
    quick_report = quick_run / "report.html"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(quick_report.as_uri(), wait_until="load")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent.trim())")
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        first = page.eval_on_selector("body > *", "e => e.textContent")
        browser.close()
    for section in SECTIONS:
        assert section.TITLE in headings
    assert "Time and memory per step" in headings
    assert len(widths) >= 3 and all(w > 0 for w in widths)
    assert first.strip().startswith("Quick profile")
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained
