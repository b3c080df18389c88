"""``modules.script_callbacks``: ``on_<category>(fn)`` registers fn as a native hook of the calling extension.

Supported: app_started, model_loaded, ui_tabs, ui_settings, before_image_saved, image_saved,
infotext_pasted, script_unloaded, before_ui, before_reload. The sampler and per-component
categories (cfg_denoiser, list_unets, before_component, ...) refuse the extension with
"needs a native port" when called.
"""
from __future__ import annotations

from webui.compat.a1111 import active
from webui.compat.a1111.callbacks import ImageSaveParams  # noqa: F401  (A1111 exports it here)


def _register(category):
    def on(callback, *, name=None):
        active.bridge().register(category, callback)
    on.__name__ = f"on_{category}"
    on.__doc__ = f"A1111's script_callbacks.on_{category}."
    return on


on_app_started = _register("app_started")
on_model_loaded = _register("model_loaded")
on_ui_tabs = _register("ui_tabs")
on_ui_settings = _register("ui_settings")
on_before_image_saved = _register("before_image_saved")
on_image_saved = _register("image_saved")
on_infotext_pasted = _register("infotext_pasted")
on_script_unloaded = _register("script_unloaded")
on_before_ui = _register("before_ui")
on_before_reload = _register("before_reload")
on_cfg_denoiser = _register("cfg_denoiser")
on_cfg_denoised = _register("cfg_denoised")
on_cfg_after_cfg = _register("cfg_after_cfg")
on_list_optimizers = _register("list_optimizers")
on_list_unets = _register("list_unets")
on_before_component = _register("before_component")
on_after_component = _register("after_component")
on_image_grid = _register("image_grid")
on_extra_noise = _register("extra_noise")
on_before_token_counter = _register("before_token_counter")
on_ui_train_tabs = _register("ui_train_tabs")


def remove_current_script_callbacks():
    """Drop every callback the calling extension registered (A1111 scripts use this in postprocess)."""
    active.bridge().remove_current()


def remove_callbacks_for_function(callback_func):
    for api in active.bridge().host.apis.values():
        for hooks in api.hooks.values():
            for fn in list(hooks):
                if fn is callback_func or getattr(fn, "__wrapped__", None) is callback_func:
                    hooks.remove(fn)
