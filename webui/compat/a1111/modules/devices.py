"""``modules.devices``: the device and dtype the app runs on (read from the app's DevicePolicy)."""
from __future__ import annotations

import gc

import torch

from webui.compat.a1111 import active


def _policy():
    ctx = active.bridge().host.ctx
    return ctx.policy if ctx is not None else None


def __getattr__(name):
    policy = _policy()
    if name == "device":
        return torch.device(policy.device) if policy else torch.device("cpu")
    if name in ("dtype", "dtype_unet"):
        return policy.unet_dtype if policy else torch.float32
    if name == "dtype_vae":
        return getattr(policy, "vae_dtype", torch.float32) if policy else torch.float32
    if name == "cpu":
        return torch.device("cpu")
    raise AttributeError(f"modules.devices.{name} is not available here")


def torch_gc() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def get_optimal_device():
    return __getattr__("device")
