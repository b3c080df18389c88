"""ControlNet in the browser: a unit in txt2img (upload, canny preview, generate) and the pose editor
(drag a joint, send the pose to a unit). Headless Chromium on the real app with the bundled demo models."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.server_fixture import start_server
from tests.test_browser import browser  # noqa: F401  (the shared Chromium fixture)
from webui.generation.openpose import render_pose_json
from webui.training.shapes import ShapeSpec, render

UNIT = "#txt2img_controlnet_unit0"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("cn-ui"), None) as (url, _):
        yield url


def fetch_image(page, selector: str) -> np.ndarray:
    src = page.locator(selector).first.get_attribute("src")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def test_unit_upload_preview_canny_and_generate(browser, app, tmp_path):  # noqa: F811
    import cv2

    picture = render(ShapeSpec("square", "red", "blue", 18, 30, 22))
    path = tmp_path / "square.png"
    picture.save(path)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(app)
    page.wait_for_selector("#txt2img_generate")
    page.locator("#txt2img_controlnet").get_by_text("ControlNet").first.click()
    page.locator(f"{UNIT}_image input[type=file]").set_input_files(str(path))
    page.locator(f"{UNIT}_enable input").check()
    page.locator(f"{UNIT}_type").get_by_text("Canny", exact=True).click()
    expect(page.locator(f"{UNIT}_module input")).to_have_value("canny", timeout=30_000)
    expect(page.locator(f"{UNIT}_model input")).to_have_value(re.compile(r"^demo-shapes-canny-scribble \["))
    page.locator(f"{UNIT}_pixel_perfect input").check()
    page.locator(f"{UNIT}_preview_button").click()
    page.wait_for_selector(f"{UNIT}_preview img", timeout=60_000)
    preview = fetch_image(page, f"{UNIT}_preview img")
    # Pixel perfect at 64x64 on a 64x64 picture: exactly OpenCV's Canny at the default thresholds.
    assert np.array_equal(preview[:, :, 0], cv2.Canny(np.asarray(picture), 100, 200))

    page.locator("#txt2img_prompt textarea").fill("a red square on a blue background")
    page.locator("#txt2img_seed input").fill("11")
    page.locator("#txt2img_generate").click()
    page.wait_for_selector("#txt2img_gallery img", timeout=180_000)
    expect(page.locator("#txt2img_info textarea")).to_have_value(
        re.compile(r'ControlNet 0: "Module: canny, Model: demo-shapes-canny-scribble \[[0-9a-f]{8}\], Weight: 1, '
                   r'Resize Mode: Crop and Resize'), timeout=30_000)
    expect(page.locator("#txt2img_gallery img")).to_have_count(2, timeout=30_000)  # the image, then the map
    page.screenshot(path=str(tmp_path / "controlnet-unit.png"), full_page=True)
    page.close()


def test_img2img_unit_without_an_image_uses_the_input(browser, app, tmp_path):  # noqa: F811
    picture = render(ShapeSpec("circle", "green", "white", 40, 28, 18))
    path = tmp_path / "circle.png"
    picture.save(path)
    unit = "#img2img_controlnet_unit0"
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(app)
    page.wait_for_selector("#txt2img_generate")
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    page.locator("#img2img_image input[type=file]").set_input_files(str(path))
    page.locator("#img2img_controlnet").get_by_text("ControlNet").first.click()
    page.locator(f"{unit}_enable input").check()
    page.locator(f"{unit}_type").get_by_text("Canny", exact=True).click()
    expect(page.locator(f"{unit}_model input")).to_have_value(re.compile(r"^demo-shapes-canny-scribble \["),
                                                              timeout=30_000)
    page.locator("#img2img_prompt textarea").fill("a green circle on a white background")
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img")).to_have_count(2, timeout=180_000)  # the image, then the map
    expect(page.locator("#img2img_info textarea")).to_have_value(re.compile(r'ControlNet 0: "Module: canny'))
    page.close()


def test_pose_editor_drag_a_joint_and_send_to_a_unit(browser, app, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(app)
    page.wait_for_selector("#txt2img_generate")
    page.get_by_role("tab", name="OpenPose Editor").click()
    page.wait_for_selector("#pose_canvas")
    page.locator("#pose_add_person").click()  # two people
    before = json.loads(page.locator("#pose_editor_json textarea").input_value())
    assert len(before["people"]) == 2
    wrist = before["people"][0]["pose_keypoints_2d"][3 * 4:3 * 4 + 2]  # right wrist of the first person
    box = page.locator("#pose_canvas").bounding_box()
    scale = box["width"] / before["canvas_width"]
    x, y = box["x"] + wrist[0] * scale, box["y"] + wrist[1] * scale
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y - 40, steps=5)
    page.mouse.up()
    page.wait_for_function("""(old) => JSON.parse(document.querySelector('#pose_editor_json textarea').value)
                                     .people[0].pose_keypoints_2d[12] !== old""", arg=wrist[0])
    after = json.loads(page.locator("#pose_editor_json textarea").input_value())
    moved = after["people"][0]["pose_keypoints_2d"][12:14]
    assert abs(moved[0] - (wrist[0] + 30 / scale)) < 3 and abs(moved[1] - (wrist[1] - 40 / scale)) < 3
    assert after["people"][1] == before["people"][1]  # the other person did not move

    page.locator("#pose_editor_send").click()
    expect(page.locator(f"{UNIT}_enable input")).to_be_checked(timeout=30_000)
    expect(page.locator(f"{UNIT}_module input")).to_have_value("none")
    page.wait_for_selector(f"{UNIT}_image img", timeout=30_000)
    sent = fetch_image(page, f"{UNIT}_image img")
    assert np.array_equal(sent, render_pose_json(after))  # the rendered pose map, standard limb colours
    page.screenshot(path=str(tmp_path / "pose-sent.png"), full_page=True)

    # Import an sd-webui-openpose-editor file (normalised coordinates), then export it again.
    page.get_by_role("tab", name="OpenPose Editor").click()
    flat = [v for k in range(18) for v in ((20 + 3 * k) / 320, (30 + 5 * k) / 240, 1.0)]
    pose_file = tmp_path / "pose.json"
    pose_file.write_text(json.dumps({"canvas_width": 320, "canvas_height": 240,
                                     "people": [{"pose_keypoints_2d": flat}]}))
    page.locator("#pose_import_file").set_input_files(str(pose_file))
    page.wait_for_function("""() => JSON.parse(document.querySelector('#pose_editor_json textarea').value)
                                     .canvas_width === 320""")
    imported = json.loads(page.locator("#pose_editor_json textarea").input_value())
    assert len(imported["people"]) == 1
    assert imported["people"][0]["pose_keypoints_2d"][:6] == [20, 30, 1, 23, 35, 1]  # back in pixels
    with page.expect_download() as download:
        page.locator("#pose_export").click()
    exported = json.loads(open(download.value.path()).read())
    assert exported == imported
    page.close()
