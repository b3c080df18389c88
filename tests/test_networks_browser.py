"""The extra-networks panel and the SD VAE quicksetting as a user drives them (headless Chromium)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests import networks_kit as nk
from tests.server_fixture import start_server
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, set_number
from webui.images import read_infotext


@pytest.fixture(scope="module")
def app(tiny_sd15, tiny_sdxl, tmp_path_factory):
    root = tmp_path_factory.mktemp("networks-ui")
    nk.populate(root / "data")
    Image.new("RGB", (300, 200), (200, 40, 40)).save(root / "data" / "models" / "Lora" / "style.preview.png")
    with start_server(root, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(url)
            page.wait_for_selector("#txt2img_generate")
            yield page, root / "data"
            browser.close()


def saved_pngs(data):
    return sorted((data / "outputs" / "txt2img-images").rglob("*.png"), key=lambda p: p.stat().st_mtime)


def generate(page, data, count_before):
    page.locator("#txt2img_generate").click()
    for _ in range(480):
        if len(saved_pngs(data)) > count_before:
            break
        page.wait_for_timeout(250)
    expect(page.locator("#txt2img_info textarea")).to_have_value(re.compile("Seed: 77"), timeout=60_000)
    files = saved_pngs(data)
    assert len(files) == count_before + 1
    with Image.open(files[-1]) as png:
        return read_infotext(png), np.asarray(png.convert("RGB"), dtype=np.int16)


def test_lora_card_inserts_its_tag_and_the_png_records_its_hash(app):
    page, data = app
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").click()
    page.get_by_role("tab", name="Lora").click()
    cards = page.locator("#txt2img_lora_cards .extra-network-card")
    expect(cards).to_have_count(4)
    expect(page.locator(".extra-network-card[data-name='style'] img.card-preview")).to_be_visible()
    page.locator("#txt2img_lora_search input, #txt2img_lora_search textarea").first.fill("sub")
    expect(cards).to_have_count(1, timeout=20_000)  # the subfolder is searchable
    page.locator("#txt2img_lora_search input, #txt2img_lora_search textarea").first.fill("")
    expect(cards).to_have_count(4, timeout=20_000)

    page.locator("#txt2img_prompt textarea").fill("a red circle")
    page.locator(".extra-network-card[data-name='style']").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a red circle <lora:style-alias:1>")
    set_number(page, "txt2img_steps", 2)
    page.locator("#txt2img_seed input").fill("77")
    text, _ = generate(page, data, len(saved_pngs(data)))
    assert text.startswith("a red circle <lora:style-alias:1>\n")
    assert re.search(r'Lora hashes: "style-alias: [0-9a-f]{12}"', text)

    # Clicking the card again takes the tag out; a click on the negative prompt box sends text there.
    page.locator(".extra-network-card[data-name='style']").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a red circle")
    page.get_by_role("tab", name="Textual Inversion").click()
    page.locator("#txt2img_neg_prompt textarea").click()
    page.locator(".extra-network-card[data-name='bluesq']").click()
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("bluesq")
    page.screenshot(path=str(data / "extra-networks.png"), full_page=True)


def test_metadata_view_and_user_metadata_editor(app):
    page, data = app
    page.get_by_role("tab", name="Lora").click()
    page.locator(".extra-network-card[data-name='style'] .card-edit").click()
    metadata = page.locator("#txt2img_extra_networks_metadata")
    expect(metadata).to_contain_text("Dim (rank)", timeout=30_000)
    expect(metadata).to_contain_text("red circle")  # kohya tag frequency
    page.locator("#txt2img_en_description textarea").fill("bold red style")
    page.locator("#txt2img_en_activation textarea").fill("redstyle")
    set_number(page, "txt2img_en_weight", 0.7)
    page.locator("#txt2img_en_save").click()
    expect(page.locator("#txt2img_extra_networks_message")).to_contain_text("Saved style.json", timeout=30_000)
    stored = json.loads((data / "models" / "Lora" / "style.json").read_text())
    assert stored["description"] == "bold red style" and stored["activation text"] == "redstyle"
    assert stored["preferred weight"] == 0.7
    expect(page.locator(".extra-network-card[data-name='style']")).to_contain_text("bold red style")
    page.locator("#txt2img_prompt textarea").fill("")
    page.locator("#txt2img_prompt textarea").click()
    page.locator(".extra-network-card[data-name='style']").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("<lora:style-alias:0.7> redstyle")
    page.locator("#txt2img_en_close").click()


def test_vae_quicksetting_changes_the_image_and_the_infotext(app):
    page, data = app
    page.locator("#txt2img_prompt textarea").fill("a red circle")
    page.locator("#txt2img_neg_prompt textarea").fill("")
    page.locator("#txt2img_seed input").fill("77")
    set_number(page, "txt2img_steps", 2)
    before, plain = generate(page, data, len(saved_pngs(data)))
    assert "VAE" not in before.splitlines()[-1]
    page.locator("#setting_sd_vae input").click()
    page.get_by_role("option", name="alt.safetensors").click()
    config = data / "config.json"
    for _ in range(240):  # the swap is queued; the setting is saved (config.json written) when it has happened
        if config.exists() and json.loads(config.read_text()).get("sd_vae") == "alt.safetensors":
            break
        page.wait_for_timeout(250)
    after, changed = generate(page, data, len(saved_pngs(data)))
    assert re.search(r"VAE hash: [0-9a-f]{10}, VAE: alt.safetensors", after)
    assert np.abs(changed - plain).mean() > 1
    # An SDXL VAE on this SD 1.x model is refused: warning, dropdown back, image as before.
    page.locator("#setting_sd_vae input").click()
    page.get_by_role("option", name="sdxl_vae.safetensors").click()
    expect(page.get_by_text(re.compile("VAE not changed: sdxl_vae.safetensors is an SDXL VAE"))).to_be_visible(timeout=30_000)
    expect(page.locator("#setting_sd_vae input")).to_have_value("alt.safetensors", timeout=30_000)
    assert json.loads((data / "config.json").read_text())["sd_vae"] == "alt.safetensors"


def test_unknown_lora_is_named_under_the_image_and_a_checkpoint_card_loads_it(app):
    page, data = app
    page.locator("#txt2img_prompt textarea").fill("a red circle <lora:nope:1>")
    page.locator("#txt2img_seed input").fill("77")
    generate(page, data, len(saved_pngs(data)))
    expect(page.locator("#txt2img_comments")).to_contain_text("Networks not found: nope")
    page.get_by_role("tab", name="Checkpoints").click()
    page.locator(".extra-network-card[data-name='tiny-sdxl.safetensors']").click()
    expect(page.locator("#txt2img_extra_networks_message")).to_contain_text("Loaded tiny-sdxl.safetensors",
                                                                           timeout=120_000)
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-sdxl"), timeout=30_000)
    page.locator(".extra-network-card[data-name='tiny-sd15.safetensors']").click()
    expect(page.locator("#txt2img_extra_networks_message")).to_contain_text("Loaded tiny-sd15.safetensors",
                                                                           timeout=120_000)
