"""``modules.processing``: the ``p`` stand-in AlwaysOn scripts edit, ``Processed`` and ``fix_seed``.

``p`` carries A1111's field names, filled from our GenerationRequest and GenerationPlan. After a
script's hooks, ``read_back`` copies what the plan can express (per-image prompts and seeds,
n_iter / batch_size, extra_generation_params) into the plan and names, in a warning, every
other field the script changed, because those changes cannot be honoured here.
"""
from __future__ import annotations

import copy
from typing import Any

from webui.generation.plan import GenerationPlan
from webui.generation.seeds import resolve_seed

# Fields a script may change and we carry back (everything else changed gives a warning).
PLAN_FIELDS = ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "n_iter", "batch_size",
               "extra_generation_params")
WATCHED = ("prompt", "negative_prompt", "steps", "cfg_scale", "width", "height", "sampler_name", "scheduler",
           "seed", "subseed", "subseed_strength", "styles", "denoising_strength", "enable_hr")


class StableDiffusionProcessing:
    """A1111's ``p``: plain attributes; no model, no sampler, no ``process_images``."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"p.{name} is not available here (A1111 processing internals need a native port)")


StableDiffusionProcessingTxt2Img = StableDiffusionProcessing
StableDiffusionProcessingImg2Img = StableDiffusionProcessing


class Processed:
    """A1111's ``Processed``, built from our GenerationResult."""

    def __init__(self, p, result):
        self.images = list(getattr(result, "images", []))
        self.infotexts = list(getattr(result, "infotexts", []))
        self.all_prompts = list(getattr(result, "prompts", []))
        self.all_negative_prompts = list(getattr(result, "negative_prompts", []))
        self.all_seeds = list(getattr(result, "seeds", []))
        self.all_subseeds = list(getattr(result, "subseeds", []))
        self.prompt = self.all_prompts[0] if self.all_prompts else getattr(p, "prompt", "")
        self.negative_prompt = self.all_negative_prompts[0] if self.all_negative_prompts else ""
        self.seed = self.all_seeds[0] if self.all_seeds else getattr(p, "seed", -1)
        self.subseed = self.all_subseeds[0] if self.all_subseeds else getattr(p, "subseed", -1)
        self.info = self.infotexts[0] if self.infotexts else ""
        self.width, self.height = getattr(p, "width", 0), getattr(p, "height", 0)
        self.index_of_first_image = 0
        self.extra_generation_params = dict(getattr(p, "extra_generation_params", {}))

    def js(self) -> str:
        import json

        return json.dumps({"prompt": self.prompt, "all_prompts": self.all_prompts, "seed": self.seed,
                           "all_seeds": self.all_seeds, "infotexts": self.infotexts})


def p_from_request(request, plan: GenerationPlan | None = None, script_args: list | None = None):
    """A ``p`` for one job: request fields under A1111's names, plan lists as ``all_*``."""
    r = request
    fields: dict[str, Any] = dict(
        prompt=getattr(r, "prompt", ""), negative_prompt=getattr(r, "negative_prompt", ""),
        styles=list(getattr(r, "styles", []) or []), seed=getattr(r, "seed", -1), subseed=getattr(r, "subseed", -1),
        subseed_strength=getattr(r, "subseed_strength", 0.0), sampler_name=getattr(r, "sampler_name", ""),
        scheduler=getattr(r, "scheduler", ""), steps=getattr(r, "steps", 20), cfg_scale=getattr(r, "cfg_scale", 7.0),
        width=getattr(r, "width", 512), height=getattr(r, "height", 512), batch_size=getattr(r, "batch_size", 1),
        n_iter=getattr(r, "n_iter", 1), denoising_strength=getattr(r, "denoising_strength", None),
        override_settings=dict(getattr(r, "override_settings", {}) or {}), enable_hr=False, hr_prompt="",
        hr_negative_prompt="", do_not_save_samples=not getattr(r, "save_images", True), do_not_save_grid=False,
        outpath_samples="", outpath_grids="", restore_faces=False, tiling=False, is_api=False,
        script_args=list(script_args or []), extra_generation_params={}, seed_resize_from_w=-1,
        seed_resize_from_h=-1, sd_model=None, iteration=0, clip_skip=getattr(r, "clip_skip", None),
    )
    if plan is not None:
        fields.update(all_prompts=list(plan.prompts), all_negative_prompts=list(plan.negative_prompts),
                      all_seeds=list(plan.seeds), all_subseeds=list(plan.subseeds),
                      extra_generation_params=dict(plan.extra_infotext), n_iter=plan.n_iter,
                      batch_size=plan.batch_size, seed=plan.seeds[0] if plan.seeds else fields["seed"])
        fields.update(all_hr_prompts=list(plan.prompts), all_hr_negative_prompts=list(plan.negative_prompts))
    return StableDiffusionProcessing(**fields)


def snapshot(p) -> dict[str, Any]:
    return {k: copy.deepcopy(p.__dict__.get(k)) for k in PLAN_FIELDS + WATCHED}


def read_back(p, plan: GenerationPlan, before: dict[str, Any]) -> tuple[GenerationPlan, list[str]]:
    """Copy the plan fields of ``p`` into a new plan; name the other fields that changed."""
    d = p.__dict__
    out = GenerationPlan(prompts=list(d.get("all_prompts", plan.prompts)),
                         negative_prompts=list(d.get("all_negative_prompts", plan.negative_prompts)),
                         seeds=[int(s) for s in d.get("all_seeds", plan.seeds)],
                         subseeds=[int(s) for s in d.get("all_subseeds", plan.subseeds)],
                         n_iter=d.get("n_iter", plan.n_iter), batch_size=d.get("batch_size", plan.batch_size),
                         extra_infotext=dict(d.get("extra_generation_params") or {}))
    # A script that grew n_iter but not every list (A1111 would index past the end) gets its lists
    # repeated the way A1111's setup_prompts does for one prompt; anything else is left for check().
    count = out.n_iter * out.batch_size if isinstance(out.n_iter, int) and isinstance(out.batch_size, int) else 0
    for name in ("prompts", "negative_prompts"):
        values = getattr(out, name)
        if count and len(values) == 1 and count > 1:
            setattr(out, name, values * count)
    ignored = [k for k in WATCHED if d.get(k) != before.get(k)]
    notes = []
    if ignored:
        notes.append(f"changed p.{', p.'.join(ignored)}, which cannot be honoured from process() here "
                     f"(change p.all_prompts / p.all_seeds instead); ignored")
    return out, notes


def fix_seed(p) -> None:
    """Resolve -1 seeds to concrete ones, as A1111's fix_seed does."""
    p.seed = resolve_seed(p.seed)
    p.subseed = resolve_seed(p.subseed)


def process_images(p):
    raise RuntimeError("processing.process_images is not available to extensions here (needs a native port: "
                       "selectable scripts use the native ScriptContext.process)")


def create_infotext(p, *args, **kwargs) -> str:
    raise RuntimeError("processing.create_infotext is not available here (needs a native port)")
