"""The demo ControlNet through the project's real path (GenerationRequest -> job queue -> core.generate).

Used by ``bench/eval_controlnet.py``: ``core_generate(model, controlnet)`` returns
``generate(prompt, control_image, weight, seed) -> PIL.Image`` (weight None: no unit).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def core_generate(model: str, controlnet: str, sampler: str = "DPM++ 2M", steps: int = 20, cfg: float = 7.0,
                  size: int = 64, module: str = "none"):
    """A generate function over a fresh AppContext holding the checkpoint and the ControlNet folder."""
    from webui.context import context_from_flags
    from webui.generation.controlnet import ControlNetUnit
    from webui.generation.request import GenerationRequest

    model_path, cn_path = Path(model).resolve(), Path(controlnet).resolve()
    ctx = context_from_flags(["--data-dir", tempfile.mkdtemp(prefix="eval-cn-"), "--ckpt-dir", str(model_path.parent),
                              "--ckpt", str(model_path), "--controlnet-dir", str(cn_path.parent)],
                             {"live_previews_enable": False})

    def generate(prompt: str, control: Image.Image | None, weight: float | None, seed: int) -> Image.Image:
        units = [] if control is None else [ControlNetUnit(module=module, model=cn_path.stem, weight=weight,
                                                           image=np.asarray(control.convert("RGB")),
                                                           resize_mode="Just Resize")]
        request = GenerationRequest(prompt=prompt, seed=seed, steps=steps, cfg_scale=cfg, width=size, height=size,
                                    sampler_name=sampler, save_images=False, controlnet_units=units)
        return ctx.queue.run(request).images[0]

    return generate
