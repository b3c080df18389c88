"""The generation core on the tiny fixtures: determinism, seeds, samplers, interrupt, saving, infotext."""
import threading

import numpy as np
import pytest
from PIL import Image

from webui.generation import samplers
from webui.generation.core import generate
from webui.generation.progress import Progress
from webui.generation.request import GenerationRequest, RequestError
from webui.images import read_infotext
from webui.infotext import infotext_to_request_fields, parse_infotext


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def req(**kw):
    base = dict(prompt="a red circle", negative_prompt="blue", seed=1234, steps=3, width=64, height=64,
                sampler_name="Euler a", save_images=False)
    base.update(kw)
    return GenerationRequest(**base)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE"])
def test_same_request_twice_same_pixels(sd15, sampler):
    a = sd15.queue.run(req(sampler_name=sampler))
    b = sd15.queue.run(req(sampler_name=sampler))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    c = sd15.queue.run(req(sampler_name=sampler, seed=1235))
    assert not np.array_equal(pixels(a.images[0]), pixels(c.images[0]))


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DPM++ 2M SDE"])
def test_batch_equals_separate_seeds(sd15, sampler):
    batch = sd15.queue.run(req(sampler_name=sampler, batch_size=2))
    one = sd15.queue.run(req(sampler_name=sampler, seed=1234))
    two = sd15.queue.run(req(sampler_name=sampler, seed=1235))
    assert batch.seeds == [1234, 1235]
    assert np.abs(pixels(batch.images[0]) - pixels(one.images[0])).max() <= 1
    assert np.abs(pixels(batch.images[1]) - pixels(two.images[0])).max() <= 1


def test_n_iter_continues_seeds_and_random_seed_resolves(sd15):
    result = sd15.queue.run(req(seed=-1, batch_size=2, n_iter=2))
    s = result.seeds[0]
    assert 0 <= s < 2**32 and result.seeds == [s, s + 1, s + 2, s + 3] and len(result.images) == 4
    assert f"Seed: {s + 3}," in result.infotexts[3]


def test_variation_seed_changes_image_and_is_recorded(sd15):
    plain = sd15.queue.run(req())
    varied = sd15.queue.run(req(subseed=99, subseed_strength=0.5))
    assert not np.array_equal(pixels(plain.images[0]), pixels(varied.images[0]))
    params = parse_infotext(varied.infotexts[0])
    assert params["Variation seed"] == "99" and params["Variation seed strength"] == "0.5"


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_every_available_sampler_runs_two_steps(app_context, tiny_sd15, tiny_sdxl, arch):
    model = tiny_sd15 if arch == "sd15" else tiny_sdxl
    app_context.models.select(str(model.single_file))
    names = samplers.sampler_names()
    assert {"Euler a", "DPM++ 2M", "UniPC", "DDIM", "LCM", "Heun"} <= set(names)
    for name in names:
        result = app_context.queue.run(req(sampler_name=name, steps=2))
        image = np.asarray(result.images[0])
        assert image.shape == (64, 64, 3), name
        assert f"Sampler: {name}," in result.infotexts[0]


def test_interrupt_stops_within_one_step_and_worker_survives(sd15):
    seen = []
    started = threading.Event()
    job = sd15.queue.submit(req(steps=20))
    original_step = job.progress.step

    def step(i, latents=None):
        original_step(i, latents)
        seen.append(i)
        if i == 3:
            job.progress.interrupt()
        started.set()

    job.progress.step = step
    result = job.wait(120)
    assert result.interrupted and max(seen) <= 4 and len(result.images) == 1
    assert result.paths == []  # incomplete images are not saved (A1111's default)
    after = sd15.queue.run(req())
    assert not after.interrupted and len(after.images) == 1


def test_skip_ends_the_current_batch_early_and_keeps_its_partial_image(sd15):
    # A1111: Skip stops sampling this batch; its half-denoised image is shown (not saved, unless
    # "save_incomplete_images"), and the next batch runs in full.
    full = sd15.queue.run(req(steps=5, n_iter=2))
    job = sd15.queue.submit(req(steps=5, n_iter=2, save_images=True))
    original_step = job.progress.step

    def step(i, latents=None):
        original_step(i, latents)
        if job.progress.snapshot().job_no == 0 and i == 2:
            job.progress.skip()

    job.progress.step = step
    result = job.wait(120)
    assert result.seeds == [1234, 1235] and not result.interrupted and result.incomplete == [0]
    assert not np.array_equal(pixels(result.images[0]), pixels(full.images[0]))  # stopped at step 2 of 5
    assert np.array_equal(pixels(result.images[1]), pixels(full.images[1]))
    assert len(result.paths) == 1 and result.paths[0].name.endswith("-1235.png")


def test_saved_png_carries_infotext_that_parses_back(sd15):
    result = sd15.queue.run(req(save_images=True, prompt="a (red:1.2) circle, on: blue", steps=4, cfg_scale=6.5,
                                sampler_name="DPM++ 2M", scheduler="Karras"))
    path = result.paths[0]
    assert path.parent.parent.name == "txt2img-images" and path.name.endswith(f"-{result.seeds[0]}.png")
    with Image.open(path) as png:
        text = read_infotext(png)
    assert text == result.infotexts[0]
    fields = infotext_to_request_fields(parse_infotext(text))
    assert fields["prompt"] == "a (red:1.2) circle, on: blue" and fields["negative_prompt"] == "blue"
    assert (fields["steps"], fields["cfg_scale"], fields["sampler_name"], fields["seed"]) == (4, 6.5, "DPM++ 2M", 1234)
    assert parse_infotext(text)["Model"] == "tiny-sd15" and len(parse_infotext(text)["Model hash"]) == 10


def test_batch_saves_a_grid(sd15):
    result = sd15.queue.run(req(save_images=True, batch_size=2))
    grids = list((sd15.paths.outputs_dir / "txt2img-grids").rglob("grid-*.png"))
    assert len(result.paths) == 2 and grids


def test_clip_skip_from_override_settings(sd15):
    plain = sd15.queue.run(req())
    skipped = sd15.queue.run(req(override_settings={"CLIP_stop_at_last_layers": 2}))
    assert "Clip skip: 2" in skipped.infotexts[0] and "Clip skip" not in plain.infotexts[0]
    assert not np.array_equal(pixels(plain.images[0]), pixels(skipped.images[0]))


def test_bad_request_fails_the_job_with_a_message(sd15):
    with pytest.raises(RequestError, match="steps"):
        generate(req(steps=0), sd15.core, Progress())
    from webui.jobs import JobFailed

    with pytest.raises(JobFailed, match="width"):
        sd15.queue.run(req(width=65))
    assert len(sd15.queue.run(req()).images) == 1


def test_styles_are_applied(sd15):
    from webui.generation.styles import Style

    sd15.styles.put(Style("warm", "{prompt}, warm colours", "cold"))
    result = sd15.queue.run(req(styles=["warm"]))
    assert result.infotexts[0].startswith("a red circle, warm colours\nNegative prompt: blue, cold")
