"""Detect the device and turn it into a DevicePolicy: dtype, attention, memory mode, VAE tiling.

`choose_policy` is a pure function of a `DeviceInfo` and the flags, so every rule in the
README's device table is tested with faked devices. `detect` is the only part that asks
torch about the real machine.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import torch

GB = 1024**3
MEDVRAM_LIMIT_GB = 8.0  # at or below: model offload (A1111's --medvram)
LOWVRAM_LIMIT_GB = 4.0  # at or below: sequential offload (A1111's --lowvram)


class DeviceError(RuntimeError):
    """The machine cannot run what the flags ask for (e.g. CUDA expected but absent)."""


@dataclass(frozen=True)
class CudaInfo:
    index: int
    name: str
    capability: tuple[int, int]
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class DeviceInfo:
    """What the machine has, as plain data (tests fake it)."""

    cuda: CudaInfo | None = None
    mps: bool = False
    cpu_cores: int = 1
    ram_bytes: int = 0
    torch_cuda_build: bool = False  # torch was built with CUDA (so a GPU is expected)
    xformers: bool = False


@dataclass(frozen=True)
class PolicyFlags:
    """The flags that bear on placement; parsed args map onto this."""

    use_cpu: bool = False
    device_id: int | None = None
    skip_torch_cuda_test: bool = False
    no_half: bool = False
    no_half_vae: bool = False
    precision: str = "autocast"
    medvram: bool = False
    lowvram: bool = False
    xformers: bool = False
    opt_sdp_attention: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PolicyFlags":
        return cls(use_cpu=args.use_cpu is not None, device_id=args.device_id,
                   skip_torch_cuda_test=args.skip_torch_cuda_test, no_half=args.no_half,
                   no_half_vae=args.no_half_vae, precision=args.precision, medvram=args.medvram,
                   lowvram=args.lowvram, xformers=args.xformers, opt_sdp_attention=args.opt_sdp_attention)


@dataclass(frozen=True)
class DevicePolicy:
    """Where and how models run. The text encoder shares the UNet's dtype (its output feeds the UNet)."""

    device: str
    unet_dtype: torch.dtype
    text_dtype: torch.dtype
    vae_dtype: torch.dtype
    attention: str  # "sdpa" | "xformers"
    memory_mode: str  # "none" | "model-offload" | "sequential-offload"
    vae_tiling: bool
    reasons: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """The one startup line: device, dtype, attention, memory mode, and why."""
        dt = lambda d: str(d).replace("torch.", "")  # noqa: E731
        return (f"Device: {self.device}, dtype: {dt(self.unet_dtype)} (VAE {dt(self.vae_dtype)}), "
                f"attention: {self.attention}, memory: {self.memory_mode}"
                f"{', VAE tiling' if self.vae_tiling else ''} ({'; '.join(self.reasons)})")

    def apply(self, pipe):
        """Place a diffusers pipeline: dtypes, attention processor, offload hooks, VAE tiling.

        Safe to call again after a swap or on a pipeline that was parked on the CPU.
        """
        self.release(pipe)
        for name, dtype in (("unet", self.unet_dtype), ("text_encoder", self.text_dtype),
                            ("text_encoder_2", self.text_dtype), ("vae", self.vae_dtype)):
            module = getattr(pipe, name, None)
            if module is not None and module.dtype != dtype:  # a no-op cast still logs a diffusers warning
                module.to(dtype=dtype)
        self._set_attention(pipe)
        if self.memory_mode == "model-offload":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.memory_mode == "sequential-offload":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            vae.enable_tiling() if self.vae_tiling else vae.disable_tiling()
        return pipe

    def release(self, pipe):
        """Undo placement: remove offload hooks and park the weights in RAM (for the LRU cache)."""
        if getattr(pipe, "_all_hooks", None) or any(hasattr(m, "_hf_hook") for m in _modules(pipe)):
            pipe.remove_all_hooks()
        pipe.to("cpu")
        return pipe

    def _set_attention(self, pipe) -> None:
        if self.attention == "xformers":
            pipe.enable_xformers_memory_efficient_attention()
            return
        from diffusers.models.attention_processor import AttnProcessor2_0

        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None and hasattr(module, "set_attn_processor"):
                module.set_attn_processor(AttnProcessor2_0())


def _modules(pipe):
    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


