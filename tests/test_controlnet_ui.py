"""The ControlNet accordion's Python side: values -> units, infotext -> unit fields (no browser)."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from webui.generation.request import RequestError
from webui.models.controlnet import ControlNetManager
from webui.settings import Settings
from webui.ui.controlnet import UnitWidgets, build_controlnet_panel, slider_updates


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    settings = Settings(path=None)
    manager = ControlNetManager([tmp_path_factory.mktemp("cn")], settings, bundled_root=None)
    ctx = SimpleNamespace(settings=settings, controlnets=manager)
    with gr.Blocks():
        width, height = gr.Slider(64, 2048, value=64), gr.Slider(64, 2048, value=64)
        return build_controlnet_panel(ctx, "t", width, height)


def values(**unit0):
    base = dict(enabled=False, image=None, mask=None, low_vram=False, pixel_perfect=False, module="none",
                model="None", processor_res=-1, threshold_a=-1, threshold_b=-1, weight=1.0, guidance_start=0.0,
                guidance_end=1.0, control_mode="Balanced", resize_mode="Crop and Resize")
    first = {**base, **unit0}
    return [first[n] for n in UnitWidgets.VALUES] + [base[n] for n in UnitWidgets.VALUES] * 2


def test_three_units_by_default_and_only_enabled_ones_become_units(panel):
    assert len(panel.units) == 3
    assert panel.units_from(values()) == []
    image = np.zeros((8, 8, 3), np.uint8)
    units = panel.units_from(values(enabled=True, image=image, module="canny", model="m", processor_res=512,
                                    threshold_a=50, threshold_b=150, control_mode="My prompt is more important"))
    assert len(units) == 1 and units[0].module == "canny" and units[0].threshold_a == 50
    assert units[0].control_mode == "My prompt is more important" and units[0].image is image


def test_a_bad_unit_is_a_message_naming_it(panel):
    with pytest.raises(RequestError, match="ControlNet Unit 0.guidance_start"):
        panel.units_from(values(enabled=True, model="m", guidance_start=0.9, guidance_end=0.1))
    with pytest.raises(RequestError, match="needs a ControlNet model"):
        panel.units_from(values(enabled=True))


def test_png_info_restores_units_from_infotext(panel):
    params = {"ControlNet 1": "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.6, Resize Mode: "
                              "Just Resize, Low Vram: False, Processor Res: 384, Threshold A: 80, Threshold B: 160, "
                              "Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: True, Control Mode: Balanced"}
    updates = panel.restore_updates(params)
    targets = panel.restore_targets()
    assert len(updates) == len(targets) == 3 * 13
    unit1 = dict(zip(["enabled", "module", "model", "weight", "resize_mode", "low_vram", "processor_res",
                      "threshold_a", "threshold_b", "guidance_start", "guidance_end", "pixel_perfect",
                      "control_mode"], updates[13:26]))
    assert unit1["enabled"] is True and unit1["module"] == "canny" and unit1["weight"] == 0.6
    assert unit1["model"]["value"] == "None" and unit1["processor_res"] == 384  # a model this install lacks
    assert updates[0] is False  # unit 0 is not in the infotext: switched off


def test_send_to_img2img_pastes_units_from_an_infotext_string(panel):
    text = ('a cube\nSteps: 3, Seed: 7, ControlNet 0: "Module: invert, Model: None, Weight: 0.5, Resize Mode: '
            'Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced"')
    updates = panel.paste_updates(text)
    assert updates[0] is True and updates[1] == "invert" and updates[3] == 0.5
    assert updates[13] is False  # unit 1 is not in the infotext: switched off
    assert all(u == gr.update() for u in panel.paste_updates(""))  # no infotext: nothing changes


def test_png_info_maps_a_known_model_with_another_hash_to_its_title(panel, tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = panel.manager.roots[0]
    save_file({"input_hint_block.0.weight": torch.zeros(1)}, str(folder / "control_v11p_sd15_canny.safetensors"))
    panel.manager.refresh()
    params = {"ControlNet 0": "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1"}
    model = panel.restore_updates(params)[2]
    assert model["value"].startswith("control_v11p_sd15_canny [") and model["value"] != "control_v11p_sd15_canny [d14c016b]"


def test_slider_updates_follow_the_module():
    res, a, b = slider_updates("canny")
    assert res["visible"] and a["label"] == "Canny Low Threshold" and b["value"] == 200
    res, a, b = slider_updates("none")
    assert not res["visible"] and a["value"] == -1
