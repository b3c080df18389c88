"""A1111 ``Script`` classes -> native panels and hooks (tier 2: AlwaysOn scripts that edit prompts/seeds).

An AlwaysOn script becomes a Panel whose params are its ``ui()`` components in order (webui/ui
builds them and derives the params), so A1111's positional ``alwayson_scripts`` args map
onto them. Per job: ``setup``, ``before_process``, ``process`` and then ``before_process_batch``
/ ``process_batch`` for every batch run in the native ``plan`` hook on a ``p`` stand-in whose
prompt and seed lists are read back into the plan; ``postprocess_image`` runs in the image
hook and ``postprocess`` after the job. Selectable scripts (``run()`` calling A1111's
``process_images``) and scripts overriding sampler/tensor methods are refused.
"""
from __future__ import annotations

from collections import OrderedDict

from webui.compat.a1111.modules.processing import Processed, p_from_request, read_back, snapshot
from webui.compat.a1111.modules.scripts import AlwaysVisible, PostprocessImageArgs, Script
from webui.extensions.loader import NeedsPort

UNSUPPORTED_METHODS = {
    "run": "a selectable script's run() calls A1111's process_images",
    "after_extra_networks_activate": "runs inside A1111's extra-networks activation",
    "postprocess_batch": "receives A1111's decoded tensors",
    "postprocess_batch_list": "receives A1111's decoded tensors",
    "post_sample": "receives A1111's sampler output",
    "on_mask_blend": "runs inside A1111's inpaint blending",
    "postprocess_maskoverlay": "runs inside A1111's inpaint overlay",
    "postprocess_image_after_composite": "runs inside A1111's inpaint composite",
    "before_component": "hooks every Gradio component",
    "after_component": "hooks every Gradio component",
    "before_hr": "runs inside A1111's hires-fix pass",
    "process_before_every_sampling": "Forge's sampler hook",
}
KEEP_JOBS = 16


def _overrides(cls, name: str) -> bool:
    return getattr(cls, name, None) is not getattr(Script, name)


def adapt_scripts(bridge, api, classes) -> list[str]:
    """Turn every Script class of one extension into panels; NeedsPort refuses the whole extension."""
    notes: list[str] = []
    adapters = []
    for cls in classes:
        script = cls()
        title = str(script.title())
        tabs = []
        selectable = False
        for is_img2img, tab in ((False, "txt2img"), (True, "img2img")):
            shown = script.show(is_img2img)
            if shown is AlwaysVisible:
                tabs.append(tab)
            elif shown:
                selectable = True
        # run() is never called for an always-on script, so defining one is harmless there.
        bad = [name for name in UNSUPPORTED_METHODS if _overrides(cls, name) and (name != "run" or selectable)]
        if selectable and not tabs:
            raise NeedsPort(f"script {title!r} is a selectable script (its run() calls A1111's process_images)")
        if bad:
            reasons = "; ".join(f"{name}: {UNSUPPORTED_METHODS[name]}" for name in bad)
            raise NeedsPort(f"script {title!r} overrides {reasons}")
        if not tabs:
            notes.append(f"script {title!r} is hidden on both tabs (show() is False); not used")
            continue
        adapters.append((script, title, tabs))
    for script, title, tabs in adapters:  # only once every script is acceptable: never half-register
        bridge.adapters.append(AlwaysOnAdapter(bridge, api, script, title, tabs))
    return notes


class AlwaysOnAdapter:
    """One AlwaysOn script as a native panel plus plan/image/after_job hooks."""

    def __init__(self, bridge, api, script: Script, title: str, tabs: list[str]):
        self.bridge, self.api, self.script = bridge, api, script
        script.alwayson = True
        self.panel = api.panel(title, [], tabs=tuple(tabs))
        self.panel.build = self.build
        self._jobs: OrderedDict[str, object] = OrderedDict()
        self._batched = _overrides(type(script), "before_process_batch") or _overrides(type(script), "process_batch")
        api.on_plan(self.on_plan)
        if _overrides(type(script), "postprocess_image"):
            api.on_image(self.on_image)
        api.on_after_job(self.on_after_job)

    def build(self, is_img2img: bool) -> list:
        """Call the script's ui() (inside the Gradio context webui/ui opened); returns its components."""
        self.script.is_img2img, self.script.is_txt2img = is_img2img, not is_img2img
        with self.bridge.running_as(self.api.name):
            components = self.script.ui(is_img2img)
        return list(components or [])

    def _args(self, ctx) -> list:
        values = ctx.panels.get(self.panel.title, {})
        return [values.get(p.name, p.default) for p in self.panel.params]

    def _p(self, ctx):
        return self._jobs.get(ctx.job_id) or p_from_request(ctx.request, None, self._args(ctx))

    def on_plan(self, ctx, plan) -> None:
        args = self._args(ctx)
        p = p_from_request(ctx.request, plan, args)
        before = snapshot(p)
        with self.bridge.running_as(self.api.name):
            self.script.setup(p, *args)
            self.script.before_process(p, *args)
            self.script.process(p, *args)
            if self._batched:
                size = p.batch_size
                for number in range(p.n_iter):
                    part = slice(number * size, (number + 1) * size)
                    prompts, seeds, subseeds = p.all_prompts[part], p.all_seeds[part], p.all_subseeds[part]
                    kw = dict(batch_number=number, prompts=prompts, seeds=seeds, subseeds=subseeds)
                    self.script.before_process_batch(p, *args, **kw)
                    self.script.process_batch(p, *args, **kw)
                    p.all_prompts[part], p.all_seeds[part], p.all_subseeds[part] = prompts, seeds, subseeds
        new, notes = read_back(p, plan, before)
        for note in notes:
            ctx.warn(f"{self.panel.title}: {note}")
        plan.__dict__.update(new.__dict__)
        self._jobs[ctx.job_id] = p
        while len(self._jobs) > KEEP_JOBS:
            self._jobs.popitem(last=False)

    def on_image(self, ctx, image, info):
        pp = PostprocessImageArgs(image)
        with self.bridge.running_as(self.api.name):
            self.script.postprocess_image(self._p(ctx), pp, *self._args(ctx))
        return pp.image

    def on_after_job(self, ctx, result) -> None:
        p = self._p(ctx)
        self._jobs.pop(ctx.job_id, None)
        if _overrides(type(self.script), "postprocess"):
            with self.bridge.running_as(self.api.name):
                self.script.postprocess(p, Processed(p, result), *self._args(ctx))
