"""Build a diffusers pipeline from a checkpoint file or folder, offline, never running pickled code.

- `.safetensors`: header checked and probed first, then diffusers' own
  `<Pipeline>.from_single_file(path, config=<folder>, local_files_only=True)`.
- `.ckpt` / `.pt`: `torch.load(weights_only=True)`; the state dict (unwrapped from "state_dict")
  is fed to the same per-component loader diffusers' `from_single_file` uses internally
  (`load_single_file_sub_model`), since `from_single_file` only accepts a path and writing a
  temporary .safetensors would double the disk traffic.
- diffusers folders: `DiffusionPipeline.from_pretrained(folder, local_files_only=True)`.

The safety checker is never loaded. Every failure becomes a ModelLoadError naming the file.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from webui.models.errors import ModelLoadError
from webui.models.probe import ProbeResult, probe_checkpoint, read_safetensors_header

log = logging.getLogger(__name__)

LEGACY_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
UNSAFE_FLAG = "--disable-safe-unpickle"


def read_legacy_checkpoint(path: Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load a pickled checkpoint's state dict without running code from it (unless allowed).

    A pickle that references anything beyond tensors and plain containers is refused with a
    message naming the offending globals and UNSAFE_FLAG; with the flag it loads with a warning.
    """
    path = Path(path)
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        refused = _unsafe_globals(path, exc)
        if refused is None:
            raise ModelLoadError(f"{path.name}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                                 f"{_first_line(exc)}") from exc
        if not allow_unsafe_pickle:
            raise ModelLoadError(
                f"{path.name}: refused: its pickle needs {', '.join(refused) or 'code outside the tensor allowlist'}, "
                f"which could run arbitrary code when loaded. Convert it to .safetensors, or, only if you "
                f"trust the file, start with {UNSAFE_FLAG}.") from exc
        log.warning("%s: unpickling with %s although it references %s; this runs code from the file",
                    path.name, UNSAFE_FLAG, ", ".join(refused))
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise ModelLoadError(f"{path.name}: could not be unpickled: {_first_line(exc2)}") from exc2
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name}: holds a {type(data).__name__}, not a state dict")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path.name}: contains no tensors")
    return tensors


def _unsafe_globals(path: Path, exc: Exception) -> list[str] | None:
    """The globals that made weights_only refuse the file, or None if it failed for another reason."""
    import pickle

    if not isinstance(exc, pickle.UnpicklingError):
        return None
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) format: fall back to torch's message
        found = re.findall(r"(?:Unsupported global|GLOBAL)\s*:?\s*(?:GLOBAL\s+)?([\w.]+)", str(exc))
        return sorted(set(found))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _scheduler_override(probe: ProbeResult):
    """A scheduler with the probed prediction type when it differs from the config folder's."""
    import diffusers

    folder = probe.config_dir / "scheduler"
    config = json.loads((folder / "scheduler_config.json").read_text())
    if config.get("prediction_type", "epsilon") == probe.prediction_type:
        return None
    cls = getattr(diffusers, config["_class_name"])
    return cls.from_pretrained(str(probe.config_dir), subfolder="scheduler", local_files_only=True,
                               prediction_type=probe.prediction_type)


def _overrides(probe: ProbeResult, vae) -> dict[str, Any]:
    components: dict[str, Any] = {}
    scheduler = _scheduler_override(probe)
    if scheduler is not None:
        components["scheduler"] = scheduler
    if vae is not None:  # a VAE chosen by the user replaces the one baked into the checkpoint
        components["vae"] = vae
    return components


