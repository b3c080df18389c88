"""Typed options with defaults, persisted to config.json in the data dir.

Keys use A1111's option names where A1111 has one, so its config.json and the
`/sdapi/v1/options` API read the same. Unknown keys in the file are kept and written
back untouched (another tool or a later version may own them).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.userfiles import is_valid_text, read_json_object, write_json_atomic


class SettingsError(ValueError):
    """A value was refused; the message says which key and why."""


class SettingsNotSaved(SettingsError):
    """Changes were refused because config.json cannot be written without destroying the user's file."""


def _show(value: Any) -> str:
    """A short repr for messages: a 50 MB string or a 5000-digit int must not end up in a reply."""
    try:
        text = repr(value)
    except ValueError:  # ints past Python's digit limit have no repr
        return f"a {value.bit_length()}-bit number"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Option:
    """One setting: its type, default, bounds or choices, and where the UI shows it."""

    key: str
    default: Any
    label: str
    section: str = "General"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    is_path: bool = False  # a folder the app writes to: API changes are confined (webui.security.paths)

    @property
    def is_output_folder(self) -> bool:
        """A folder images are written to: marked `is_path`, or named `outdir_*` as all of A1111's are."""
        return self.is_path or self.key.startswith("outdir_")

    def check(self, value: Any) -> Any:
        """Return the value coerced to this option's type, or raise SettingsError."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{self.key}: expected true or false, got {_show(value)}")
        elif kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(f"{self.key}: expected a number, got {_show(value)}")
            # NaN passes every min/max comparison and int(inf) raises: refuse both before anything else.
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{self.key}: expected a finite number, got {_show(value)}")
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise SettingsError(f"{self.key}: expected a whole number, got {_show(value)}")
            try:
                value = kind(value)
            except OverflowError:  # an int with hundreds of digits has no float
                raise SettingsError(f"{self.key}: {_show(value)} is out of range") from None
            if kind is float and not math.isfinite(value):
                raise SettingsError(f"{self.key}: expected a finite number, got {_show(value)}")
            if self.minimum is not None and value < self.minimum:
                raise SettingsError(f"{self.key}: {_show(value)} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise SettingsError(f"{self.key}: {_show(value)} is above the maximum {self.maximum:g}")
        elif kind is str:
            if not isinstance(value, str):
                raise SettingsError(f"{self.key}: expected text, got {_show(value)}")
            if not is_valid_text(value):  # a lone surrogate cannot be written to config.json (UTF-8)
                raise SettingsError(f"{self.key}: contains invalid Unicode (a lone surrogate or a NUL character)")
        elif kind in (list, tuple):  # e.g. quicksettings_list: a list of names, kept as a list
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and is_valid_text(v) for v in value):
                raise SettingsError(f"{self.key}: expected a list of names, got {_show(value)}")
            return list(value)
        if self.choices is not None and value not in self.choices:
            raise SettingsError(f"{self.key}: {_show(value)} is not one of {', '.join(map(str, self.choices))}")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("sd_model_checkpoint", "", "Checkpoint (last used)", "Stable Diffusion"),
    Option("sd_checkpoints_limit", 1, "Checkpoints kept in RAM at once", "Stable Diffusion", 1, 10),
    Option("sd_checkpoint_cache_ram_fraction", 0.5, "RAM budget for cached checkpoints (fraction of total RAM)",
           "Stable Diffusion", 0.05, 0.9),
    Option("sd_vae", "Automatic", "VAE", "Stable Diffusion"),
    Option("CLIP_stop_at_last_layers", 1, "Clip skip", "Stable Diffusion", 1, 12),
    # A1111's default is the checkpoint only; the VAE picker has always been in our header, so it stays.
    # A tuple: the default is shared by every Settings instance and must not be mutated.
    Option("quicksettings_list", ("sd_model_checkpoint", "sd_vae"),
           "Quicksettings list (settings shown at the top of the page instead of here; requires Reload UI)",
           "User interface"),
    Option("comma_padding_backtrack", 20, "Prompt chunk: break at a comma this many tokens from the end",
           "Stable Diffusion", 0, 74),
    Option("show_progress_every_n_steps", 10, "Live preview every N steps (0: off)", "Live previews", 0, 150),
    Option("live_previews_enable", True, "Show live previews", "Live previews"),
    Option("notification_audio", True, "Play notification sound after image generation (notification.mp3 in the "
           "data folder)", "User interface"),
    Option("notification_volume", 100, "Notification sound volume (%)", "User interface", 0, 100),
    Option("samples_save", True, "Save every generated image", "Saving images"),
    Option("save_incomplete_images", False, "Save incomplete images (left by Skip)", "Saving images"),
    Option("grid_save", True, "Save a grid of each batch", "Saving images"),
    Option("return_grid", True, "Show a grid of the batch first in the gallery", "Saving images"),
    Option("samples_filename_pattern", "[seed]", "File name pattern ([seed], [prompt_words], [model_name], "
           "[sampler], [steps], [cfg], [width], [height], [date])", "Saving images"),
    Option("outdir_txt2img_samples", "outputs/txt2img-images", "txt2img output folder", "Saving images",
           is_path=True),
    Option("outdir_txt2img_grids", "outputs/txt2img-grids", "txt2img grid folder", "Saving images", is_path=True),
    Option("enable_pnginfo", True, "Write generation parameters into PNG files", "Saving images"),
    Option("hires_fix_refiner_pass", "second pass", "Hires fix: which pass to enable the refiner for",
           "Stable Diffusion", choices=("first pass", "second pass", "both passes")),
    Option("outdir_extras_samples", "outputs/extras-images", "Extras output folder", "Saving images", is_path=True),
    Option("ESRGAN_tile", 192, "Tile size for ESRGAN-family upscalers (0 = no tiling)", "Upscaling", 0, 512),
    Option("ESRGAN_tile_overlap", 8, "Tile overlap for ESRGAN-family upscalers, in pixels", "Upscaling", 0, 48),
    Option("SWIN_tile", 192, "Tile size for SwinIR upscalers (0 = no tiling)", "Upscaling", 0, 512),
    Option("SWIN_tile_overlap", 8, "Tile overlap for SwinIR upscalers, in pixels", "Upscaling", 0, 48),
    Option("DAT_tile", 192, "Tile size for DAT upscalers (0 = no tiling)", "Upscaling", 0, 512),
    Option("DAT_tile_overlap", 8, "Tile overlap for DAT upscalers, in pixels", "Upscaling", 0, 48),
)


@dataclass
class Settings:
    """The live settings of one app instance, with a lock so UI and API can both write."""

    path: Path | None
    options: dict[str, Option] = field(default_factory=lambda: {o.key: o for o in OPTIONS})
    values: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim
    warnings: list[str] = field(default_factory=list)
    unsaved_reason: str | None = None  # set when config.json could not be read: changes cannot be saved
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def load(cls, path: Path | None) -> "Settings":
        """Read config.json if present; a bad value falls back to its default with a warning."""
        settings = cls(path=path)
        if path is None or not path.exists():
            return settings
        raw, problem = read_json_object(path)
        if problem is not None:
            settings.warnings.append(f"{path}: unreadable ({problem}); using defaults, the file is left as it is")
            settings.unsaved_reason = f"{path} was unreadable at start ({problem})"
            settings.path = None  # never overwrite a file we could not read
            return settings
        for key, value in raw.items():
            option = settings.options.get(key)
            if option is None:
                settings.extra[key] = value
                continue
            try:
                settings.values[key] = option.check(value)
            except SettingsError as exc:
                settings.warnings.append(f"{exc}; using the default {option.default!r}")
        return settings

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self.values:
                return self.values[key]
            if key in self.options:
                return self.options[key].default
            if key in self.extra:
                return self.extra[key]
        raise KeyError(f"unknown setting {key!r}")

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def update(self, changes: dict[str, Any], save: bool = True) -> None:
        """Validate every change first, then apply all or none, then persist."""
        unknown = [k for k in changes if k not in self.options]
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        checked = {k: self.options[k].check(v) for k, v in changes.items()}
        with self._lock:
            self.values.update(checked)
            if save:
                self.save()

    def save_changes(self, changes: dict[str, Any]) -> None:
        """A user's change (Settings tab, API): validated, applied and saved, or refused as a whole.

        Unlike `update`, this refuses when config.json cannot be written (it was unreadable at
        start), so the user is told the change would not survive a restart instead of losing it.
        """
        if self.unsaved_reason and changes:
            raise SettingsNotSaved(f"{self.unsaved_reason}; fix or move the file and restart to change settings")
        self.update(changes)

    def set(self, key: str, value: Any, save: bool = True) -> None:
        self.update({key: value}, save=save)

    def as_dict(self) -> dict[str, Any]:
        """Every known option with its current value, plus the kept unknown keys."""
        with self._lock:
            return {**self.extra, **{k: self.get(k) for k in self.options}}

    def add_option(self, option: Option) -> None:
        """Let an extension or a later room register its own option on this instance."""
        with self._lock:
            self.options[option.key] = option
            if option.key in self.extra:
                try:
                    self.values[option.key] = option.check(self.extra.pop(option.key))
                except SettingsError as exc:
                    self.warnings.append(str(exc))

    def save(self) -> None:
        """Write atomically: a crash mid-write never leaves a truncated config.json."""
        if self.path is None:
            return
        with self._lock:
            write_json_atomic(self.path, {**self.extra, **self.values}, durable=True)
