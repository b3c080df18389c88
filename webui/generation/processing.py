"""One job's working state, and the seams features register into (instead of editing the core).

``Processing`` (A1111 extension authors know it as ``p``) is built by ``core.generate`` once the
model is leased and handed to every ``Feature`` in ``CoreContext.features`` before the prompt
is encoded. A feature may:

- rewrite ``p.prompt`` / ``p.negative_prompt`` (e.g. strip ``<lora:...>`` tags it handles);
- ``p.enter(cm)``: a context manager held for the rest of the job (weights patched for LoRA,
  an extension's monkey patch, a ControlNet hook); it is exited, in reverse order, when the
  job ends, also on error or interrupt;
- ``p.on_step(fn, tensors=...)``: a per-step callback, chained after the built-in ones in
  registration order; it gets a ``StepState`` and may return a dict of replaced tensors
  (``latents``, ``prompt_embeds``, ...) which the pipeline then uses;
- ``p.extra_components["controlnet"] = model``: selects the ControlNet pipeline variant;
  ``p.pipeline_kwargs``: extra keyword arguments for every pipeline call of the job;
- ``p.on_pass(fn)``: keyword arguments that depend on the call, ``fn(kind, job_pass) -> dict``
  (ControlNet: txt2img pipelines take the control image as ``image``, img2img ones, which a
  hires pass uses, as ``control_image``);
- ``p.on_image(fn)``: post-process each decoded image before the overlay and saving;
- ``p.extra_infotext[key] = value``: infotext keys (A1111's ``extra_generation_params``);
- ``p.comments``: notes shown to the user with the result;
- ``p.extra_images``: images handed back with the result, not saved (ControlNet's detected maps).
- ``p.plan``: a GenerationPlan (``webui/generation/plan.py``) with a prompt, negative prompt, seed and
  subseed per image (dynamic prompts, prompt matrix); None means every image uses ``p.prompt``;
- ``p.on_save(before=fn(SaveParams), after=fn(path))``: around each saved PNG.
- ``p.embeddings``: the textual-inversion embeddings ``encode_prompts`` splices in (networks).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from webui.generation.request import GenerationRequest


@dataclass
class StepState:
    """What a step callback sees after one sampler step (``step`` is 0-based, per pipeline call)."""

    processing: "Processing"
    pipe: Any
    batch_no: int
    step: int
    total: int  # callback calls this pass will make
    timestep: Any
    tensors: dict[str, Any]  # the pipeline's callback tensors: latents, prompt_embeds, ...
    pass_name: str = "main"  # "main"; a second pass (hires fix) names itself


StepCallback = Callable[[StepState], "dict[str, Any] | None"]
ImageHook = Callable[["Processing", int, Any], Any]  # (p, index in job, PIL image) -> PIL image


@dataclass
class SaveParams:
    """A PNG about to be written: a before-save hook may replace the image, the name stem or the infotext."""

    image: Any
    folder: Any  # pathlib.Path
    stem: str
    infotext: str | None


@dataclass
class _Registered:
    fn: StepCallback
    tensors: tuple[str, ...]


@dataclass
class Processing:
    """A job's request, model and per-job registrations (see the module docstring)."""

    request: GenerationRequest  # validated; do not mutate
    model: Any  # webui.models.manager.LoadedModel, leased for the whole job
    prompt: str  # after styles
    negative_prompt: str
    seeds: list[int]
    subseeds: list[int]
    stack: contextlib.ExitStack
    extra_infotext: dict[str, Any] = field(default_factory=dict)
    extra_components: dict[str, Any] = field(default_factory=dict)
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    extra_images: list[Any] = field(default_factory=list)  # returned after the images (ControlNet's detected maps)
    plan: Any = None  # webui.generation.plan.GenerationPlan: per-image prompts/seeds (None: uniform)
    embeddings: Any = None  # textual-inversion lookup for encode_prompts (set by the networks feature)
    _steps: list[_Registered] = field(default_factory=list)
    _image_hooks: list[ImageHook] = field(default_factory=list)
    _pass_hooks: list[Callable[[str, Any], dict]] = field(default_factory=list)
    _save_hooks: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return self.request.mode

    def enter(self, cm):
        """Hold ``cm`` for the rest of the job; returns what its ``__enter__`` returned."""
        return self.stack.enter_context(cm)

    def on_step(self, fn: StepCallback, tensors: tuple[str, ...] = ("latents",)) -> None:
        """Call ``fn`` after every sampler step with the named callback tensors."""
        self._steps.append(_Registered(fn, tuple(tensors)))

    def on_image(self, fn: ImageHook) -> None:
        """Post-process each decoded image (before the inpaint overlay and saving)."""
        self._image_hooks.append(fn)

    def on_pass(self, fn: Callable[[str, Any], dict]) -> None:
        """Add ``fn(kind, job_pass)``'s keyword arguments to each pipeline call (kind: the pipeline's)."""
        self._pass_hooks.append(fn)

    def pass_kwargs(self, kind: str, job_pass) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fn in self._pass_hooks:
            out.update(fn(kind, job_pass))
        return out
    def on_save(self, before: Callable[[SaveParams], None] | None = None,
                after: Callable[[Any], None] | None = None) -> None:
        """Call ``before(params)`` before each PNG of the job is written and ``after(path)`` once it is."""
        self._save_hooks.append((before, after))

    def save_hooks(self) -> list[tuple[Any, Any]]:
        return list(self._save_hooks)

    def step_callbacks(self) -> list[_Registered]:
        return list(self._steps)

    def image_hooks(self) -> list[ImageHook]:
        return list(self._image_hooks)


def registered_step(fn: StepCallback, tensors: tuple[str, ...] = ("latents",)) -> _Registered:
    """A callback in the form ``chain_steps`` takes (for the core's built-in callbacks)."""
    return _Registered(fn, tuple(tensors))


class Feature(Protocol):
    """Something that plugs into every job: networks, ControlNet, extensions, ..."""

    name: str

    def prepare(self, p: Processing) -> None:
        """Register what this job needs (see the module docstring); called before prompt encoding."""


def chain_steps(p: Processing, callbacks: list[_Registered], pipe, batch_no: int, total: int,
                pass_name: str = "main"):
    """A diffusers ``callback_on_step_end`` running ``callbacks`` in order; returns (fn, tensor names)."""
    allowed = set(getattr(pipe, "_callback_tensor_inputs", ("latents",)))
    names: list[str] = []
    for registered in callbacks:
        for name in registered.tensors:
            if name not in allowed:
                raise ValueError(f"step callback wants {name!r}, which {type(pipe).__name__} does not pass "
                                 f"(it passes {', '.join(sorted(allowed))})")
            if name not in names:
                names.append(name)

    def on_step_end(pipe_, i, t, kwargs):
        state = StepState(p, pipe_, batch_no, i, total, t, dict(kwargs), pass_name)
        for registered in callbacks:
            out = registered.fn(state)
            if out:
                state.tensors.update(out)
        return state.tensors

    return on_step_end, names
