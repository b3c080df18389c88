"""The denoising objective shared by the LoRA and textual-inversion trainers.

Prompts are encoded the way generation encodes them (``webui.generation.conditioning``):
SD 1.x/2.x take the last hidden state (or ``clip_skip``'s layer) through the final layer
norm; SDXL concatenates both encoders' penultimate layers and pools from the second. The
training and inference embeddings must match, or a LoRA learns a shift it never sees at
generation time.

Randomness (noise, timesteps) comes from a CPU generator the caller seeds per step, so a
resumed run draws exactly the same numbers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass
class Precision:
    """The autocast dtype chosen for a device (None: plain float32) and why."""

    dtype: torch.dtype | None
    note: str = ""

    @property
    def label(self) -> str:
        return {None: "no", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]


def choose_precision(wanted: str, device: torch.device) -> Precision:
    """Mixed precision runs on CUDA only; bf16 falls back to fp16 where the GPU lacks it."""
    if wanted not in MIXED_PRECISION:
        raise ValueError(f"mixed precision must be one of {', '.join(MIXED_PRECISION)}, got {wanted!r}")
    if device.type != "cuda":
        note = "" if wanted in ("auto", "no") else f"mixed precision {wanted} needs a CUDA GPU: training in float32"
        return Precision(None, note)
    if wanted == "no":
        return Precision(None)
    if wanted in ("auto", "bf16"):
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16)
        note = "" if wanted == "auto" else "this GPU does not support bf16: training with fp16 mixed precision instead"
        return Precision(torch.float16, note)
    return Precision(torch.float16)


class TextEncoding:
    """Captions -> (hidden states, pooled or None), with gradients when an encoder is trained.

    ``token_hook(ids)`` may rewrite token ids before encoding and is where textual inversion
    swaps in its vectors (see ``webui.training.embedding``).
    """

    def __init__(self, pipe, arch: str, clip_skip: int = 1):
        self.arch = arch
        self.clip_skip = max(1, int(clip_skip))
        if arch == "sdxl":
            self.pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
        else:
            self.pairs = [(pipe.tokenizer, pipe.text_encoder)]

    def token_ids(self, tokenizer, captions: list[str], device) -> torch.Tensor:
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return ids.to(device)

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        states, pooled = [], None
        for tokenizer, encoder in self.pairs:
            ids = self.token_ids(tokenizer, captions, encoder.device)
            out = encoder(ids, output_hidden_states=True)
            if self.arch == "sdxl":
                states.append(out.hidden_states[-2])
                pooled = getattr(out, "text_embeds", None)
            elif self.clip_skip == 1:
                states.append(out.last_hidden_state)
            else:
                norm = getattr(encoder, "text_model", encoder).final_layer_norm
                states.append(norm(out.hidden_states[-self.clip_skip]))
        return torch.cat(states, dim=-1), pooled


class Objective:
    """Noise a batch of latents, predict with the UNet, return the (min-SNR weighted) MSE."""

    def __init__(self, unet, noise_scheduler, prediction_type: str = "epsilon", noise_offset: float = 0.0,
                 min_snr_gamma: float = 0.0, precision: Precision | None = None):
        self.unet = unet
        self.scheduler = noise_scheduler
        self.prediction_type = prediction_type
        self.noise_offset = float(noise_offset)
        self.min_snr_gamma = float(min_snr_gamma)
        self.precision = precision or Precision(None)
        alphas = noise_scheduler.alphas_cumprod.float()
        self.snr = alphas / (1 - alphas)
        self.num_timesteps = int(noise_scheduler.config.num_train_timesteps)

    def autocast(self):
        """The autocast context for the forward passes (a no-op without mixed precision)."""
        if self.precision.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.unet.device.type, dtype=self.precision.dtype)

    def loss(self, latents: torch.Tensor, encode: Callable[[], tuple[torch.Tensor, torch.Tensor | None]],
             generator: torch.Generator, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        """One micro-batch's loss. ``encode`` runs inside autocast so the text encoder shares it."""
        device = self.unet.device
        shape = latents.shape
        noise = torch.randn(shape, generator=generator)
        if self.noise_offset:
            # Offset noise (Guttenberg 2023): lets the model shift a whole channel, i.e. overall brightness.
            noise = noise + self.noise_offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
        timesteps = torch.randint(0, self.num_timesteps, (shape[0],), generator=generator)
        latents = latents.to(device, torch.float32)
        noise = noise.to(device)
        t = timesteps.to(device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        with self.autocast():
            cond, pooled = encode()
            kwargs = {}
            if pooled is not None and time_ids is not None:
                kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids.to(device)}
            dtype = self.unet.dtype if self.precision.dtype is None else noisy.dtype
            pred = self.unet(noisy.to(dtype), t, cond.to(dtype), **kwargs).sample
        if self.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.min_snr_gamma > 0:
            # Min-SNR-gamma (Hang et al. 2023): cap the weight of low-noise steps; v-prediction divides by snr+1.
            snr = self.snr[timesteps].to(device)
            clipped = torch.clamp(snr, max=self.min_snr_gamma)
            per_sample = per_sample * (clipped / (snr + 1 if self.prediction_type == "v_prediction" else snr))
        return per_sample.mean()


def noise_scheduler_for(scheduler_config: dict):
    """A DDPM scheduler with the checkpoint's own betas (the sampler in the UI may differ)."""
    from diffusers import DDPMScheduler

    keep = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    sched = DDPMScheduler.from_config(keep)
    return sched


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Pixels in [-1, 1] -> scaled latents (a seeded sample of the posterior, as kohya caches)."""
    dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    if generator is None:
        z = dist.mean
    else:
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=generator).to(dist.mean.device,
                                                                                           dist.mean.dtype)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((z - shift) * vae.config.scaling_factor).float().cpu()


def sdxl_time_ids(original: tuple[int, int], crop: tuple[int, int], target: tuple[int, int]) -> list[float]:
    """SDXL's micro-conditioning: original (h, w), crop (top, left), target (h, w)."""
    return [float(original[1]), float(original[0]), float(crop[0]), float(crop[1]), float(target[1]),
            float(target[0])]
