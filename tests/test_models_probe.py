"""Probe: classify checkpoints from safetensors headers (fake ones with real widths, and the tiny kit)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from webui.models.errors import ModelLoadError
from webui.models.probe import classify, probe_checkpoint, read_safetensors_header, sidecar_for

UNET = "model.diffusion_model."
TO_K = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def fake_checkpoint(path: Path, family: str, in_channels: int = 4, width: int | None = None,
                    text_encoder: bool = True, extra: dict | None = None, metadata: dict | None = None) -> Path:
    """A header-realistic checkpoint: right key names and the dims the probe reads, tiny elsewhere."""
    widths = {"sd15": 768, "sd2": 1024, "sdxl": 2048, "sdxl-refiner": 1280}
    channels = 384 if family == "sdxl-refiner" else 320
    tensors = {
        UNET + "input_blocks.0.0.weight": torch.zeros(channels, in_channels, 1, 1, dtype=torch.float16),
        TO_K: torch.zeros(4, width or widths[family], dtype=torch.float16),
        "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 4, 1, 1, dtype=torch.float16),
    }
    if family in ("sdxl", "sdxl-refiner"):
        tensors[UNET + "label_emb.0.0.weight"] = torch.zeros(4, 2816 if family == "sdxl" else 2560,
                                                             dtype=torch.float16)
    if text_encoder:
        prefix = {"sd15": "cond_stage_model.transformer.text_model.", "sd2": "cond_stage_model.model.",
                  "sdxl": "conditioner.embedders.1.model.", "sdxl-refiner": "conditioner.embedders.0.model."}[family]
        tensors[prefix + "ln_final.weight"] = torch.zeros(4, dtype=torch.float16)
        if family == "sdxl":
            tensors["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = torch.zeros(4)
    tensors.update(extra or {})
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("family, in_channels, arch, folder, prediction", [
    ("sd15", 4, "sd15", "sd15", "epsilon"),
    ("sd15", 9, "sd15-inpaint", "sd15-inpaint", "epsilon"),
    ("sd2", 4, "sd2", "sd2-v", "v_prediction"),
    ("sdxl", 4, "sdxl", "sdxl", "epsilon"),
    ("sdxl-refiner", 4, "sdxl-refiner", "sdxl-refiner", "epsilon"),
])
def test_fake_headers_are_classified(tmp_path, repo_root, family, in_channels, arch, folder, prediction):
    path = fake_checkpoint(tmp_path / f"{family}.safetensors", family, in_channels)
    result = probe_checkpoint(path)
    assert (result.arch, result.config_dir.name, result.prediction_type) == (arch, folder, prediction)
    assert result.standard and result.source == "probe"
    assert result.config_dir == repo_root / "configs" / folder
    unet = json.loads((result.config_dir / "unet" / "config.json").read_text())
    assert unet["in_channels"] == in_channels  # the chosen config really builds this UNet


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl", "sdxl-refiner"])
def test_width_alone_decides_without_text_encoder(tmp_path, family):
    path = fake_checkpoint(tmp_path / "bare.safetensors", family, text_encoder=False)
    assert probe_checkpoint(path).arch == family


def test_sd2_prediction_hints(tmp_path):
    base = fake_checkpoint(tmp_path / "v2-1_512-ema-pruned.safetensors", "sd2")
    assert probe_checkpoint(base).prediction_type == "epsilon"
    yaml_v = fake_checkpoint(tmp_path / "mine.safetensors", "sd2")
    yaml_v.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: \"v\"\n")
    assert probe_checkpoint(yaml_v).prediction_type == "v_prediction"
    yaml_eps = fake_checkpoint(tmp_path / "other_512.safetensors", "sd2")
    yaml_eps.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert probe_checkpoint(yaml_eps).prediction_type == "epsilon"
    spec = fake_checkpoint(tmp_path / "spec.safetensors", "sd2",
                           metadata={"modelspec.architecture": "stable-diffusion-v2-512"})
    assert probe_checkpoint(spec).prediction_type == "epsilon"


def test_v_pred_marker_and_metadata_on_sdxl(tmp_path):
    marked = fake_checkpoint(tmp_path / "noob.safetensors", "sdxl", extra={"v_pred": torch.zeros(0)})
    assert probe_checkpoint(marked).prediction_type == "v_prediction"
    spec = fake_checkpoint(tmp_path / "spec.safetensors", "sdxl", metadata={"modelspec.prediction_type": "v"})
    assert probe_checkpoint(spec).prediction_type == "v_prediction"


@pytest.mark.parametrize("family, message", [("sdxl", "SDXL inpainting"), ("sd2", "SD 2.x inpainting")])
def test_unsupported_inpainting_is_refused(tmp_path, family, message):
    path = fake_checkpoint(tmp_path / "inpaint.safetensors", family, in_channels=9)
    with pytest.raises(ModelLoadError, match=message):
        probe_checkpoint(path)


def test_mixed_architecture_is_refused(tmp_path):
    path = fake_checkpoint(tmp_path / "mixed.safetensors", "sd15", width=1024)
    with pytest.raises(ModelLoadError, match="SD 1.x but the cross-attention width is 1024"):
        probe_checkpoint(path)


@pytest.mark.parametrize("tensors, what", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320),
      "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": ()}, "LoRA"),
    ({"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_out.weight": (3, 128, 3, 3)}, "VAE only"),
    ({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": (4, 4)}, "Flux"),
    ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4, 4)}, "SD3"),
    ({"weights_a": (3, 3), "weights_b": (5,)}, "not a Stable Diffusion checkpoint"),
])
def test_non_checkpoints_name_what_was_found(tmp_path, tensors, what):
    path = tmp_path / "thing.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
    with pytest.raises(ModelLoadError) as err:
        probe_checkpoint(path)
    text = str(err.value)
    assert what in text and "no UNet keys (model.diffusion_model." in text and "first keys:" in text
    assert sorted(tensors)[0] in text


def test_damaged_files_give_clear_errors(tmp_path, tiny_sd15):
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(tiny_sd15.single_file.read_bytes()[:1_000_000])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_safetensors_header(truncated)
    text = tmp_path / "notes.safetensors"
    text.write_text("these are my prompt notes, not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        read_safetensors_header(text)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        probe_checkpoint(empty)


def test_tiny_fixtures_without_sidecar_still_tell_their_family(tiny_sd15, tiny_sdxl):
    for model, family in ((tiny_sd15, "sd15"), (tiny_sdxl, "sdxl")):
        result = probe_checkpoint(model.single_file, use_sidecar=False)
        assert result.arch == family and result.source == "probe"
        assert not result.standard  # tiny widths: the real config would not fit, the loader says so


def test_sidecar_and_diffusers_folder_win(tiny_sd15, tiny_sdxl, tmp_path):
    for model, family, cls in ((tiny_sd15, "sd15", "StableDiffusionPipeline"),
                               (tiny_sdxl, "sdxl", "StableDiffusionXLPipeline")):
        assert sidecar_for(model.single_file) == model.config_dir
        side = probe_checkpoint(model.single_file)
        assert (side.arch, side.source, side.config_dir, side.pipeline_class) == (family, "sidecar", model.config_dir, cls)
        folder = probe_checkpoint(model.diffusers_dir)
        assert (folder.arch, folder.source, folder.config_dir) == (family, "diffusers", model.diffusers_dir)
    # A sidecar decides even for a file whose keys say otherwise (here: no UNet at all).
    lora = tmp_path / "odd.safetensors"
    save_file({"lora_te_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    shutil.copytree(tiny_sd15.config_dir, tmp_path / "odd.config")
    assert probe_checkpoint(lora).source == "sidecar"


def test_classify_works_on_plain_shapes(repo_root):
    shapes = {UNET + "input_blocks.0.0.weight": (320, 9, 3, 3), TO_K: (320, 768),
              "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)}
    result = classify(shapes)
    assert result.arch == "sd15-inpaint" and result.config_dir == repo_root / "configs" / "sd15-inpaint"
