"""The whole UI as a user drives it: headless Debian Chromium through Playwright, a real app process."""
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.server_fixture import start_server
from webui.images import read_infotext

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PROMPT = "a (red:1.2) circle on a blue background"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def test_generate_then_png_info_round_trip(browser, tmp_path, tiny_sd15):
    with start_server(tmp_path, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.wait_for_selector("#txt2img_generate")
        expect(page.locator("#model_status")).to_contain_text("tiny-sd15.safetensors")
        page.locator("#txt2img_prompt textarea").fill(PROMPT)
        page.locator("#txt2img_neg_prompt textarea").fill("green")
        expect(page.locator("#txt2img_token_counter")).to_contain_text("/75")
        set_number(page, "txt2img_steps", 3)
        set_number(page, "txt2img_cfg_scale", 6.5)
        page.locator("#txt2img_seed input").fill("4242")
        page.locator("#txt2img_generate").click()
        page.wait_for_selector("#txt2img_gallery img", timeout=120_000)
        expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Seed: 4242"), timeout=30_000)
        # A single result is drawn whole inside the gallery's box (it used to overflow and hide its lower part).
        gallery = page.locator("#txt2img_gallery").bounding_box()
        shown = page.locator("#txt2img_gallery img").first.bounding_box()
        assert shown["y"] + shown["height"] <= gallery["y"] + gallery["height"] + 1, (shown, gallery)

        saved = sorted((tmp_path / "data" / "outputs" / "txt2img-images").rglob("*.png"))
        assert [p.name for p in saved] == ["00000-4242.png"]
        with Image.open(saved[0]) as png:
            text = read_infotext(png)
        assert text.startswith(PROMPT + "\nNegative prompt: green\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras, "
                                        "CFG scale: 6.5, Seed: 4242, Size: 64x64, Model hash: ")
        assert "Model: tiny-sd15" in text

        # Change the fields, then let PNG Info put them back.
        page.locator("#txt2img_prompt textarea").fill("something else")
        page.locator("#txt2img_seed input").fill("7")
        page.get_by_role("tab", name="PNG Info").click()
        page.locator("#pnginfo_image input[type=file]").set_input_files(str(saved[0]))
        expect(page.locator("#pnginfo_parameters textarea")).to_have_value(text, timeout=30_000)
        expect(page.locator("#pnginfo_table")).to_contain_text("4242")
        page.locator("#pnginfo_send_to_txt2img").click()
        expect(page.locator("#txt2img_prompt textarea")).to_have_value(PROMPT, timeout=30_000)
        expect(page.locator("#txt2img_prompt textarea")).to_be_visible()
        expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("green")
        expect(page.locator("#txt2img_seed input")).to_have_value("4242")
        expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("3")
        expect(page.locator("#txt2img_cfg_scale input[type=number]")).to_have_value("6.5")

        # ↙ reads infotext pasted into the prompt box into the fields (A1111's "Read generation parameters").
        page.locator("#txt2img_prompt textarea").fill(text.replace("Seed: 4242", "Seed: 99"))
        page.locator("#txt2img_paste").click()
        expect(page.locator("#txt2img_seed input")).to_have_value("99", timeout=30_000)
        expect(page.locator("#txt2img_prompt textarea")).to_have_value(PROMPT)
        page.locator("#txt2img_seed input").fill("4242")

        # Ctrl+Enter generates too, and the same fields give the same file name pattern (next number).
        page.locator("#txt2img_prompt textarea").press("Control+Enter")
        page.wait_for_function("""() => document.querySelectorAll('#txt2img_gallery img').length > 0""")
        for _ in range(240):
            if len(list((tmp_path / "data" / "outputs" / "txt2img-images").rglob("*.png"))) == 2:
                break
            page.wait_for_timeout(500)
        names = sorted(p.name for p in (tmp_path / "data" / "outputs" / "txt2img-images").rglob("*.png"))
        assert names == ["00000-4242.png", "00001-4242.png"]
        page.screenshot(path=str(tmp_path / "txt2img.png"), full_page=True)

        # Settings: a bad value is refused in the page, a good one persists to config.json.
        page.get_by_role("tab", name="Settings").click()
        set_number(page, "setting_CLIP_stop_at_last_layers", 2)
        page.locator("#setting_samples_filename_pattern textarea").fill("[seed]-[steps]")
        page.locator("#settings_submit").click()
        expect(page.locator("#settings_result")).to_contain_text("Saved 2 setting(s)", timeout=30_000)
        config = json.loads((tmp_path / "data" / "config.json").read_text())
        assert config["CLIP_stop_at_last_layers"] == 2 and config["samples_filename_pattern"] == "[seed]-[steps]"
        page.get_by_role("tab", name="txt2img").click()
        page.locator("#txt2img_extra").get_by_text("Extra").click()
        expect(page.locator("#txt2img_clip_skip input[type=number]")).to_have_value("2")
