"""Hires. fix and Extras as a user drives them: headless Debian Chromium through Playwright, a real app."""
from __future__ import annotations

import re

from PIL import Image
from playwright.sync_api import expect

from tests.server_fixture import start_server
from tests.test_browser import browser, set_number  # noqa: F401  (the module's browser fixture)
from tests.upscaler_kit import write_upscalers
from webui.images import read_infotext


def test_hires_fix_then_extras(browser, tmp_path, tiny_sd15):  # noqa: F811
    write_upscalers(tmp_path / "data" / "models", bad_files=False)
    with start_server(tmp_path, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.wait_for_selector("#txt2img_generate")
        expect(page.locator("#model_status")).to_contain_text("tiny-sd15", timeout=60_000)
        page.locator("#txt2img_prompt textarea").fill("a red circle")
        set_number(page, "txt2img_steps", 2)
        page.locator("#txt2img_seed input").fill("77")
        page.locator("#txt2img_enable_hr input[type=checkbox]").check()
        page.locator("#txt2img_hires_fix").get_by_text("Hires. fix settings").click()
        expect(page.locator("#txt2img_hires_size")).to_contain_text("from 64x64 to 128x128")
        set_number(page, "txt2img_hires_steps", 2)
        page.locator("#txt2img_generate").click()
        expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Hires upscale: 2"), timeout=180_000)

        [saved] = sorted((tmp_path / "data" / "outputs" / "txt2img-images").rglob("*.png"))
        with Image.open(saved) as png:
            assert png.size == (128, 128)
            text = read_infotext(png)
        for pair in ("Size: 64x64", "Denoising strength: 0.7", "Hires upscale: 2", "Hires steps: 2",
                     "Hires upscaler: Latent"):
            assert pair in text

        # Send the result to Extras and upscale it 2x with a model upscaler.
        page.locator("#txt2img_send_to_extras").click()
        expect(page.locator("#extras_image img")).to_be_visible(timeout=30_000)
        page.locator("#extras_upscaler_1 input").click()
        page.locator("#extras_upscaler_1").get_by_role("option", name="tiny-compact-2x", exact=True).click()
        expect(page.locator("#extras_upscaler_1 input")).to_have_value("tiny-compact-2x")
        set_number(page, "extras_upscaling_resize", 2)
        page.locator("#extras_generate").click()
        expect(page.locator("#extras_generation_info")).to_contain_text("Postprocess upscaler: tiny-compact-2x",
                                                                       timeout=120_000)
        [upscaled] = sorted((tmp_path / "data" / "outputs" / "extras-images").rglob("*.png"))
        with Image.open(upscaled) as png:
            assert png.size == (256, 256)
            assert "Hires upscale: 2" in read_infotext(png)  # the original's parameters are kept
            assert png.text["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: tiny-compact-2x"
        page.screenshot(path=str(tmp_path / "extras.png"), full_page=True)
