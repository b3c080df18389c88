"""The header: the checkpoint picker, A1111's quicksettings (``quicksettings_list``) and the model line.

The checkpoint picker is always first (it is the only place to pick a model); every other entry of
``quicksettings_list`` gets one control here, in list order, and leaves the Settings tab (as in
A1111). A change is saved at once; every page reads the saved value at its next load
(webui/ui/page_load.py). The list itself is read when the UI is built, so changing it takes
effect after Reload UI. Unknown or unsuitable names are skipped with a log line.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field

import gradio as gr

from webui.jobs import JobFailed
from webui.settings import SettingsError
from webui.ui.extra_networks import build_vae_quicksetting
from webui.ui.model_status import attach_model_status, size_after_swap
from webui.ui.page_load import on_page_load

log = logging.getLogger(__name__)

CHECKPOINT = "sd_model_checkpoint"
CLIP_SKIP = "CLIP_stop_at_last_layers"
# Managed elsewhere (the Extensions tab) or meaningless at the top of the page.
NOT_QUICK = frozenset({"quicksettings_list", "disabled_extensions", "disable_all_extensions"})


def quicksettings_keys(settings) -> tuple[list[str], list[str]]:
    """(keys to show, in order, the checkpoint first; problems with the stored list, for the log)."""
    raw = settings.get("quicksettings_list")
    legacy = settings.extra.get("quicksettings")
    if "quicksettings_list" not in settings.values and isinstance(legacy, str):
        raw = [name.strip() for name in legacy.split(",") if name.strip()]  # an A1111 config.json before 1.6
    keys, problems = [CHECKPOINT], []
    for name in raw if isinstance(raw, (list, tuple)) else []:
        if name in keys:
            continue
        if name not in settings.options:
            problems.append(f"quicksettings_list: {name!r} is not a setting here; skipped")
        elif name in NOT_QUICK:
            problems.append(f"quicksettings_list: {name!r} cannot be a quicksetting; skipped")
        else:
            keys.append(name)
    return keys, problems


def quick_candidates(settings) -> list[str]:
    """Names the Settings tab offers for quicksettings_list (A1111 offers every option)."""
    return [key for key in settings.options if key not in NOT_QUICK]


def model_line(ctx, model) -> str:
    """One line about the loaded model; for the bundled demo, what it is and where real ones go."""
    if model.info.bundled and model.info.model_name.startswith("demo-shapes"):
        folder = ctx.paths.ckpt_dir
        if folder.is_relative_to(ctx.paths.data_dir):  # the usual models/Stable-diffusion, not a long absolute path
            folder = folder.relative_to(ctx.paths.data_dir)
        return (f"Demo model: draws coloured shapes at {model.native_size}x{model.native_size}, trained by this "
                f"project. Put real checkpoints in {folder} and press ↻ (refresh).")
    return f"Loaded {model.info.title} ({model.arch})."


def _titles(ctx) -> list[str]:
    return [info.title for info in ctx.models.checkpoints()]


def _current_title(ctx) -> str | None:
    model = ctx.models.current()
    return model.info.title if model else None


@dataclass
class Header:
    checkpoint: gr.Dropdown
    refresh: gr.Button
    status: gr.Markdown
    keys: list[str]
    controls: dict[str, gr.components.Component] = field(default_factory=dict)  # setting key -> control


def _generic_control(ctx, key: str):
    """A control for a plain setting, saved on change; shows the saved value at every page load."""
    from webui.ui.settings_tab import setting_component  # one rule for how an option is drawn

    settings = ctx.settings
    option = settings.options[key]
    control = setting_component(option, settings.get(key), scale=2, min_width=240)
    on_page_load(lambda: settings.get(key), None, control)
    return control


def build_header(ctx) -> Header:
    """Lay out the header row (call inside the page's gr.Blocks, before the tabs)."""
    keys, problems = quicksettings_keys(ctx.settings)
    for problem in problems:
        log.warning(problem)
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=_titles(ctx),
                                 value=_current_title(ctx), elem_id="setting_sd_model_checkpoint", scale=4)
        refresh = gr.Button("↻", elem_id="refresh_sd_model_checkpoint", min_width=40, scale=0)
        controls = {}
        for key in keys[1:]:
            controls[key] = build_vae_quicksetting(ctx) if key == "sd_vae" else _generic_control(ctx, key)
        current = ctx.models.current()
        status = gr.Markdown(html.escape(model_line(ctx, current) if current else ctx.status),
                             elem_id="model_status")
    return Header(checkpoint, refresh, status, keys, controls)


