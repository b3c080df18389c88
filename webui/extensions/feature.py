"""ExtensionsFeature: how extensions plug into the generation core's ``Feature`` seam.

It is the last feature of ``CoreContext.features`` (webui/context.py), so the plan it builds
starts from the prompt other features left (networks strip ``<lora:...>`` first). In
``prepare(p)`` it makes the job's GenerationPlan and runs the plan hooks on it (``p.plan``),
enters every patch into the job's ExitStack (``p.enter``), and registers the step, image and
save hooks. Warnings reach the result through the host's per-generation scope (``run_job``), or
``p.comments`` when the core is called directly.
"""
from __future__ import annotations

from webui.extensions.api import ImageInfo, SaveParams
from webui.generation.plan import GenerationPlan


class ExtensionsFeature:
    name = "extensions"

    def __init__(self, host):
        self.host = host

    def prepare(self, p) -> None:
        host = self.host
        hooks, owned = host.active_hooks(), False
        if hooks is None:  # the core was called without run_job (tests, tools): keep warnings in p.comments
            hooks, owned = host.job(p.request, model=p.model), True
        hooks.attach_model(p.model)
        req = p.request
        plan = GenerationPlan.uniform(p.prompt, p.negative_prompt, p.seeds, p.subseeds, req.n_iter, req.batch_size)
        if host.hooks("plan"):
            plan = hooks.plan(plan)
            p.plan = plan
        p.extra_infotext.update(plan.extra_infotext)
        p.extra_infotext.update(hooks.panel_infotext())
        for patch in hooks.patches(p.model.pipe):
            p.enter(patch)
        if host.hooks("step"):
            def step(state):
                latents = state.tensors.get("latents")
                new = hooks.step(state.step + 1, state.total, state.timestep, latents)
                return {"latents": new} if new is not latents else None

            p.on_step(step)
        if host.hooks("image"):
            def image(p_, index, picture):
                current = p_.plan or plan
                info = ImageInfo(index, current.seeds[index], current.prompts[index], current.negative_prompts[index],
                                 "")
                return hooks.image(picture, info)

            p.on_image(image)
        if host.hooks("before_save") or host.hooks("after_save"):
            p.on_save(before=lambda params: hooks.before_save(params), after=lambda path: hooks.after_save(path))
        if owned:
            p.stack.callback(lambda: p.comments.extend(w for w in hooks.warnings if w not in p.comments))


__all__ = ["ExtensionsFeature", "SaveParams"]
