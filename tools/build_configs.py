"""Write the offline diffusers-layout config folders in configs/ (no weights).

Single-file checkpoints are loaded with `from_single_file(path, config=configs/<arch>)`, so
these folders replace the hub repositories diffusers would otherwise fetch. The numbers
are the published architectures of SD 1.5, SD 2.1 (768-v), SDXL base/refiner and SD 1.5
inpainting. Rerun after editing; the output is committed.

    python tools/build_configs.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TOKENIZERS = CONFIGS / "tokenizers"

BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def clip_text(hidden, layers, heads, inner, act, proj, cls="CLIPTextModel", pad_token_id=1):
    return {"architectures": [cls], "model_type": "clip_text_model", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": inner,
            "hidden_act": act, "projection_dim": proj, "max_position_embeddings": 77, "vocab_size": 49408,
            "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0, "initializer_factor": 1.0,
            "initializer_range": 0.02, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": pad_token_id,
            "torch_dtype": "float32"}


CLIP_L = clip_text(768, 12, 12, 3072, "quick_gelu", 768)
OPEN_CLIP_H = clip_text(1024, 23, 16, 4096, "gelu", 512)  # SD 2.x uses the penultimate layer: 23 of 24
OPEN_CLIP_BIGG = clip_text(1280, 32, 20, 5120, "gelu", 1280, cls="CLIPTextModelWithProjection")


def vae(sample_size, scaling, force_upcast=False):
    return {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
            "act_fn": "silu", "sample_size": sample_size, "scaling_factor": scaling, "force_upcast": force_upcast,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}


def unet_sd(sample_size, cross, heads, in_channels=4, linear=False):
    return {"_class_name": "UNet2DConditionModel", "sample_size": sample_size, "in_channels": in_channels,
            "out_channels": 4, "layers_per_block": 2, "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "cross_attention_dim": cross, "attention_head_dim": heads, "use_linear_projection": linear,
            "norm_num_groups": 32, "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0,
            "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu", "norm_eps": 1e-5}


def unet_xl(refiner=False):
    if refiner:
        blocks, heads, layers, cross, proj = [384, 768, 1536, 1536], [6, 12, 24, 24], 4, 1280, 2560
        down = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
        up = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    else:
        blocks, heads, layers, cross, proj = [320, 640, 1280], [5, 10, 20], [1, 2, 10], 2048, 2816
        down = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
        up = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    return {"_class_name": "UNet2DConditionModel", "sample_size": 128, "in_channels": 4, "out_channels": 4,
            "layers_per_block": 2, "block_out_channels": blocks, "down_block_types": down, "up_block_types": up,
            "attention_head_dim": heads, "transformer_layers_per_block": layers, "cross_attention_dim": cross,
            "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": proj, "norm_num_groups": 32, "flip_sin_to_cos": True,
            "freq_shift": 0, "act_fn": "silu", "norm_eps": 1e-5}


def scheduler(cls, **extra):
    return {"_class_name": cls, **BETAS, "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False,
            "prediction_type": "epsilon", "timestep_spacing": "leading", **extra}


SD_COMPONENTS = {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                 "safety_checker": [None, None], "feature_extractor": [None, None], "image_encoder": [None, None]}
XL_COMPONENTS = {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                 "vae": ["diffusers", "AutoencoderKL"], "image_encoder": [None, None], "feature_extractor": [None, None]}

ARCHS = {
    "sd15": {"_class_name": "StableDiffusionPipeline", **SD_COMPONENTS, "requires_safety_checker": False,
             "scheduler": ["diffusers", "PNDMScheduler"],
             "parts": {"unet": unet_sd(64, 768, 8), "vae": vae(512, 0.18215), "text_encoder": CLIP_L,
                       "scheduler": scheduler("PNDMScheduler", skip_prk_steps=True), "tokenizer": "clip"}},
    "sd15-inpaint": {"_class_name": "StableDiffusionInpaintPipeline", **SD_COMPONENTS,
                     "requires_safety_checker": False, "scheduler": ["diffusers", "PNDMScheduler"],
                     "parts": {"unet": unet_sd(64, 768, 8, in_channels=9), "vae": vae(512, 0.18215),
                               "text_encoder": CLIP_L, "scheduler": scheduler("PNDMScheduler", skip_prk_steps=True),
                               "tokenizer": "clip"}},
    "sd2-v": {"_class_name": "StableDiffusionPipeline", **SD_COMPONENTS, "requires_safety_checker": False,
              "scheduler": ["diffusers", "DDIMScheduler"],
              "parts": {"unet": unet_sd(96, 1024, [5, 10, 20, 20], linear=True), "vae": vae(768, 0.18215),
                        "text_encoder": OPEN_CLIP_H,
                        "scheduler": scheduler("DDIMScheduler", prediction_type="v_prediction"),
                        "tokenizer": "clip-pad-bang"}},
    "sdxl": {"_class_name": "StableDiffusionXLPipeline", **XL_COMPONENTS, "force_zeros_for_empty_prompt": True,
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "parts": {"unet": unet_xl(), "vae": vae(1024, 0.13025, force_upcast=True), "text_encoder": CLIP_L,
                       "text_encoder_2": OPEN_CLIP_BIGG, "scheduler": scheduler("EulerDiscreteScheduler"),
                       "tokenizer": "clip", "tokenizer_2": "clip-pad-bang"}},
    "sdxl-refiner": {"_class_name": "StableDiffusionXLImg2ImgPipeline",
                     **{k: v for k, v in XL_COMPONENTS.items() if k not in ("text_encoder", "tokenizer")},
                     "text_encoder": [None, None], "tokenizer": [None, None],
                     "requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False,
                     "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                     "parts": {"unet": unet_xl(refiner=True), "vae": vae(1024, 0.13025, force_upcast=True),
                               "text_encoder_2": OPEN_CLIP_BIGG, "scheduler": scheduler("EulerDiscreteScheduler"),
                               "tokenizer_2": "clip-pad-bang"}},
}


def write_arch(name: str, spec: dict) -> None:
    folder = CONFIGS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    parts = spec["parts"]
    index = {k: v for k, v in spec.items() if k != "parts"}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    for part, cfg in parts.items():
        sub = folder / part
        if isinstance(cfg, str):  # a tokenizer: copy the generated files (git stores identical blobs once)
            shutil.copytree(TOKENIZERS / cfg, sub)
            continue
        sub.mkdir()
        filename = "scheduler_config.json" if part == "scheduler" else "config.json"
        (sub / filename).write_text(json.dumps(cfg, indent=2) + "\n")


def main() -> None:
    for name, spec in ARCHS.items():
        write_arch(name, spec)
        print("wrote", CONFIGS / name)


if __name__ == "__main__":
    main()