def wire_header(demo, ctx, header: Header, txt2img, img2img, keep_size: bool = False) -> None:
    """Events of the header (call inside ``demo`` after the tabs are built).

    ``keep_size``: the size sliders' defaults come from ui-config.json, so the model's native size
    must not replace them when the startup model finishes loading.
    """
    settings = ctx.settings
    clip_sliders = [txt2img.clip_skip, img2img.controls.clip_skip]
    for key, control in header.controls.items():
        if key == "sd_vae":
            continue  # swapped through the queue by its own builder
        mirrors = clip_sliders if key == CLIP_SKIP else []
        option = settings.options[key]

        def change(value, key=key, option=option, mirrors=mirrors):
            if isinstance(option.default, int) and not isinstance(option.default, bool) \
                    and isinstance(value, float) and value.is_integer():
                value = int(value)
            if value == settings.get(key):  # a page-load refresh or a mirror's echo: nothing to save
                return (gr.update(),) * (1 + len(mirrors))
            try:
                settings.save_changes({key: value})
            except SettingsError as exc:
                gr.Warning(f"Not saved: {exc}")
                return settings.get(key), *(gr.update(),) * len(mirrors)
            return gr.update(), *(value,) * len(mirrors)

        control.change(change, control, [control, *mirrors], show_progress="hidden", trigger_mode="always_last",
                       api_visibility="private")
        if key == CLIP_SKIP:
            # Moving a tab's Clip skip slider moves the quicksetting (which saves it) and the other tab's.
            for slider, other in ((clip_sliders[0], clip_sliders[1]), (clip_sliders[1], clip_sliders[0])):
                slider.input(lambda v: (v, v), slider, [control, other], show_progress="hidden",
                             trigger_mode="always_last", api_visibility="private")

    def select(title, *sizes):
        if not title or title == _current_title(ctx):
            return (gr.update(),) * 6
        previous = ctx.models.current()
        try:
            model = ctx.submit_checkpoint(title, source="ui").wait()
        except JobFailed as exc:
            return (gr.update(value=_current_title(ctx)), f"**Could not load {html.escape(title)}:** "
                    f"{html.escape(str(exc))}", *(gr.update(),) * 4)
        old, new = (previous.native_size if previous else None), model.native_size
        return (gr.update(), html.escape(model_line(ctx, model)),
                *size_after_swap(old, new, *sizes[:2]), *size_after_swap(old, new, *sizes[2:]))

    sizes = [txt2img.width, txt2img.height, img2img.controls.width, img2img.controls.height]
    # .select: the user's pick only, once (a dropdown's .input also fires on blur). The page itself sets
    # the dropdown (page load, another tab's or the API's swap shown); a .change handler then swapped
    # back to the title the page had just shown.
    header.checkpoint.select(select, [header.checkpoint, *sizes], [header.checkpoint, header.status, *sizes],
                             show_progress="full", api_visibility="private")

    def rescan():
        ctx.models.refresh()
        return gr.update(choices=_titles(ctx), value=_current_title(ctx))

    header.refresh.click(rescan, None, header.checkpoint, show_progress="hidden", api_visibility="private")
    # The startup checkpoint may still be loading behind the page: keep the header in step.
    attach_model_status(demo, ctx, header.checkpoint, header.status, txt2img.width, txt2img.height, model_line,
                        keep_size=keep_size)
