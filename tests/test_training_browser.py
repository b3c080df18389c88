"""The Train tab as a user drives it: headless Chromium, a real app process, the tiny SD 1.x model."""
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.server_fixture import start_server
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def page(tiny_sd15, tmp_path_factory):
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium)"
    root = tmp_path_factory.mktemp("train-ui")
    with start_server(root, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1200})
            tab.goto(url)
            tab.get_by_role("tab", name="Train").click()
            tab.data_dir = root / "data"
            yield tab
            browser.close()


def fill(page, elem_id, value):
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(str(value))


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def test_pick_folder_start_see_loss_and_sample_then_interrupt(page, train_folder, tmp_path):
    # A bad folder first: the tab says why, nothing is queued.
    fill(page, "train_lora_name", "ui-lora")
    fill(page, "train_lora_data_dir", str(tmp_path / "nowhere"))
    page.locator("#train_lora_start").click()
    expect(page.locator("#train_lora_error")).to_contain_text("does not exist", timeout=30_000)

    fill(page, "train_lora_data_dir", str(train_folder))
    page.locator("#train_lora_check").click()
    expect(page.locator("#train_lora_folder_info")).to_contain_text("4 images", timeout=30_000)
    expect(page.locator("#train_lora_folder_info")).to_contain_text("no .txt caption")
    set_number(page, "train_lora_steps", 400)
    set_number(page, "train_lora_sample_every", 2)
    set_number(page, "train_lora_save_every", 2)
    fill(page, "train_lora_sample_prompts", "a red circle --s 2")
    page.locator("#train_lora_start").click()
    expect(page.locator("#train_lora_started")).to_contain_text("LoRA ui-lora", timeout=30_000)
    # The live view: progress with ETA, the loss plot drawn, a sample image.
    expect(page.locator("#train_lora_progress")).to_contain_text("ETA", timeout=120_000)
    page.wait_for_selector("#train_lora_samples img", timeout=120_000)
    page.wait_for_function("() => document.querySelectorAll('#train_lora_loss svg path').length > 0",
                           timeout=60_000)
    page.screenshot(path=str(tmp_path / "train-tab.png"), full_page=True)
    page.locator("#train_lora_interrupt").click()
    expect(page.locator("#train_lora_status")).to_contain_text("Interrupted", timeout=120_000)
    expect(page.locator("#train_lora_status")).to_contain_text("ui-lora.safetensors")
    assert (page.data_dir / "models" / "Lora" / "ui-lora.safetensors").stat().st_size > 0

    # Starting the same name again without Overwrite/Resume is refused, the file kept.
    page.locator("#train_lora_start").click()
    expect(page.locator("#train_lora_error")).to_contain_text("already exists", timeout=30_000)


def test_dataset_tab_edits_a_caption_and_a_tag_everywhere(page, train_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(train_folder, folder)
    page.get_by_role("tab", name="Dataset").click()
    expect(page.locator("#train_dataset_no_autocaption")).to_contain_text("not included")
    fill(page, "train_dataset_folder", str(folder))
    page.locator("#train_dataset_load").click()
    expect(page.locator("#train_dataset_summary")).to_contain_text("4 images", timeout=30_000)
    expect(page.locator("#train_dataset_tags")).to_contain_text("shape (3)")
    page.locator("#train_dataset_gallery button.thumbnail-item").first.click()
    expect(page.locator("#train_dataset_selected textarea, #train_dataset_selected input").first
           ).to_have_value(str(folder / "3_shapes" / "img0.png"), timeout=30_000)
    fill(page, "train_dataset_caption", "my own caption, shape")
    page.locator("#train_dataset_save_caption").click()
    expect(page.locator("#train_dataset_result")).to_contain_text("Saved img0.txt", timeout=30_000)
    assert (folder / "3_shapes" / "img0.txt").read_text().strip() == "my own caption, shape"
    fill(page, "train_dataset_tag", "shape")
    page.get_by_label("remove").check()
    page.locator("#train_dataset_apply").click()
    expect(page.locator("#train_dataset_result")).to_contain_text("3 caption(s) changed", timeout=30_000)
    expect(page.locator("#train_dataset_result")).to_contain_text("1 image(s) have no caption file")
    assert (folder / "3_shapes" / "img0.txt").read_text().strip() == "my own caption"
