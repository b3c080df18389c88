"""Pipelines derived from the loaded checkpoint, one per (model, kind), and THE pipeline call.

A checkpoint is loaded once as one diffusers pipeline (txt2img for ordinary checkpoints,
inpaint for 9-channel ones). img2img, inpaint and ControlNet variants are built from its
components with the plain constructor, so every variant shares the same module objects:
no weights are copied and no dtype changes. (``DiffusionPipeline.from_pipe`` would cast
the shared modules to float32 in diffusers 0.42, silently flattening an fp16 UNet.)

The img2img and inpaint variants are small subclasses whose ``prepare_latents`` takes the
noise the core drew (per-image seeds, variation seeds, noise multiplier) and the init
latents the core encoded, instead of drawing and encoding their own; everything else is
the diffusers pipeline as shipped.

``call`` is the one place in the project that calls a pipeline.
"""
from __future__ import annotations

import functools
import inspect
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

KINDS = ("txt2img", "img2img", "inpaint")

# (family, kind, with ControlNet) -> diffusers class name
_CLASSES = {
    ("sd", "txt2img", False): "StableDiffusionPipeline",
    ("sd", "img2img", False): "StableDiffusionImg2ImgPipeline",
    ("sd", "inpaint", False): "StableDiffusionInpaintPipeline",
    ("sdxl", "txt2img", False): "StableDiffusionXLPipeline",
    ("sdxl", "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint", False): "StableDiffusionXLInpaintPipeline",
    ("sd", "txt2img", True): "StableDiffusionControlNetPipeline",
    ("sd", "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd", "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}


@dataclass
class GivenLatents:
    """What the core hands ``prepare_latents`` for one call.

    ``noise``: [B, C, h, w] initial noise. ``init``: [B, C, h, w] scaled init latents, or None
    for pure noise (txt2img through an inpaint pipeline, i.e. a 9-channel checkpoint).
    """

    noise: torch.Tensor
    init: torch.Tensor | None = None


class _GivenLatentsMixin:
    """prepare_latents from the core's noise and init latents (img2img- and inpaint-style signatures)."""

    _webui_given: GivenLatents | None = None

    def prepare_latents(self, *args, **kwargs):
        given = self._webui_given
        parent = super().prepare_latents
        if given is None:
            return parent(*args, **kwargs)
        bound = inspect.signature(parent).bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        device, dtype = a["device"], a["dtype"]
        noise = given.noise.to(device=device, dtype=dtype)
        init = None if given.init is None else given.init.to(device=device, dtype=dtype)
        if init is None:
            latents = noise * self.scheduler.init_noise_sigma
        elif a.get("add_noise", True):
            # Always noised, also at strength 1: A1111's img2img at denoising 1 keeps a trace of the image.
            latents = self.scheduler.add_noise(init, noise, a["timestep"])
        else:
            latents = init
        if "num_channels_latents" not in a:  # img2img signature: returns the latents only
            return latents
        out = (latents,)
        if a.get("return_noise"):
            out += (noise,)
        if a.get("return_image_latents"):
            out += (init if init is not None else torch.zeros_like(noise),)
        return out


def family(pipe) -> str:
    """'sdxl' for pipelines with two text encoders (or the refiner's second only), else 'sd'."""
    return "sdxl" if "text_encoder_2" in pipe.components else "sd"


def unet_channels(pipe) -> int:
    return int(pipe.unet.config.in_channels)


def effective_kind(pipe, mode: str) -> str:
    """The pipeline kind a request mode runs on ``pipe``.

    9-channel UNets run every mode through the inpaint pipeline (it feeds them mask + masked
    image). 4-channel UNets inpaint through the img2img pipeline plus the core's per-step
    latent blend, as A1111 does; diffusers' own 4-channel inpaint path binarises the mask and
    blends differently.
    """
    if mode not in KINDS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(KINDS)}")
    if unet_channels(pipe) == 9:
        return "inpaint"
    return "img2img" if mode == "inpaint" else mode


def pipeline_class(pipe, kind: str, controlnet: bool = False):
    """The diffusers class for ``kind`` on ``pipe``'s architecture (ours, with given latents, for img2img/inpaint)."""
    import diffusers

    name = _CLASSES.get((family(pipe), kind, controlnet))
    if name is None:
        raise ValueError(f"no {kind} pipeline for {family(pipe)}{' with ControlNet' if controlnet else ''}")
    cls = getattr(diffusers, name)
    if kind == "txt2img":
        return cls  # takes latents= itself
    return _given_latents_class(cls)


@functools.cache  # a memo, not state: one subclass object per diffusers class
def _given_latents_class(cls):
    return type(f"WebUI{cls.__name__}", (_GivenLatentsMixin, cls), {"__module__": __name__})


def _build(base, cls, extra: dict[str, Any]):
    expected, optional = cls._get_signature_keys(cls)
    components = {k: v for k, v in base.components.items() if k in expected}
    components.update({k: v for k, v in extra.items() if k in expected})
    for name in expected:
        components.setdefault(name, None)
    flags = {k: base.config[k] for k in optional if k in base.config}
    if "requires_safety_checker" in optional:
        flags["requires_safety_checker"] = False
    if "add_watermarker" in optional:
        flags["add_watermarker"] = False  # we decode ourselves; never stamp a watermark
    pipe = cls(**components, **flags)
    pipe.set_progress_bar_config(disable=True)  # progress goes to the job's Progress object
    return pipe


class PipelineCache:
    """Derived pipelines per (loaded pipeline, kind, extra components); one instance per app.

    Keyed weakly on the loaded pipeline, so an evicted checkpoint's variants go with it. A
    variant whose shared modules no longer match the base (a VAE swapped in, say) is rebuilt.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.builds = 0  # for tests: how many variants were constructed

    def get(self, base, kind: str, extra: dict[str, Any] | None = None):
        """The pipeline of ``kind`` sharing ``base``'s modules (+ ``extra`` components such as controlnet)."""
        extra = dict(extra or {})
        cls = pipeline_class(base, kind, controlnet="controlnet" in extra)
        if type(base) is cls and not extra:
            return base
        key = (kind, tuple(sorted((k, id(v)) for k, v in extra.items())))
        with self._lock:
            variants = self._cache.setdefault(base, {})
            pipe = variants.get(key)
            if pipe is None or not _same_modules(base, pipe, extra):
                pipe = _build(base, cls, extra)
                variants[key] = pipe
                self.builds += 1
            return pipe


def _same_modules(base, derived, extra) -> bool:
    derived_components = derived.components
    for name, module in base.components.items():
        if name == "scheduler" or name not in derived_components:
            continue
        if derived_components[name] is not extra.get(name, module):
            return False
    return True


def call(pipe, given: GivenLatents | None = None, **kwargs):
    """THE pipeline call of the project. ``given`` feeds our noise/init latents to img2img/inpaint variants."""
    if given is not None:
        if not isinstance(pipe, _GivenLatentsMixin):
            raise TypeError(f"{type(pipe).__name__} cannot take given latents")
        pipe._webui_given = given
    try:
        return pipe(**kwargs)
    finally:
        if given is not None:
            pipe._webui_given = None
