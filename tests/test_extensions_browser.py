"""Extensions as a user meets them: a real app process, HTTP clients and headless Chromium.

One server (built-ins + test extensions + a git repository to install from) serves every test
here; a second one with --listen checks the install lock.
"""
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.ext_kit import TEST_EXT_FILES, TEST_EXT_URL, https_alias, install_fixtures, make_bare_repo
from tests.server_fixture import start_server
from tests.test_browser import browser, set_number  # noqa: F401  (the module-scoped Chromium fixture)
from webui.images import read_infotext

FIXTURES = ["a1111-alwayson", "native-all-hooks", "broken-ui"]
# Panels of the English-only test extensions: not part of our UI's strings.
TEST_PANELS = ["txt2img_ext_append_prompt", "txt2img_ext_native_test_panel"]
SMALL = {"steps": 2, "width": 64, "height": 64, "sampler_name": "Euler", "save_images": True}


@pytest.fixture(scope="module")
def server(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("ext-server")
    install_fixtures(root / "data", FIXTURES)
    bare = make_bare_repo(root / "repos", TEST_EXT_FILES)
    env = {**https_alias(bare, TEST_EXT_URL), "PIP_NO_INDEX": "1"}
    with start_server(root, tiny_sd15.single_file.parent, ["--api", "--ckpt", str(tiny_sd15.single_file)],
                      env=env) as (url, _):
        yield url, root / "data"


def test_alwayson_script_over_http_positional_and_named(server):
    url, _ = server
    body = {**SMALL, "prompt": "a cat", "seed": 5, "alwayson_scripts": {"Append prompt": {"args": [True, "hat"]}}}
    info = json.loads(httpx.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=600).json()["info"])
    assert info["all_prompts"] == ["a cat, hat"] and "Appended: hat" in info["infotexts"][0]
    named = {**body, "alwayson_scripts": {"append prompt": {"args": {"enabled": True, "text": "scarf"}}}}
    info = json.loads(httpx.post(f"{url}/sdapi/v1/txt2img", json=named, timeout=600).json()["info"])
    assert info["all_prompts"] == ["a cat, scarf"] and not info["comments"]
    bad = httpx.post(f"{url}/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"Append prompt": {"args": {
        "colour": 1}}}}, timeout=60)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "alwayson_scripts"
    assert "unknown arg(s) colour; it takes enabled, text" in bad.json()["error"]


def test_script_and_extension_routes(server):
    url, _ = server
    scripts = httpx.get(f"{url}/sdapi/v1/scripts").json()
    assert {"x/y/z plot", "prompt matrix", "prompts from file or textbox", "append prompt"} <= set(scripts["txt2img"])
    info = {(s["name"], s["is_img2img"]): s for s in httpx.get(f"{url}/sdapi/v1/script-info").json()}
    append = info[("append prompt", False)]
    assert append["is_alwayson"] and [a["label"] for a in append["args"]] == ["Enable append", "Text to append"]
    assert info[("x/y/z plot", False)]["args"][0] == {"label": "X type", "name": "x_type", "value": "Seed",
                                                       "minimum": None, "maximum": None, "step": None,
                                                       "choices": info[("x/y/z plot", False)]["args"][0]["choices"]}
    assert httpx.get(f"{url}/sdapi/v1/extensions").json() == []  # none installed from git yet
    # The startup checkpoint loads behind the page, so model_loaded may come after the UI's hooks.
    deadline = time.monotonic() + 120
    while True:
        calls = httpx.get(f"{url}/ext/native-all-hooks/calls").json()["calls"]
        if ["model_loaded", "tiny-sd15"] in calls or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ["app_started"] in calls and ["model_loaded", "tiny-sd15"] in calls
    assert httpx.get(f"{url}/append-prompt/ping").json()["basedir"].endswith("a1111-alwayson")
    assert httpx.get(f"{url}/file=/etc/passwd").status_code == 404
    js = httpx.get(f"{url}/file=extensions/native-all-hooks/javascript/native.js")
    assert js.status_code == 200 and "nativeAllHooks" in js.text


def visible_english(page) -> list[str]:
    """Visible text and placeholders on the txt2img tab that are English (Latin letters, no CJK)."""
    return page.evaluate("""(skip) => {
        const root = document.getElementById('tab_txt2img');
        const out = [];
        // Gradio's progress timers ("0.5s") are numbers, not words.
        const english = (t) => /[A-Za-z]/.test(t) && !/[\\u3400-\\u9fff]/.test(t) && !/^[0-9.]+s$/.test(t);
        const hidden = (el) => !el || el.closest(skip.map((id) => '#' + id).join(',')) ||
                               !(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const t = n.nodeValue.trim();
            const el = n.parentElement;
            if (!t || hidden(el) || ['SCRIPT', 'STYLE', 'TEXTAREA', 'OPTION'].includes(el.tagName)) continue;
            if (english(t)) out.push(t);
        }
        for (const el of root.querySelectorAll('[placeholder]')) {
            if (!hidden(el) && english(el.getAttribute('placeholder'))) out.push('placeholder: ' + el.placeholder);
        }
        return out;
    }""", TEST_PANELS)


