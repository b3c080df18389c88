"""Pasting an infotext (PNG Info -> txt2img / img2img) runs infotext_pasted hooks and fills native panels."""
import pytest
from PIL import Image

from tests.test_extensions_jobs import make_context

TEXT = "a cat\nNegative prompt: blue\nSteps: 3, Sampler: Euler, Seed: 42, Size: 64x64, Test suffix: in snow"


@pytest.fixture(scope="module")
def page(tiny_sd15, tmp_path_factory):
    from webui.ui.app import build_ui

    context = make_context(tmp_path_factory.mktemp("paste"), tiny_sd15, ["native-all-hooks"])
    demo = build_ui(context)
    yield context, demo
    context.queue.stop()


def handler(demo, button_id: str):
    """The click handler of the button with this elem_id, and its output elem_ids in order."""
    for block_fn in demo.fns.values():
        triggers = [getattr(block, "elem_id", None) for block, _ in
                    [(demo.blocks.get(t[0]), t[1]) for t in block_fn.targets]]
        if button_id in triggers:
            return block_fn.fn, [getattr(o, "elem_id", None) for o in block_fn.outputs]
    raise AssertionError(f"no handler for {button_id}")


def value(update):
    return update.get("value") if isinstance(update, dict) else update


def test_png_info_to_txt2img_fills_the_panel_and_runs_hooks(page):
    context, demo = page
    fn, outputs = handler(demo, "pnginfo_send_to_txt2img")
    updates = dict(zip(outputs, fn(TEXT)))
    assert value(updates["txt2img_ext_native_test_panel_suffix"]) == "in snow"
    assert value(updates["txt2img_ext_native_test_panel_enabled"]) is True
    assert updates["txt2img_prompt"] == "a cat" and updates["txt2img_steps"] == 3
    assert ("infotext_pasted",) in [tuple(c) for c in context.extensions.apis["native-all-hooks"].calls]
    # An image made without the panel switches it off and leaves its text alone.
    updates = dict(zip(outputs, fn("a dog\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64")))
    assert value(updates["txt2img_ext_native_test_panel_enabled"]) is False
    assert not isinstance(updates["txt2img_ext_native_test_panel_suffix"], str)


def test_png_info_to_img2img_fills_the_panel(page):
    context, demo = page
    fn, outputs = handler(demo, "pnginfo_send_to_img2img")
    before = len(context.extensions.apis["native-all-hooks"].calls)
    updates = dict(zip(outputs, fn(Image.new("RGB", (64, 64)), TEXT)))
    assert value(updates["img2img_ext_native_test_panel_suffix"]) == "in snow"
    assert value(updates["img2img_ext_native_test_panel_enabled"]) is True
    assert value(updates["img2img_prompt"]) == "a cat"
    assert len(context.extensions.apis["native-all-hooks"].calls) == before + 1  # the paste hook ran


def test_script_dropdown_and_panels_on_both_tabs(page):
    _, demo = page
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for tab in ("txt2img", "img2img"):
        assert {f"{tab}_script", f"{tab}_ext_native_test_panel_suffix"} <= ids
