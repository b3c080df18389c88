"""Settings search, Defaults (ui-config.json), Reload UI and configurable quicksettings, in the browser.

One app process; it starts with a ui-config.json holding one good and two bad entries (a user's
file from another version), so startup with damaged entries is covered too. Tests run in order
and restore what the next one relies on.
"""
import json

import httpx
import pytest
from playwright.sync_api import expect

from tests.server_fixture import start_server
from tests.test_browser import set_number
from tests.test_browser_firstten import browser, open_page, options  # noqa: F401 - browser: shared fixture

STEPS = "txt2img/Sampling steps/value"


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_sd15):
    tmp = tmp_path_factory.mktemp("settings2")
    (tmp / "data").mkdir()
    (tmp / "data" / "ui-config.json").write_text(json.dumps({
        STEPS: "lots",                      # wrong type: ignored
        "txt2img/CFG Scale/value": 99,      # outside the slider: ignored
        "txt2img/Width/value": 320,         # fits: the default, kept when the model finishes loading
        "txt2img/Width/maximum": 2048,      # an A1111 field this app does not use: kept in the file
    }))
    with start_server(tmp, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file), "--api"]) as (url, _):
        yield url, tmp / "data", tmp / "server.log"


def open_settings(page):
    page.get_by_role("tab", name="Settings").click()
    page.wait_for_selector("#settings_search")


def reload_ui(page):
    """Press Reload UI and wait until the page has reloaded itself with the new build."""
    with page.expect_navigation(timeout=180_000):
        page.locator("#settings_restart_gradio").click()
    page.wait_for_selector("#txt2img_generate")


def test_search_filters_options_and_sections(app, browser):
    url, _, _ = app
    page = open_page(browser, url)
    try:
        open_settings(page)
        search = page.locator("#settings_search textarea, #settings_search input").first
        clip, save = page.locator("#setting_CLIP_stop_at_last_layers"), page.locator("#setting_samples_save")
        expect(clip).to_be_visible()
        expect(save).to_be_visible()
        search.fill("CLIP skip")  # the label, any case
        expect(clip).to_be_visible()
        expect(save).to_be_hidden()
        expect(page.locator("#settings_section_saving_images")).to_be_hidden()  # nothing left in it
        search.fill("samples_filename")  # the key
        expect(page.locator("#setting_samples_filename_pattern")).to_be_visible()
        expect(clip).to_be_hidden()
        search.fill("saving images")  # the section: all of its options
        expect(save).to_be_visible()
        expect(page.locator("#setting_outdir_txt2img_grids")).to_be_visible()
        expect(clip).to_be_hidden()
        search.fill("defaults")
        expect(page.locator("#settings_section_defaults")).to_be_visible()
        expect(page.locator("#settings_section_stable_diffusion")).to_be_hidden()
        search.fill("")
        expect(clip).to_be_visible()
        expect(save).to_be_visible()
    finally:
        page.close()


def test_defaults_view_apply_and_reload_ui(app, browser):
    url, data, log = app
    page = open_page(browser, url)
    try:
        # The damaged entries were ignored (with a log line), the good one used.
        expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("20")
        expect(page.locator("#txt2img_cfg_scale input[type=number]")).to_have_value("7")
        expect(page.locator("#model_status")).to_contain_text("tiny-sd15", timeout=30_000)
        expect(page.locator("#txt2img_width input[type=number]")).to_have_value("320")
        text = log.read_text()
        assert f"{STEPS}: expected a number" in text and "txt2img/CFG Scale/value: 99 is outside" in text

        set_number(page, "txt2img_steps", 33)
        open_settings(page)
        page.locator("#settings_section_defaults").get_by_text("Defaults").first.click()
        page.locator("#ui_defaults_view").click()
        review = page.locator("#ui_defaults_review")
        expect(review.locator("tr", has_text=STEPS)).to_contain_text("20")
        expect(review.locator("tr", has_text=STEPS)).to_contain_text("33")
        expect(review).not_to_contain_text("Width")  # unchanged controls are not listed
        page.locator("#ui_defaults_apply").click()
        expect(page.locator("#ui_defaults_saved")).to_contain_text("Wrote 1 default(s)")
        saved = json.loads((data / "ui-config.json").read_text())
        assert saved[STEPS] == 33 and saved["txt2img/Width/maximum"] == 2048

        reload_ui(page)
        expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("33")
        other = open_page(browser, url)  # a new page gets the new default too
        expect(other.locator("#txt2img_steps input[type=number]")).to_have_value("33")
        other.close()
        # The server kept serving what it had: the model, the API, the settings.
        assert httpx.get(f"{url}/sdapi/v1/options", timeout=30).json()["sd_model_checkpoint"]
    finally:
        page.close()


def test_quicksettings_list_takes_effect_after_reload_and_saves_at_once(app, browser):
    url, data, _ = app
    page = open_page(browser, url)
    clip_quick = "#quicksettings #setting_CLIP_stop_at_last_layers"
    try:
        expect(page.locator("#setting_sd_vae")).to_be_visible()  # the default list: checkpoint and VAE
        expect(page.locator(clip_quick)).to_have_count(0)
        open_settings(page)
        quick = page.locator("#setting_quicksettings_list")
        expect(quick).to_contain_text("sd_vae")
        quick.locator("input").click()
        quick.locator("input").fill("CLIP_stop")
        page.get_by_role("option", name="CLIP_stop_at_last_layers").click()
        page.locator("#settings_submit").click()
        expect(page.locator("#settings_result")).to_contain_text("The quicksettings list is used after Reload UI")
        assert options(url)["quicksettings_list"] == ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]
        old = open_page(browser, url)  # open before the reload; it keeps its page
        reload_ui(page)
        # The other page's events still run its own page's functions (the new page has more controls).
        set_number(old, "txt2img_steps", 1)
        old.locator("#txt2img_generate").click()
        expect(old.locator("#txt2img_gallery img").first).to_be_visible(timeout=60_000)
        expect(old.locator("#quicksettings #setting_CLIP_stop_at_last_layers")).to_have_count(0)
        old.close()

        expect(page.locator(clip_quick)).to_be_visible()
        expect(page.locator("#setting_sd_model_checkpoint")).to_be_visible()
        expect(page.locator("#setting_sd_vae")).to_be_visible()
        open_settings(page)  # a quicksetting leaves the Settings tab, as in A1111
        expect(page.locator("#tab_settings #setting_CLIP_stop_at_last_layers")).to_have_count(0)
        page.get_by_role("tab", name="txt2img").click()

        set_number(page, "setting_CLIP_stop_at_last_layers", 3)  # saved at once, no Apply
        for _ in range(60):
            if json.loads((data / "config.json").read_text()).get("CLIP_stop_at_last_layers") == 3:
                break
            page.wait_for_timeout(250)
        assert json.loads((data / "config.json").read_text())["CLIP_stop_at_last_layers"] == 3
        page.locator("#txt2img_extra").get_by_text("Extra").click()
        expect(page.locator("#txt2img_clip_skip input[type=number]")).to_have_value("3")  # in step

        set_number(page, "txt2img_clip_skip", 2)  # and the other way round
        expect(page.locator(f"{clip_quick} input[type=number]")).to_have_value("2")
        second = open_page(browser, url)  # another tab sees it at its load
        expect(second.locator(f"{clip_quick} input[type=number]")).to_have_value("2")
        second.close()
        assert options(url)["CLIP_stop_at_last_layers"] == 2
    finally:
        page.close()
        options(url, quicksettings_list=["sd_model_checkpoint", "sd_vae"], CLIP_stop_at_last_layers=1)
