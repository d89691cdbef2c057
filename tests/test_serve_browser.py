"""`mnistlab serve` as a user meets it: a real server process on 127.0.0.1 and a real headless
Chromium that draws a stroke with the mouse and uploads an image."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from mnistlab import load_dataset

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (setup.sh installs it as root)", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.cli]


def test_draw_a_stroke_and_upload_a_test_image(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    data = load_dataset("mnist-5k")
    index = 11
    upload = tmp_path / "digit.png"
    Image.fromarray(255 - data.x_test[index]).resize((140, 140)).save(upload)  # dark on white
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server, wait_until="networkidle")
        assert "13 models of the mnist-5k study" in page.text_content("#study")
        box = page.locator("#pad").bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15
        page.mouse.move(x0, y0)
        page.mouse.down()
        for k in range(1, 21):  # a vertical stroke: a 1
            page.mouse.move(x0, y0 + box["height"] * 0.7 * k / 20)
        page.mouse.up()
        page.wait_for_selector("#predictions .model", timeout=30_000)
        drawn = page.locator("#predictions .model h3").all_text_contents()
        assert len(drawn) == 13
        seen_ink = page.evaluate("""() => {
            const c = document.getElementById('seen');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let ink = 0; for (let i = 0; i < d.length; i += 4) ink += d[i] > 128;
            return ink; }""")
        assert seen_ink > 0  # the 28x28 image the models saw is shown
        page.set_input_files("#file", str(upload))
        page.wait_for_function(
            "() => document.querySelector('#predictions .model h3')?.textContent !== "
            f"{drawn[0]!r}", timeout=30_000)
        best = page.locator("#predictions .model[data-model='cnn-fast'] h3").text_content()
        summary = page.text_content("#summary")
        far_for_a_test_image = page.text_content("#far")
        # an image of noise (28x28 grey: the models read it as it is), far from every
        # training digit, and the page says so
        noise = tmp_path / "noise.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
                        ).save(noise)
        page.set_input_files("#file", str(noise))
        page.wait_for_function("() => document.getElementById('far').textContent !== ''",
                               timeout=30_000)
        far_for_noise = page.text_content("#far")
        # a small 7 drawn with the same pen: once scaled to MNIST's box, its strokes are
        # several times as thick as a training digit's; the page shows what the models say
        page.click("#clear")
        x0, y0 = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45
        page.mouse.move(x0, y0)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(x0 + 30 * k / 10, y0)
        for k in range(1, 11):
            page.mouse.move(x0 + 30 - 18 * k / 10, y0 + 42 * k / 10)
        page.mouse.up()
        page.wait_for_selector("#predictions .model", timeout=30_000)
        thick = page.locator("#predictions .model[data-model='cnn-fast'] h3").text_content()
        print(f"a thick drawn 7: {thick}; far: {page.text_content('#far')!r}")
        browser.close()
    assert far_for_a_test_image == ""
    assert far_for_noise.startswith("This image is far from the training images")
    assert thick.startswith("cnn-fast: ")
    assert best.startswith(f"cnn-fast: {data.y_test[index]}")
    assert summary
    assert all(url.startswith(live_server) for url in requests)  # nothing from outside
    assert not errors, errors
