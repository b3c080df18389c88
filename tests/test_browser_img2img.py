"""The img2img tab as a user drives it: upload, paint a mask stroke with the mouse, generate, find the PNG;
PNG Info puts its parameters back into the img2img tab; txt2img's "Send to img2img" carries image and prompt."""
import re

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.server_fixture import start_server
from tests.test_browser import browser, set_number  # noqa: F401  (the module's Chromium fixture)
from tests.test_img2img import scene
from webui.images import read_infotext
from webui.infotext import parse_infotext


def upload_to_editor(page, elem_id: str, path) -> None:
    editor = page.locator(f"#{elem_id}")
    editor.locator("canvas").first.wait_for(state="visible")
    page.wait_for_timeout(1000)  # the editor's canvas initialises after it becomes visible
    editor.locator("input[type=file]").first.set_input_files(str(path))
    expect(editor.get_by_text("Upload an image")).to_be_hidden(timeout=30_000)
    page.wait_for_timeout(500)


def paint_stroke(page, elem_id: str) -> None:
    """Select the brush and drag it across the middle of the canvas, as a user does."""
    editor = page.locator(f"#{elem_id}")
    editor.locator("button[aria-label=Brush]").click()
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 50, cy)
    page.mouse.down()
    for step in range(11):
        page.mouse.move(cx - 50 + step * 10, cy)
    page.mouse.up()
    page.wait_for_timeout(500)


def test_inpaint_with_a_painted_mask_then_png_info_and_send_to(browser, tmp_path, tiny_sd15):  # noqa: F811
    source = tmp_path / "scene.png"
    scene(256, 256).save(source)
    with start_server(tmp_path, tiny_sd15.single_file.parent, ["--ckpt", str(tiny_sd15.single_file)]) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.wait_for_selector("#txt2img_generate")
        page.get_by_role("tab", name="img2img", exact=True).click()
        page.get_by_role("tab", name="Inpaint", exact=True).click()
        expect(page.locator("#img2img_mask_blur")).to_be_visible(timeout=30_000)
        upload_to_editor(page, "img2maskimg", source)
        paint_stroke(page, "img2maskimg")
        page.locator("#img2img_prompt textarea").fill("a green circle")
        set_number(page, "img2img_steps", 3)
        set_number(page, "img2img_denoising_strength", 0.6)
        set_number(page, "img2img_mask_blur", 6)
        page.locator("#img2img_inpainting_fill").get_by_text("fill", exact=True).click()
        page.locator("#img2img_seed input").fill("777")
        page.locator("#img2img_generate").click()
        page.wait_for_selector("#img2img_gallery img", timeout=180_000)
        expect(page.locator("#img2img_info textarea")).to_have_value(re.compile("Seed: 777"), timeout=60_000)
        page.screenshot(path=str(tmp_path / "img2img.png"), full_page=True)

        saved = sorted((tmp_path / "data" / "outputs" / "img2img-images").rglob("*.png"))
        assert [p.name for p in saved] == ["00000-777.png"]
        with Image.open(saved[0]) as png:
            text = read_infotext(png)
            pixels = np.asarray(png.convert("RGB"), dtype=np.int16)
        params = parse_infotext(text)
        assert params["Prompt"] == "a green circle" and params["Seed"] == "777" and params["Steps"] == "3"
        assert (params["Denoising strength"], params["Mask blur"], params["Masked content"]) == ("0.6", "6", "fill")
        assert page.locator("#img2img_info textarea").input_value() == text
        # The stroke ran across the middle: the corners are the original's, the middle was repainted.
        original = np.asarray(scene(256, 256).resize((64, 64), Image.Resampling.LANCZOS), dtype=np.int16)
        for corner in (np.s_[:6, :6], np.s_[:6, -6:], np.s_[-6:, :6], np.s_[-6:, -6:]):
            assert np.abs(pixels[corner] - original[corner]).max() <= 1
        assert np.abs(pixels[28:36, 24:40] - original[28:36, 24:40]).mean() > 5

        # Change the fields, then PNG Info -> Send to inpaint puts them back.
        set_number(page, "img2img_denoising_strength", 0.3)
        set_number(page, "img2img_mask_blur", 2)
        page.locator("#img2img_prompt textarea").fill("something else")
        page.get_by_role("tab", name="PNG Info").click()
        page.locator("#pnginfo_image input[type=file]").set_input_files(str(saved[0]))
        expect(page.locator("#pnginfo_parameters textarea")).to_have_value(text, timeout=30_000)
        page.locator("#pnginfo_send_to_inpaint").click()
        expect(page.locator("#img2img_prompt textarea")).to_have_value("a green circle", timeout=30_000)
        slow = {"timeout": 30_000}  # a busy CI machine answers UI events slowly
        expect(page.locator("#img2img_prompt textarea")).to_be_visible(**slow)
        expect(page.locator("#img2img_denoising_strength input[type=number]")).to_have_value("0.6", **slow)
        expect(page.locator("#img2img_mask_blur input[type=number]")).to_have_value("6", **slow)
        expect(page.locator("#img2img_inpainting_fill input[value=fill]")).to_be_checked(**slow)
        expect(page.locator("#img2img_seed input")).to_have_value("777", **slow)

        # txt2img -> Send to img2img: the image lands in the img2img sub-tab with the prompt.
        page.get_by_role("tab", name="txt2img", exact=True).click()
        page.locator("#txt2img_prompt textarea").fill("a red square")
        set_number(page, "txt2img_steps", 2)
        page.locator("#txt2img_generate").click()
        page.wait_for_selector("#txt2img_gallery img", timeout=180_000)
        page.locator("#txt2img_send_to_img2img").click()
        expect(page.locator("#img2img_prompt textarea")).to_have_value("a red square", timeout=30_000)
        expect(page.locator("#img2img_image img")).to_be_visible(timeout=30_000)
        expect(page.locator("#img2img_steps input[type=number]")).to_have_value("2", **slow)
