"""The report opened in a real headless Chromium: every section present, every image loaded,
nothing wider than the window, for the quick and the full profile."""

import os
import re
import shutil

import pytest

from mnistlab.sections import SECTIONS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (setup.sh installs it as root)", allow_module_level=True)

PAGE_FACTS = """() => ({
  headings: [...document.querySelectorAll('h2, h3')].map(e => e.textContent.trim()),
  imageWidths: [...document.images].map(e => e.naturalWidth),
  first: document.body.firstElementChild.textContent,
  pageOverflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  columnRight: document.body.getBoundingClientRect().right
               - parseFloat(getComputedStyle(document.body).paddingRight),
  tables: [...document.querySelectorAll('table')].map(t => ({
    wider: t.scrollWidth > t.clientWidth + 1,
    scrolls: ['auto', 'scroll'].includes(getComputedStyle(t).overflowX),
    right: t.getBoundingClientRect().right})),
})"""


@pytest.mark.parametrize("run", ["quick_run", "full_digits_run"])
def test_report_opens_offline_with_every_section_and_image(run, request):
    report = request.getfixturevalue(run) / "report.html"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri(), wait_until="load")
        facts = page.evaluate(PAGE_FACTS)
        browser.close()
    for section in SECTIONS:
        assert section.TITLE in facts["headings"]
    assert "Time and memory per step" in facts["headings"]
    numbers = [m.group(1) for h in facts["headings"] if (m := re.match(r"(\d[\d.-]*) ", h))]
    assert len(numbers) == len(set(numbers)), numbers  # each number once
    assert len(facts["imageWidths"]) >= 10 and all(w > 0 for w in facts["imageWidths"])
    assert facts["first"].strip().startswith("Quick profile") == (run == "quick_run")
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained
    # A wide table scrolls inside the text column; nothing pushes the page past the window.
    assert facts["pageOverflow"] <= 0
    assert all(t["right"] <= facts["columnRight"] + 1 for t in facts["tables"])
    assert all(t["scrolls"] for t in facts["tables"] if t["wider"])
    assert any(t["wider"] for t in facts["tables"])  # the k-means tables are wider than that
