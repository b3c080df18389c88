"""The core's seams: a Feature registers context managers, step callbacks, image hooks and infotext per job."""
import contextlib

import numpy as np
import pytest
from PIL import Image

from webui.generation.request import GenerationRequest
from webui.jobs import JobFailed


def req(**kw):
    base = dict(prompt="a red circle", seed=77, steps=4, width=64, height=64, sampler_name="Euler a",
                save_images=False)
    base.update(kw)
    return GenerationRequest(**base)


class Recorder:
    """A feature like networks/ControlNet/extensions would be: patches for the job, hooks steps and images."""

    name = "recorder"

    def __init__(self, zero_latents_at=None, fail_in_step=False):
        self.events, self.steps, self.zero_at, self.fail = [], [], zero_latents_at, fail_in_step

    def prepare(self, p):
        @contextlib.contextmanager
        def patched():
            self.events.append(("enter", p.mode, p.prompt))
            try:
                yield
            finally:
                self.events.append(("exit", p.mode))

        p.enter(patched())
        p.prompt = p.prompt.replace("<tag>", "")  # e.g. networks strip their <lora:...> tags
        p.extra_infotext["Recorder"] = "on"
        p.on_step(self.step, tensors=("latents", "prompt_embeds"))
        p.on_image(lambda p_, index, image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))

    def step(self, state):
        self.steps.append((state.batch_no, state.step, state.total, tuple(state.tensors)))
        if self.fail:
            raise RuntimeError("feature failed mid-job")
        if self.zero_at is not None and state.step == self.zero_at:
            return {"latents": state.tensors["latents"] * 0}
        return None


def test_feature_seams_run_once_per_job_in_order(sd15):
    plain = sd15.queue.run(req())
    recorder = Recorder()
    sd15.core.features.append(recorder)
    hooked = sd15.queue.run(req(prompt="a red <tag>circle", n_iter=2))
    assert recorder.events == [("enter", "txt2img", "a red <tag>circle"), ("exit", "txt2img")]
    assert [s[:3] for s in recorder.steps] == [(b, i, 4) for b in (0, 1) for i in range(4)]
    assert recorder.steps[0][3] == ("latents", "prompt_embeds")
    assert "Recorder: on" in hooked.infotexts[0] and hooked.infotexts[0].startswith("a red circle\n")
    # The image hook ran: same prompt text after stripping, same seed -> the mirror image of the plain one.
    assert np.array_equal(np.asarray(hooked.images[0]), np.asarray(plain.images[0])[:, ::-1])


def test_a_step_callback_can_replace_latents(sd15):
    plain = sd15.queue.run(req())
    sd15.core.features.append(Recorder(zero_latents_at=3))
    changed = sd15.queue.run(req())
    assert not np.array_equal(np.asarray(changed.images[0])[:, ::-1], np.asarray(plain.images[0]))


def test_context_managers_exit_when_the_job_fails(sd15):
    recorder = Recorder(fail_in_step=True)
    sd15.core.features.append(recorder)
    with pytest.raises(JobFailed, match="feature failed mid-job"):
        sd15.queue.run(req())
    assert recorder.events[-1] == ("exit", "txt2img")
    sd15.core.features.remove(recorder)
    assert len(sd15.queue.run(req()).images) == 1  # the worker keeps serving


def test_step_callback_asking_for_an_unknown_tensor_is_refused(sd15):
    class Greedy:
        name = "greedy"

        def prepare(self, p):
            p.on_step(lambda state: None, tensors=("not_a_tensor",))

    sd15.core.features.append(Greedy())
    with pytest.raises(JobFailed, match="not_a_tensor"):
        sd15.queue.run(req())
