"""``modules.shared``: ``opts``, ``cmd_opts``, ``state``, ``sd_model``, ``prompt_styles`` as views.

Nothing is stored here: every attribute reads the running app's Settings, flags, queue and
model manager through the active Bridge. ``opts.add_option(key, OptionInfo(...))`` declares a
setting of the calling extension, shown in Settings and saved in config.json like ours.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from webui.compat.a1111 import active
from webui.compat.a1111.modules.options import OptionHTML, OptionInfo, options_section  # noqa: F401

log = logging.getLogger("ext.a1111")

# A1111 options that extensions read and that have no twin here, with A1111's defaults.
A1111_DEFAULTS: dict[str, Any] = {
    "samples_format": "png", "grid_format": "png", "outdir_samples": "", "outdir_grids": "",
    "outdir_img2img_samples": "outputs/img2img-images", "outdir_extras_samples": "outputs/extras-images",
    "outdir_save": "log/images", "save_to_dirs": True, "grid_save_to_dirs": True, "jpeg_quality": 80,
    "export_for_4chan": True, "img_downscale_threshold": 4.0, "target_side_length": 4000,
    "return_grid": True, "do_not_show_images": False, "add_model_hash_to_info": True,
    "add_model_name_to_info": True, "eta_noise_seed_delta": 0, "randn_source": "CPU", "sd_vae": "Automatic",
    "show_progressbar": True, "live_previews_enable": True, "hide_samplers": [], "disabled_extensions": [],
    "disable_all_extensions": "none", "restore_config_state_file": "", "sd_checkpoint_hash": "",
    "localization": "None", "quicksettings_list": ["sd_model_checkpoint"], "ui_reorder_list": [],
    "keyedit_precision_attention": 0.1, "keyedit_precision_extra": 0.05, "keyedit_delimiters": r".,\/!?%^*;:{}=`~() ",
    "extra_networks_default_multiplier": 1.0, "extra_networks_add_text_separator": " ",
}


def _host():
    return active.bridge().host


def _section_title(section) -> str | None:
    if isinstance(section, (tuple, list)) and len(section) >= 2:
        return str(section[1])
    return None


class Options:
    """A1111's ``shared.opts`` over our Settings (no copy: reads and writes go to the live object)."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        settings = _host().settings
        try:
            return settings.get(key)
        except KeyError:
            if key in A1111_DEFAULTS:
                return A1111_DEFAULTS[key]
            raise AttributeError(f"opts.{key}: no such setting") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        settings = _host().settings
        if key not in settings.options:
            return False
        settings.set(key, value)
        return True

    def get_default(self, key: str) -> Any:
        option = _host().settings.options.get(key)
        return option.default if option is not None else A1111_DEFAULTS.get(key)

    @property
    def data(self) -> dict[str, Any]:
        return {**A1111_DEFAULTS, **_host().settings.as_dict()}

    @property
    def data_labels(self) -> dict[str, OptionInfo]:
        out = {}
        for key, option in _host().settings.options.items():
            out[key] = OptionInfo(option.default, option.label, section=(option.section, option.section))
        return out

    def add_option(self, key: str, info: OptionInfo) -> None:
        """Declare an extension setting; kinds follow the default (bool, int, float, text, choices)."""
        if isinstance(info, OptionHTML) or info.do_not_save:
            return
        args = info.component_settings()
        choices = args.get("choices")
        if callable(choices):
            try:
                choices = choices()
            except Exception:
                choices = None
        if choices is not None:
            choices = tuple(c[1] if isinstance(c, (tuple, list)) and len(c) == 2 else c for c in choices)
            if info.default not in choices and not isinstance(info.default, list):
                choices = None  # a default outside the list: A1111 allows it; we keep the value unchecked
            if isinstance(info.default, list):
                choices = None
        bridge = active.bridge()
        api = bridge.current_api()
        label = info.label or key
        section = _section_title(info.section) or f"Extension: {api.name}"
        spec_args = dict(minimum=args.get("minimum"), maximum=args.get("maximum"), choices=choices)
        if bridge.loading is not None:
            api.setting(key, info.default, label, section, **spec_args)
            return
        from webui.settings import Option

        settings = _host().settings
        if key not in settings.options:
            settings.add_option(Option(key, info.default, label, section, spec_args["minimum"],
                                       spec_args["maximum"], spec_args["choices"]))

    def onchange(self, key, func, call=True):
        if call:
            func()

    def save(self, filename=None) -> None:
        _host().settings.save()

    def same_type(self, x, y) -> bool:
        return x is None or y is None or type(x) is type(y)

    def reorder(self) -> None:
        pass