def _cuda_dtypes(cuda: CudaInfo, reasons: list[str]) -> tuple[torch.dtype, torch.dtype]:
    """UNet/text and VAE dtypes for a CUDA card by its generation."""
    major = cuda.capability[0]
    if "GTX 16" in cuda.name:
        reasons.append(f"{cuda.name} produces NaNs in float16, so float32")
        return torch.float32, torch.float32
    if major >= 8:
        reasons.append(f"compute capability {major}.{cuda.capability[1]} has fast float16 and bfloat16; "
                       "VAE in bfloat16 avoids float16 overflow without a float32 upcast")
        return torch.float16, torch.bfloat16
    if major >= 7:
        reasons.append(f"compute capability {major}.{cuda.capability[1]}: float16 (tensor cores)")
        return torch.float16, torch.float16
    if major >= 6:
        reasons.append(f"compute capability {major}.{cuda.capability[1]}: float16 halves memory; "
                       "VAE in float32 against black images")
        return torch.float16, torch.float32
    reasons.append(f"compute capability {major}.{cuda.capability[1]} lacks usable float16, so float32")
    return torch.float32, torch.float32


def choose_policy(info: DeviceInfo, flags: PolicyFlags = PolicyFlags()) -> DevicePolicy:
    """Apply the README's device table to a machine and the user's flags (flags always win)."""
    reasons: list[str] = []
    cuda_expected = info.torch_cuda_build or flags.device_id is not None
    if flags.use_cpu:
        device, reasons = "cpu", ["--use-cpu"]
    elif info.cuda is not None:
        device = f"cuda:{info.cuda.index}"
    elif cuda_expected and not info.mps:
        if not flags.skip_torch_cuda_test:
            raise DeviceError("Torch is not able to use the GPU: CUDA is expected (a CUDA build of torch"
                              f"{' and --device-id' if flags.device_id is not None else ''}) but no CUDA device "
                              "was found. Check the NVIDIA driver, or add --skip-torch-cuda-test to run on the CPU.")
        device, reasons = "cpu", ["no CUDA device; --skip-torch-cuda-test falls back to the CPU"]
    elif info.mps:
        device = "mps"
    else:
        device = "cpu"

    if device == "cpu":
        unet_dtype = vae_dtype = torch.float32
        reasons.append("CPU: float32 (half precision is slow or unsupported on CPUs)")
    elif device == "mps":
        unet_dtype, vae_dtype = torch.float16, torch.float32
        reasons.append("Apple MPS: float16, VAE in float32 against black images")
    else:
        unet_dtype, vae_dtype = _cuda_dtypes(info.cuda, reasons)

    if flags.no_half or flags.precision == "full":
        unet_dtype = vae_dtype = torch.float32
        reasons.append("--no-half" if flags.no_half else "--precision full")
    elif flags.precision == "half" and device != "cpu":
        unet_dtype = vae_dtype = torch.float16
        reasons.append("--precision half")
    if flags.no_half_vae:
        vae_dtype = torch.float32
        reasons.append("--no-half-vae")

    attention = "sdpa"
    if flags.xformers:
        if info.xformers and device.startswith("cuda"):
            attention = "xformers"
            reasons.append("--xformers")
        else:
            reasons.append("--xformers given but xformers is not usable here, so SDPA")

    memory_mode, tiling = "none", False
    if device.startswith("cuda"):
        vram_gb = info.cuda.total_bytes / GB
        if flags.lowvram or (vram_gb <= LOWVRAM_LIMIT_GB and not flags.medvram):
            memory_mode, tiling = "sequential-offload", True
            reasons.append("--lowvram" if flags.lowvram else f"{vram_gb:.0f} GB VRAM <= {LOWVRAM_LIMIT_GB:.0f} GB")
        elif flags.medvram or vram_gb <= MEDVRAM_LIMIT_GB:
            memory_mode, tiling = "model-offload", True
            reasons.append("--medvram" if flags.medvram else f"{vram_gb:.0f} GB VRAM <= {MEDVRAM_LIMIT_GB:.0f} GB")
    elif flags.medvram or flags.lowvram:
        reasons.append("--medvram/--lowvram ignored: models already live in system memory")

    return DevicePolicy(device=device, unet_dtype=unet_dtype, text_dtype=unet_dtype, vae_dtype=vae_dtype,
                        attention=attention, memory_mode=memory_mode, vae_tiling=tiling, reasons=tuple(reasons))


def detect(device_id: int | None = None) -> DeviceInfo:
    """Ask torch (and the OS) what this machine has."""
    import psutil

    cuda = None
    if torch.cuda.is_available():
        index = device_id if device_id is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        cuda = CudaInfo(index=index, name=props.name, capability=(props.major, props.minor),
                        total_bytes=total, free_bytes=free)
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    try:
        import xformers  # noqa: F401

        has_xformers = True
    except ImportError:
        has_xformers = False
    return DeviceInfo(cuda=cuda, mps=mps, cpu_cores=os.cpu_count() or 1, ram_bytes=psutil.virtual_memory().total,
                      torch_cuda_build=torch.version.cuda is not None, xformers=has_xformers)
