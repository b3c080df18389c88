"""What a new user sees in the first minutes (issue 15): one app process, one headless Chromium.

The server has both tiny checkpoints and the API on, so a test can play "another tab or an API
client" while a page is open. Tests restore what they change (the server is shared).
"""
import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.server_fixture import start_server
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, set_number

DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_sd15, tiny_sdxl):
    """(base url, data dir) of one app with both tiny checkpoints and the API."""
    assert tiny_sdxl.single_file.parent == tiny_sd15.single_file.parent
    tmp = tmp_path_factory.mktemp("firstten")
    with start_server(tmp, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file), "--api"]) as (url, _):
        yield url, tmp / "data"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url, viewport=DESKTOP):
    page = browser.new_page(viewport=viewport)
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    return page


def options(url, **changes):
    if changes:
        httpx.post(f"{url}/sdapi/v1/options", json=changes, timeout=120).raise_for_status()
    return httpx.get(f"{url}/sdapi/v1/options", timeout=30).json()


def test_settings_are_read_at_page_load_and_apply_writes_only_changes(app, browser):
    url, data = app
    options(url, samples_filename_pattern="[seed]-first")
    stale = open_page(browser, url)  # opened before another client changes two settings
    try:
        stale.get_by_role("tab", name="Settings").click()
        # Shows the saved value, not the one of server start (and its page-load read has answered).
        expect(stale.locator("#setting_samples_filename_pattern textarea")).to_have_value("[seed]-first")
        options(url, samples_filename_pattern="[seed]-api", CLIP_stop_at_last_layers=3)
        # The stale page changes one option and applies: the others stay as the API left them.
        set_number(stale, "setting_show_progress_every_n_steps", 5)
        stale.locator("#settings_submit").click()
        expect(stale.locator("#settings_result")).to_have_text(
            "Saved 1 setting(s): show_progress_every_n_steps.", timeout=30_000)
        config = json.loads((data / "config.json").read_text())
        assert config["samples_filename_pattern"] == "[seed]-api" and config["CLIP_stop_at_last_layers"] == 3
        assert config["show_progress_every_n_steps"] == 5
        # ... and after Apply the page shows what is saved, the other client's values included.
        expect(stale.locator("#setting_samples_filename_pattern textarea")).to_have_value("[seed]-api")

        fresh = open_page(browser, url)  # a reload or a second tab
        fresh.locator("#txt2img_extra").get_by_text("Extra").click()
        expect(fresh.locator("#txt2img_clip_skip input[type=number]")).to_have_value("3")
        fresh.get_by_role("tab", name="Settings").click()
        expect(fresh.locator("#setting_samples_filename_pattern textarea")).to_have_value("[seed]-api")
        expect(fresh.locator("#setting_show_progress_every_n_steps input[type=number]")).to_have_value("5")
        fresh.close()
    finally:
        stale.close()
        options(url, samples_filename_pattern="[seed]", CLIP_stop_at_last_layers=1, show_progress_every_n_steps=10)