def _from_state_dict(state: dict, probe: ProbeResult, torch_dtype, overrides: dict):
    """Mirror of diffusers' from_single_file component loop, for a state dict already in memory."""
    import diffusers
    from diffusers import pipelines
    from diffusers.loaders.single_file import load_single_file_sub_model

    cls = getattr(diffusers, probe.pipeline_class)
    index = cls.load_config(str(probe.config_dir))
    expected, optional = cls._get_signature_keys(cls)
    kwargs: dict[str, Any] = {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if name in optional:
            kwargs[name] = value
        elif name in overrides:
            kwargs[name] = overrides[name]
        elif isinstance(value, list) and value[0] is not None and name != "safety_checker":
            kwargs[name] = load_single_file_sub_model(
                library_name=value[0], class_name=value[1], name=name, checkpoint=state, pipelines=pipelines,
                is_pipeline_module=hasattr(pipelines, value[0]), cached_model_config_path=str(probe.config_dir),
                local_files_only=True, torch_dtype=torch_dtype)
    for name in expected:
        kwargs.setdefault(name, overrides.get(name))
    if "requires_safety_checker" in optional:
        kwargs["requires_safety_checker"] = False
    return cls(**kwargs)


def _build(path: Path, probe: ProbeResult, torch_dtype, overrides: dict, state: dict | None):
    import diffusers

    if probe.source == "diffusers":
        index = json.loads((path / "model_index.json").read_text())
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        return diffusers.DiffusionPipeline.from_pretrained(str(path), local_files_only=True, dtype=torch_dtype,
                                                           **extra, **overrides)
    if state is not None:
        return _from_state_dict(state, probe, torch_dtype, overrides)
    cls = getattr(diffusers, probe.pipeline_class)
    return cls.from_single_file(str(path), config=str(probe.config_dir), local_files_only=True,
                                dtype=torch_dtype, **overrides)


def load_pipeline(path: Path, configs_dir: Path | None = None, torch_dtype: torch.dtype | None = None,
                  allow_unsafe_pickle: bool = False, vae=None) -> tuple[Any, ProbeResult]:
    """Load a checkpoint file or diffusers folder into a pipeline on the CPU; returns (pipe, probe).

    `vae` (None: use the checkpoint's own) is where the VAE choice plugs in.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    state = None
    if path.is_dir():
        probe = probe_checkpoint(path, configs_dir=configs_dir)
    elif path.suffix.lower() == ".safetensors":
        shapes, metadata = read_safetensors_header(path)  # also rejects truncated / non-safetensors files
        probe = probe_checkpoint(path, shapes, metadata, configs_dir)
    elif path.suffix.lower() in LEGACY_SUFFIXES:
        state = read_legacy_checkpoint(path, allow_unsafe_pickle)
        probe = probe_checkpoint(path, {k: tuple(v.shape) for k, v in state.items()}, {}, configs_dir)
    else:
        raise ModelLoadError(f"{path.name}: unknown checkpoint type (expected .safetensors, .ckpt, .pt or a folder)")
    if not probe.standard:
        raise ModelLoadError(f"{path.name}: {probe.detail}; the shapes differ from the standard "
                             f"{probe.config_dir.name} architecture. If it is a custom architecture, put its "
                             f"diffusers config folder next to it as {path.stem}.config/")
    log.info("loading %s: %s (%s, config %s)", path.name, probe.arch, probe.detail, probe.config_dir)
    try:
        pipe = _build(path, probe, torch_dtype, _overrides(probe, vae), state)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise ModelLoadError(f"{path.name}: out of memory while loading ({_first_line(exc)}); close other "
                             f"programs, lower sd_checkpoints_limit, or use a smaller checkpoint") from exc
    except ModelLoadError:
        raise
    except Exception as exc:  # diffusers/transformers raise many types for mismatched or damaged files
        raise ModelLoadError(f"{path.name}: could not build a {probe.pipeline_class} from it with config "
                             f"{probe.config_dir.name}: {_first_line(exc)}") from exc
    if probe.arch == "sd2" and probe.prediction_type == "epsilon":
        # The SD 2.x config is the 768-v one; epsilon SD 2.x is the 512-base model.
        pipe.unet.register_to_config(sample_size=64)
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    return pipe, probe
