"""ControlNet files: every layout loads offline with exact weights; probe, names, cache, base check."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.kit import assert_same_weights
from webui.models.controlnet import ControlNetManager, check_compatible, legacy_hash, scan
from webui.models.controlnet_convert import controlnet_to_ldm, ldm_to_diffusers, name_map, strip_ldm
from webui.models.controlnet_probe import load_controlnet, probe_controlnet
from webui.models.errors import ModelLoadError
from webui.settings import Settings


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("form", ["diffusers_dir", "ldm_file", "pth_file", "diffusers_file"])
def test_every_form_loads_with_exact_weights(arch, form, request):
    cn = request.getfixturevalue(f"tiny_controlnet_{arch}")
    loaded = load_controlnet(getattr(cn, form))
    assert_same_weights(cn.load_reference(), loaded.model, f"{arch} {form}")
    assert loaded.model.dtype == torch.float32
    assert loaded.probe.layout == ("ldm" if form in ("ldm_file", "pth_file") else "diffusers")


def test_ldm_names_are_the_ones_a1111_files_use(repo_root):
    """diffusers' own converter (written for released control_v11 files) maps our names back exactly."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    config = json.loads((repo_root / "configs/controlnet-sd15/config.json").read_text())
    with init_empty_weights():
        model = ControlNetModel.from_config(config)
    names = name_map(model)
    assert names["controlnet_cond_embedding.conv_out.weight"] == "input_hint_block.14.weight"
    assert names["controlnet_mid_block.bias"] == "middle_block_out.0.bias"
    assert names["down_blocks.1.attentions.0.proj_in.weight"] == "input_blocks.4.1.proj_in.weight"
    # Tag each tensor with its own index so a swapped name would show.
    ldm = {"control_model." + ldm_name: torch.full((1,), float(i)) for i, ldm_name in enumerate(names.values())}
    converted = convert_controlnet_checkpoint(ldm, config)
    index = {k: i for i, k in enumerate(names)}
    assert set(converted) == set(names)
    assert all(float(converted[k]) == index[k] for k in names)


@pytest.mark.parametrize("family,depths", [("sd15", None), ("sd2", None), ("sdxl", None), ("sdxl", [1, 1, 4])])
def test_probe_by_shapes_picks_family_and_depth(repo_root, family, depths):
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    config = json.loads((repo_root / f"configs/controlnet-{family}/config.json").read_text())
    if depths:
        config["transformer_layers_per_block"] = depths
    with init_empty_weights():
        model = ControlNetModel.from_config(config)
    shapes = {"control_model." + k: tuple(v.shape) for k, v in controlnet_to_ldm(model, prefix="").items()}
    probe = probe_controlnet(repo_root / f"models/ControlNet/x-{family}.safetensors", shapes, repo_root / "configs")
    assert probe.family == family and probe.layout == "ldm" and probe.source == "probe"
    if depths:
        assert probe.config["transformer_layers_per_block"] == depths
    with init_empty_weights():
        rebuilt = ControlNetModel.from_config(probe.config)
    state = strip_ldm({"control_model." + k: v for k, v in controlnet_to_ldm(model, prefix="").items()})
    assert set(ldm_to_diffusers(state, rebuilt)) == set(rebuilt.state_dict())


def test_without_sidecar_a_custom_controlnet_is_refused_with_the_fix(tiny_controlnet_sd15, tmp_path):
    lonely = tmp_path / "custom.safetensors"
    shutil.copy(tiny_controlnet_sd15.ldm_file, lonely)
    with pytest.raises(ModelLoadError, match=r"width 32 matches no SD family.*sidecar"):
        load_controlnet(lonely)


def test_mismatched_sidecar_names_the_tensor(tiny_controlnet_sd15, tiny_controlnet_sdxl, tmp_path):
    wrong = tmp_path / "wrong.safetensors"
    shutil.copy(tiny_controlnet_sd15.ldm_file, wrong)
    (tmp_path / "wrong.config").mkdir()
    shutil.copy(tiny_controlnet_sdxl.diffusers_dir / "config.json", tmp_path / "wrong.config" / "config.json")
    with pytest.raises(ModelLoadError, match=r"wrong.safetensors: .*(missing|shape|no place)"):
        load_controlnet(wrong)


def test_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"input_hint_block.0.weight": torch.zeros(1), "x": Payload()}, bad)
    with pytest.raises(ModelLoadError, match="refused"):
        load_controlnet(bad)


@pytest.mark.parametrize("keys,what", [
    (["lora_controlnet", "input_blocks.1.0.in_layers.2.up"], "Control-LoRA"),
    (["adapter.body.0.resnets.0.block1.weight"], "T2I-Adapter"),
    (["model.diffusion_model.input_blocks.0.0.weight"], "Stable Diffusion checkpoint"),
    (["foo.weight"], "not a ControlNet"),
])
def test_other_files_are_named(tmp_path, keys, what):
    from safetensors.torch import save_file

    path = tmp_path / "thing.safetensors"
    save_file({k: torch.zeros(2) for k in keys}, str(path))
    with pytest.raises(ModelLoadError, match=what):
        load_controlnet(path)


def test_manager_lists_finds_caches_and_checks_base(tiny_controlnet_sd15, tiny_controlnet_sdxl, tiny_sd15,
                                                    tiny_sdxl, tmp_path):
    user, ext = tmp_path / "ControlNet", tmp_path / "extensions" / "sd-webui-controlnet" / "models"
    user.mkdir()
    ext.mkdir(parents=True)
    shutil.copy(tiny_controlnet_sd15.ldm_file, user / "a-sd15.safetensors")
    shutil.copytree(tiny_controlnet_sd15.ldm_file.with_name(tiny_controlnet_sd15.ldm_file.stem + ".config"),
                    user / "a-sd15.config")
    shutil.copytree(tiny_controlnet_sdxl.diffusers_dir, ext / "b-sdxl")
    settings = Settings(path=None)
    manager = ControlNetManager([user, ext], settings, bundled_root=None)
    titles = manager.titles()
    assert titles == [f"a-sd15 [{legacy_hash(user / 'a-sd15.safetensors')}]",
                      f"b-sdxl [{legacy_hash(ext / 'b-sdxl')}]"]
    assert manager.find("a-sd15").stem == "a-sd15"
    assert manager.find("a-sd15 [deadbeef]").stem == "a-sd15"  # a stale hash still finds it
    assert manager.find("None") is None and manager.find("nope") is None
    first = manager.get("a-sd15")
    assert manager.get(titles[0]) is first and manager.loads == 1
    settings.set("control_net_model_cache_size", 1, save=False)
    manager.get("b-sdxl")
    assert manager.cached() == [ext / "b-sdxl"]
    check_compatible(first, tiny_sd15.load_pretrained().unet)
    with pytest.raises(ModelLoadError, match=r"a-sd15 is for .* but .* is SDXL"):
        check_compatible(first, tiny_sdxl.load_pretrained().unet)
    with pytest.raises(ModelLoadError, match="not found"):
        manager.get("missing-model")


def test_bundled_demo_controlnet_is_listed_and_loads(repo_root):
    demo = repo_root / "models" / "ControlNet" / "demo-shapes-canny-scribble.safetensors"
    assert demo.is_file() and demo.stat().st_size <= 20 * 1024 * 1024
    found = scan([repo_root / "models" / "ControlNet"], repo_root / "models" / "ControlNet")
    assert [i.stem for i in found] == ["demo-shapes-canny-scribble"] and found[0].bundled
    loaded = load_controlnet(demo)
    assert loaded.probe.source == "sidecar" and loaded.probe.layout == "ldm"