opts = Options()


class CmdOpts:
    """A1111's ``shared.cmd_opts``: our flags under A1111's names; flags we do not have read as None."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        host = _host()
        args = vars(host.args) if host.args is not None else {}
        paths = host.ctx.paths if host.ctx is not None else None
        data = Path(host.data_dir)
        mapped = {
            "data_dir": str(data),
            "ckpt_dir": str(paths.ckpt_dir) if paths else None,
            "vae_dir": str(paths.vae_dir) if paths else None,
            "lora_dir": str(paths.lora_dir) if paths else None,
            "lyco_dir": str(paths.lora_dir) if paths else None,
            "lyco_dir_backcompat": str(paths.lora_dir) if paths else None,
            "embeddings_dir": str(paths.embeddings_dir) if paths else None,
            "controlnet_dir": str(paths.controlnet_dir) if paths else None,
            "hypernetwork_dir": str(data / "models" / "hypernetworks"),
            "models_dir": str(data / "models"),
            "localizations_dir": str(data / "localizations"),
            "share": False, "ngrok": None, "skip_install": True, "subpath": None, "nowebui": False,
            "gradio_auth": ",".join(f"{u}:{p}" for u, p in args.get("gradio_auth") or []) or None,
            "api_auth": ",".join(f"{u}:{p}" for u, p in args.get("api_auth") or []) or None,
            "disable_extension_access": bool((args.get("listen") or args.get("server_name"))
                                             and not args.get("enable_insecure_extension_access")),
        }
        if name in mapped:
            return mapped[name]
        value = args.get(name)
        return str(value) if isinstance(value, Path) else value


cmd_opts = CmdOpts()


class State:
    """A1111's ``shared.state``, read-only, from the job that runs now."""

    def _progress(self):
        ctx = _host().ctx
        job = ctx.queue.current() if ctx is not None else None
        return job, (job.progress.snapshot() if job is not None else None)

    @property
    def interrupted(self) -> bool:
        return bool(self._progress()[1] and self._progress()[1].interrupted)

    @property
    def skipped(self) -> bool:
        return bool(self._progress()[1] and self._progress()[1].skipped)

    @property
    def job(self) -> str:
        job, _ = self._progress()
        return job.kind if job is not None else ""

    @property
    def job_count(self) -> int:
        snap = self._progress()[1]
        return snap.job_count if snap else 0

    @property
    def job_no(self) -> int:
        snap = self._progress()[1]
        return snap.job_no if snap else 0

    @property
    def sampling_step(self) -> int:
        snap = self._progress()[1]
        return snap.sampling_step if snap else 0

    @property
    def sampling_steps(self) -> int:
        snap = self._progress()[1]
        return snap.sampling_steps if snap else 0

    def interrupt(self) -> None:
        ctx = _host().ctx
        if ctx is not None:
            ctx.queue.interrupt()

    def __setattr__(self, name, value):
        log.warning("shared.state.%s is read-only here; the change is ignored", name)


state = State()


class _Styles:
    """``shared.prompt_styles``, read-only."""

    @property
    def styles(self) -> dict:
        ctx = _host().ctx
        return {s.name: s for s in ctx.styles.all()} if ctx is not None else {}


prompt_styles = _Styles()
demo = None


def __getattr__(name: str) -> Any:
    if name == "sd_model":
        from webui.compat.a1111.callbacks import SdModelStub
        from webui.extensions.host import model_view

        ctx = _host().ctx
        view = model_view(ctx.models.current()) if ctx is not None else None
        return SdModelStub(view) if view is not None else None
    if name == "device":
        from webui.compat.a1111.modules import devices

        return devices.device
    raise AttributeError(f"modules.shared.{name} is not available here (needs a native port)")