def test_switch_localization_to_zh_cn(server, browser):  # noqa: F811
    url, data = server
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    # Extension JavaScript ran after A1111's helpers, with opts there; an A1111 on_ui_tabs tab is on the page.
    page.wait_for_function("document.body.dataset.nativeAllHooks === 'loaded:opts'", timeout=30_000)
    page.get_by_role("tab", name="Append tab").click()
    expect(page.locator("#append_prompt_tab_text")).to_contain_text("Tab of an A1111 extension")
    page.get_by_role("tab", name="txt2img").click()
    assert visible_english(page), "the check must see English text before the switch"
    page.get_by_role("tab", name="Settings").click()
    pick(page, "setting_localization", "zh_CN")
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).to_contain_text("Saved 1 setting(s): localization", timeout=30_000)
    assert json.loads((data / "config.json").read_text())["localization"] == "zh_CN"
    page.reload()
    expect(page.locator("#txt2img_generate")).to_have_text("生成", timeout=30_000)
    try:
        page.wait_for_timeout(500)  # let the observer translate what Gradio renders after the button
        assert visible_english(page) == []
        expect(page.get_by_role("tab", name="设置")).to_be_visible()
        # Icon tooltips are translated too, and stay so when the page changes afterwards.
        page.locator("#txt2img_extra").get_by_text("Extra").or_(page.locator("#txt2img_extra button").first).first.click()
        page.wait_for_timeout(300)
        expect(page.locator("#txt2img_reuse_seed")).to_have_attribute("title", "重用所选图像的种子")
        expect(page.locator("#txt2img_reuse_seed")).to_have_attribute("aria-label", "重用所选图像的种子")
        page.screenshot(path=str(data.parent / "zh_CN.png"), full_page=True)
    finally:
        # Back to English for the other tests, even after a failed check (and to prove "None" works).
        page.get_by_role("tab", name="设置").click()
        pick(page, "setting_localization", "无")  # "None", translated like every option
        page.locator("#settings_submit").click()
        expect(page.locator("#settings_result")).to_contain_text("localization", timeout=30_000)
        page.close()


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def test_xyz_plot_over_two_samplers_and_two_cfg_values(server, browser):  # noqa: F811
    url, data = server
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    page.locator("#txt2img_prompt textarea").fill("a red circle")
    set_number(page, "txt2img_steps", 2)
    pick(page, "txt2img_script", "X/Y/Z plot")
    pick(page, "txt2img_script_x_y_z_plot_x_type", "Sampler")
    page.locator("#txt2img_script_x_y_z_plot_x_values textarea").fill("Euler, Euler a")
    pick(page, "txt2img_script_x_y_z_plot_y_type", "CFG Scale")
    page.locator("#txt2img_script_x_y_z_plot_y_values textarea").fill("5, 7")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Sampler: Euler"), timeout=600_000)
    grids = sorted((data / "outputs" / "txt2img-grids").rglob("grid-*.png"))
    assert len(grids) == 1
    with Image.open(grids[0]) as grid:
        assert "Sampler: Euler" in read_infotext(grid)
        width, height = grid.size
        legend = grid.convert("L").crop((width - 128, 0, width, height - 128))
    assert width > 128 and height > 128 and legend.getextrema()[0] < 100, "2x2 cells plus legends with text"
    cells = sorted((data / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(cells) >= 4
    page.screenshot(path=str(data.parent / "xyz.png"), full_page=True)
    page.close()


def test_image_browser_finds_an_image_by_seed(server, browser):  # noqa: F811
    url, data = server
    body = {**SMALL, "prompt": "a lonely star", "seed": 777123}
    assert httpx.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=600).status_code == 200
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    page.get_by_role("tab", name="Image Browser").click()
    page.locator("#image_browser_search textarea, #image_browser_search input").first.fill("777123")
    page.locator("#image_browser_search_button").click()
    expect(page.locator("#image_browser_count")).to_have_text("1 image(s).", timeout=60_000)
    page.locator("#image_browser_gallery img").first.click()
    expect(page.locator("#image_browser_info textarea")).to_have_value(re.compile("Seed: 777123"), timeout=30_000)
    page.locator("#image_browser_send_to_txt2img").click()
    expect(page.locator("#txt2img_seed input")).to_have_value("777123", timeout=30_000)
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a lonely star")
    page.get_by_role("tab", name="Image Browser").click()
    page.locator("#image_browser_send_to_img2img").click()  # the image and its parameters into img2img
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a lonely star", timeout=30_000)
    expect(page.locator("#img2img_seed input")).to_have_value("777123")
    expect(page.locator("#img2img_image img")).to_be_visible()
    expect(page.locator("#img2img_script")).to_be_visible()  # the Script dropdown is on img2img too
    page.get_by_role("tab", name="Image Browser").click()
    saved = Path(page.locator("#image_browser_path textarea, #image_browser_path input").first.input_value())
    assert saved.is_file() and saved.is_relative_to(data / "outputs")
    page.locator("#image_browser_delete").click()
    page.locator("#image_browser_confirm_delete").click()
    expect(page.locator("#image_browser_count")).to_contain_text("Deleted", timeout=30_000)
    assert not saved.exists()
    page.close()


def test_extensions_tab_failures_install_and_apply_restart(server, browser):  # noqa: F811
    url, data = server
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    page.get_by_role("tab", name="Broken tab").click()
    expect(page.locator("#tab_broken_ui_error")).to_contain_text("tab builder failed on purpose")
    page.get_by_role("tab", name="Extensions").click()
    row = page.locator('#extensions_table tr[data-extension="broken-ui"]')
    expect(row).to_contain_text("tab builder failed on purpose")
    page.get_by_role("tab", name="Install from URL").click()
    page.locator("#install_url textarea, #install_url input").first.fill(TEST_EXT_URL)
    page.locator("#install_preview").click()
    preview = page.locator("#install_preview_text textarea")
    expect(preview).to_have_value(re.compile(r"test-ext: commit [0-9a-f]{8}"), timeout=120_000)
    assert not (data / "extensions" / "test-ext").exists()  # nothing installed or run before Install
    page.locator("#install_button").click()
    expect(page.locator("#extension_install_result")).to_contain_text("Installed test-ext", timeout=300_000)
    assert (data / "extensions" / "test-ext" / "install-ran.txt").read_text() == "numpy=True"

    # Switch broken-ui off and apply: the app restarts itself with the new set (test-ext now loads too).
    log = data.parent / "server.log"
    page.get_by_role("tab", name="Installed").click()
    page.locator("#extensions_enabled").get_by_label("broken-ui").uncheck()
    page.locator("#extensions_apply").click()
    expect(page.locator("#extensions_result")).to_contain_text("Restarting", timeout=30_000)
    for _ in range(600):
        if log.read_text(errors="replace").count("\nRunning on http") >= 2:
            break
        page.wait_for_timeout(500)
    assert json.loads((data / "config.json").read_text())["disabled_extensions"] == ["broken-ui"]
    page.goto(url)
    page.wait_for_selector("#txt2img_generate", timeout=120_000)
    expect(page.get_by_role("tab", name="Broken tab")).to_have_count(0)
    page.get_by_role("tab", name="Extensions").click()
    expect(page.locator('#extensions_table tr[data-extension="broken-ui"]')).to_contain_text("disabled")
    installed = page.locator('#extensions_table tr[data-extension="test-ext"]')
    expect(installed).to_contain_text("loaded")
    expect(installed).to_contain_text(TEST_EXT_URL)
    extensions = httpx.get(f"{url}/sdapi/v1/extensions").json()
    assert [(e["name"], e["remote"], e["enabled"]) for e in extensions] == [("test-ext", TEST_EXT_URL, True)]
    assert len(extensions[0]["commit_hash"]) == 40 and extensions[0]["commit_date"] > 0
    page.close()


def test_install_is_refused_under_listen(tiny_sd15, tmp_path, browser):  # noqa: F811
    with start_server(tmp_path, tiny_sd15.single_file.parent, ["--listen", "--ckpt", str(tiny_sd15.single_file)]) \
            as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#txt2img_generate")
        page.get_by_role("tab", name="Extensions").click()
        page.get_by_role("tab", name="Install from URL").click()
        expect(page.locator("#extensions_access_refused")).to_contain_text("--enable-insecure-extension-access")
        page.locator("#install_url textarea, #install_url input").first.fill(TEST_EXT_URL)
        page.locator("#install_preview").click()
        expect(page.locator("#extension_install_result")).to_contain_text("extension access disabled",
                                                                          timeout=60_000)
        expect(page.locator("#install_button")).to_be_disabled()
        page.close()
    assert not (tmp_path / "data" / "tmp").exists()