def test_header_shows_the_checkpoint_and_vae_of_now(app, browser):
    url, _ = app
    titles = [m["title"] for m in httpx.get(f"{url}/sdapi/v1/sd-models", timeout=30).json()]
    xl = next(t for t in titles if "tiny-sdxl" in t)
    open_before = open_page(browser, url)
    expect(open_before.locator("#model_status")).to_contain_text("tiny-sd15", timeout=30_000)
    options(url, sd_model_checkpoint=xl, sd_vae="None")  # another client swaps
    try:
        # A page open during the swap follows it ...
        expect(open_before.locator("#model_status")).to_contain_text("tiny-sdxl", timeout=30_000)
        expect(open_before.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-sdxl"))
        open_before.close()
        # ... and a page opened after it shows it.
        page = open_page(browser, url)
        expect(page.locator("#model_status")).to_contain_text("tiny-sdxl", timeout=30_000)
        expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-sdxl"))
        expect(page.locator("#setting_sd_vae input")).to_have_value("None")
        # Icons render without a colour-emoji font (none is installed here) and have accessible names.
        expect(page.get_by_role("button", name="Refresh the checkpoint list")).to_have_text("↻")
        expect(page.get_by_role("button", name="Set seed to -1, which will cause a new random number to be used "
                                               "every time").first).to_have_text("⚄")
        expect(page.locator("#txt2img_reuse_seed")).to_have_attribute("title", "Reuse seed from the selected image")
        # The user's own pick swaps (the page's own refreshes of the dropdown must not).
        page.locator("#setting_sd_model_checkpoint input").click()
        page.get_by_role("option", name=re.compile("tiny-sd15")).click()
        expect(page.locator("#model_status")).to_contain_text("tiny-sd15", timeout=60_000)
        assert "tiny-sd15" in options(url)["sd_model_checkpoint"]
        page.close()
    finally:
        sd15 = next(t for t in titles if "tiny-sd15" in t)
        options(url, sd_model_checkpoint=sd15, sd_vae="Automatic")


def test_reuse_seed_takes_the_selected_image_and_bad_size_is_refused_in_ui_words(app, browser):
    url, _ = app
    page = open_page(browser, url)
    try:
        set_number(page, "txt2img_steps", 1)
        set_number(page, "txt2img_batch_size", 3)
        page.locator("#txt2img_seed input").fill("100")
        page.locator("#txt2img_generate").click()
        # A1111's gallery: the batch's grid first, then the three images.
        gallery = page.locator("#txt2img_gallery img")
        expect(gallery).to_have_count(4, timeout=120_000)
        sizes = gallery.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
        assert sizes[0] == [2 * sizes[1][0], 2 * sizes[1][1]] and sizes[1] == sizes[2] == sizes[3], sizes
        gallery.nth(3).click()  # the third image
        expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Seed: 102,.*Batch pos: 2"))
        page.locator("#txt2img_random_seed").click()
        expect(page.locator("#txt2img_seed input")).to_have_value("-1")
        page.locator("#txt2img_reuse_seed").click()
        expect(page.locator("#txt2img_seed input")).to_have_value("102")

        # A width off the slider's grid: refused with the label and the slider's own range; nothing runs.
        set_number(page, "txt2img_batch_size", 1)
        page.locator("#txt2img_width input[type=number]").fill("100")
        page.locator("#txt2img_generate").click()
        error = page.locator("#txt2img_error_html")
        expect(error).to_have_text("Width must be a multiple of 8 from 64 to 2048 (the field shows 100).",
                                   timeout=30_000)
        expect(page.locator("#txt2img_width input[type=number]")).to_have_value("100")
        expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Seed: 102,"))
        # ... and said beside the field itself, inside the Width control, not only above the gallery.
        beside = page.locator("#txt2img_width")
        expect(beside).to_contain_text("Width must be a multiple of 8 from 64 to 2048 (the field shows 100).")
        expect(page.locator("#txt2img_width")).to_have_class(re.compile("field-error"))
        expect(page.locator("#txt2img_height")).not_to_have_class(re.compile("field-error"))
        # Fixed and run again: the field's message goes away.
        page.locator("#txt2img_width input[type=number]").fill("64")
        page.locator("#txt2img_generate").click()
        expect(page.locator("#txt2img_width")).not_to_have_class(re.compile("field-error"), timeout=120_000)
        expect(beside).not_to_contain_text("must be")
    finally:
        page.close()


def test_phone_generate_brings_progress_and_result_into_view(app, browser):
    url, _ = app
    page = open_page(browser, url, PHONE)
    try:
        # The model status line gets a row of its own, not a column a few characters wide.
        status = page.locator("#model_status").bounding_box()
        assert status and status["width"] > 0.7 * PHONE["width"], status
        # The checkpoint's whole name fits its box (it was cut off under the dropdown arrow).
        name = page.locator("#setting_sd_model_checkpoint input")
        expect(name).to_have_value(re.compile(r"tiny-sd15\.safetensors \[[0-9a-f]{10}\]"), timeout=30_000)
        fits = name.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert fits[0] <= fits[1], fits
        expect(name).to_have_attribute("title", name.input_value())
        set_number(page, "txt2img_steps", 1)
        page.locator("#txt2img_generate").click()
        expect(page.locator("#txt2img_gallery")).to_be_in_viewport(timeout=10_000)
        page.wait_for_function("() => document.querySelectorAll('#txt2img_gallery img').length >= 1",
                               timeout=120_000)
        expect(page.locator("#txt2img_gallery img").first).to_be_in_viewport()
    finally:
        page.close()


def test_generate_turns_into_interrupt_and_skip_and_their_results_show(app, browser):
    """Defect 11 and A1111's buttons: while a job runs, Interrupt / Skip stand where Generate was
    (Alt+Enter and Esc press them); Skip keeps the skipped batch's partial image; Interrupt is a
    note, not an error."""
    url, _ = app
    page = open_page(browser, url)
    generate, interrupt, skip = (page.locator(f"#txt2img_{name}") for name in ("generate", "interrupt", "skip"))
    try:
        expect(interrupt).to_be_hidden()
        expect(skip).to_be_hidden()
        set_number(page, "txt2img_steps", 150)
        set_number(page, "txt2img_batch_count", 2)
        page.locator("#txt2img_seed input").fill("7")
        generate.click()
        expect(skip).to_be_visible(timeout=30_000)
        expect(interrupt).to_be_visible()
        expect(generate).to_be_hidden()
        expect(page.locator("#txt2img_progress_html")).to_contain_text("Batch 1 of 2", timeout=60_000)
        page.keyboard.press("Alt+Enter")  # A1111's key for Skip
        expect(generate).to_be_visible(timeout=300_000)
        expect(skip).to_be_hidden()
        # Grid, the skipped batch's partial image, the finished one; a note says so (not an error box).
        expect(page.locator("#txt2img_gallery img")).to_have_count(3)
        note = page.locator("#txt2img_error_html .note-box")
        expect(note).to_contain_text("Skipped")
        expect(page.locator("#txt2img_error_html .error-box")).to_have_count(0)

        set_number(page, "txt2img_batch_count", 3)
        generate.click()
        expect(page.locator("#txt2img_progress_html")).to_contain_text("Batch 2 of 3", timeout=300_000)
        page.keyboard.press("Escape")  # A1111's key for Interrupt
        expect(generate).to_be_visible(timeout=120_000)
        expect(page.locator("#txt2img_error_html .note-box")).to_contain_text("Interrupted: showing what was finished.")
        expect(page.locator("#txt2img_error_html .error-box")).to_have_count(0)
        # Batch 1, the interrupted batch as far as it got (A1111 decodes it too), and their grid first.
        expect(page.locator("#txt2img_gallery img")).to_have_count(3)
    finally:
        page.close()
