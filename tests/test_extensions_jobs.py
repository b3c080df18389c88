"""Extensions inside real generation jobs (tiny model, real queue and core): hooks, isolation, built-in scripts."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.ext_kit import install_fixtures
from webui.generation.plan import GenerationPlan
from webui.generation.request import GenerationRequest
from webui.images import read_infotext

BASE = dict(prompt="a red circle", negative_prompt="blue", steps=2, width=64, height=64, seed=100,
            sampler_name="Euler", save_images=True)


def make_context(data, tiny, names):
    from webui.context import context_from_flags

    install_fixtures(data, names)
    return context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(tiny.single_file.parent),
                               "--ckpt", str(tiny.single_file)])


@pytest.fixture(scope="module")
def ctx(tiny_sd15, tmp_path_factory):
    """An app with the native all-hooks extension and the A1111 AlwaysOn fixture, UI built (A1111 params)."""
    from webui.ui.app import build_ui

    context = make_context(tmp_path_factory.mktemp("jobs"), tiny_sd15, ["native-all-hooks", "a1111-alwayson"])
    build_ui(context)  # the A1111 script's ui() gives its panel its params, as in the running app
    yield context
    context.queue.stop()


@pytest.fixture(scope="module")
def broken_ctx(tiny_sd15, tmp_path_factory):
    context = make_context(tmp_path_factory.mktemp("broken"), tiny_sd15, ["raising-hook", "bad-patch"])
    yield context
    context.queue.stop()


def run(context, **fields):
    request = GenerationRequest.from_dict({**BASE, **fields})[0].validate()
    return context.submit_txt2img(request, source="test").wait(600)


def calls(context):
    return [tuple(c) for c in context.extensions.apis["native-all-hooks"].calls]


def test_every_native_hook_runs_once_in_order(ctx):
    assert calls(ctx)[0] == ("model_loaded", "tiny-sd15")  # the startup model
    before = len(calls(ctx))
    result = run(ctx, batch_size=2, alwayson_scripts={"Native test panel": {"args": {"enabled": True,
                                                                                     "suffix": "sparkles"}}})
    job = calls(ctx)[before:]
    names = [c[0] for c in job]
    assert names == ["plan", "patch_enter", "step", "step", "image", "image", "before_save", "after_save",
                     "before_save", "after_save", "patch_exit", "after_job"]
    assert job[0] == ("plan", True) and job[2] == ("step", 1, 2) and job[-1] == ("after_job", 2)
    # The plan changed prompts and seeds of every image; the panel's param went into the infotext.
    assert result.prompts == ["a red circle, sparkles"] * 2
    assert result.seeds == [1100, 1101]
    assert job[4] == ("image", 0, 1100, "a red circle, sparkles")
    assert "Test suffix: sparkles" in result.infotexts[0]
    with Image.open(result.paths[0]) as png:
        saved = read_infotext(png)
    assert saved.endswith("Saved by: native-all-hooks") and "Seed: 1100" in saved
    assert not hasattr(ctx.models.current().pipe, "native_all_hooks_patched")  # the patch was undone
    assert result.comments == []


def test_panel_off_leaves_the_job_alone(ctx):
    result = run(ctx)
    assert result.prompts == ["a red circle"] and result.seeds == [100]
    assert "Test suffix" not in result.infotexts[0]


def test_a1111_alwayson_script_edits_prompts_through_p(ctx):
    panel = ctx.extensions.find_panel("append prompt")
    assert [p.name for p in panel.params] == ["enabled", "text"]  # from its ui() components
    result = run(ctx, n_iter=2, alwayson_scripts={"Append prompt": {"args": [True, "with a hat"]}})
    assert result.prompts == ["a red circle, with a hat"] * 2
    assert "Appended: with a hat" in result.infotexts[1]


HIRES = dict(enable_hr=True, hr_upscaler="Latent", hr_scale=1.5, denoising_strength=0.5)


@pytest.mark.parametrize("extra", [{}, HIRES], ids=["plain", "hires"])
def test_per_image_prompts_in_one_batch_match_separate_jobs(ctx, extra):
    """The plan seam: two prompts in one batch give the images those prompts give alone (with hires
    fix too: each image's second pass uses its own prompt, as A1111's all_hr_prompts)."""
    feature = ctx.core.features[-1]

    class TwoPrompts:
        name = "two-prompts"

        def prepare(self, p):
            p.plan = GenerationPlan(["a red circle", "a blue square"], ["", ""], [7, 8], [0, 0], 1, 2)

    ctx.core.features.insert(len(ctx.core.features), TwoPrompts())
    try:
        both = run(ctx, batch_size=2, negative_prompt="", **extra)
    finally:
        ctx.core.features.remove(next(f for f in ctx.core.features if getattr(f, "name", "") == "two-prompts"))
    assert ctx.core.features[-1] is feature
    alone = [run(ctx, prompt=p, seed=s, negative_prompt="", **extra)
             for p, s in (("a red circle", 7), ("a blue square", 8))]
    assert both.prompts == ["a red circle", "a blue square"] and both.seeds == [7, 8]
    for image, single in zip(both.images, alone):
        diff = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(single.images[0], dtype=np.int16))
        assert diff.max() <= 2, diff.max()
    assert not np.array_equal(np.asarray(both.images[0]), np.asarray(both.images[1]))


def test_batch_conditioning_pads_prompts_of_different_lengths():
    from webui.generation.conditioning import Conditioning
    from webui.generation.plan import batch_conditioning

    short = Conditioning(torch.ones(1, 77, 4), torch.zeros(1, 77, 4))
    long = Conditioning(torch.full((1, 154, 4), 2.0), torch.full((1, 154, 4), 3.0))
    empty = torch.full((1, 77, 4), 9.0)
    out = batch_conditioning([short, long], lambda: empty)
    assert out.prompt_embeds.shape == (2, 154, 4) and out.negative_prompt_embeds.shape == (2, 154, 4)
    assert torch.equal(out.prompt_embeds[0, 77:], empty[0])  # the short prompt padded with an empty chunk
    assert not out.negative_prompt_embeds[0].any()  # an all-zero (SDXL empty) negative stays zero
    assert batch_conditioning([short, short], lambda: empty) is short


def test_failing_hooks_and_a_patch_that_cannot_undo_itself(broken_ctx):
    unet = broken_ctx.models.current().pipe.unet
    original = {k: v.clone() for k, v in unet.state_dict().items()}
    loads = broken_ctx.models.stats.loads
    result = run(broken_ctx)
    assert len(result.images) == 1  # the job survived every failing hook
    text = "\n".join(result.comments)
    assert "raising-hook: plan hook failed: KeyError" in text
    assert "raising-hook: step hook failed: ZeroDivisionError: step hook failed on purpose" in text
    assert "bad-patch: patch exit (the model is reloaded before the next job) failed: RuntimeError" in text
    assert result.prompts == ["a red circle"]  # the failed plan edit was not applied
    # The model was reloaded from disk before the next job: its weights are the checkpoint's again.
    assert broken_ctx.models.stats.loads == loads + 1
    restored = broken_ctx.models.current().pipe.unet.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in original.items())
    record = broken_ctx.extensions.record("raising-hook")
    assert any("step hook failed" in w for w in record.warnings)  # shown in the load table too


def test_xyz_plot_two_samplers_by_two_cfg_saves_a_grid_with_legends(ctx):
    from webui.extensions import grids

    args = {"x_type": "Sampler", "x_values": "Euler, Euler a", "y_type": "CFG Scale", "y_values": "5, 7"}
    result = run(ctx, seed=-1, script_name="X/Y/Z plot", script_args=args)
    grid = result.images[0]
    cells = result.paths[1:]
    assert len(cells) == 4 and result.paths[0].name.startswith("grid-")
    infos = []
    for path in cells:
        with Image.open(path) as png:
            infos.append(read_infotext(png))
    assert [("Sampler: Euler a," in t, "CFG scale: 7," in t) for t in infos] == \
        [(False, False), (True, False), (False, True), (True, True)]
    assert len({t.split("Seed: ")[1].split(",")[0] for t in infos}) == 1  # one fixed seed for every cell
    with Image.open(result.paths[0]) as saved:
        assert saved.size == grid.size and "Sampler: Euler" in read_infotext(saved)
        pixels = np.asarray(saved.convert("L"))
    plain = grids.grid_with_legends([Image.new("RGB", (64, 64))] * 4, [[], []], [[], []])
    assert grid.width > plain.width and grid.height > plain.height  # room for the legends
    assert (pixels[:20, 70:] < 128).any(), "the column legends have dark text on the white margin"


def test_prompt_matrix_and_prompts_from_file(ctx):
    matrix = run(ctx, prompt="a circle|red|big", script_name="Prompt matrix", script_args={})
    assert matrix.prompts[1:] == ["a circle", "a circle, red", "a circle, big", "a circle, red, big"]
    assert len(set(matrix.seeds[1:])) == 1
    lines = "a square\n--prompt \"a green star\" --steps 3 --seed 5"
    listed = run(ctx, prompt="", script_name="Prompts from file or textbox", script_args={"prompt_txt": lines})
    assert listed.prompts == ["a square", "a green star"] and listed.seeds[1] == 5
    assert "Steps: 3" in listed.infotexts[1]
    with pytest.raises(Exception, match="line 2: unknown option '--bogus'"):
        run(ctx, script_name="Prompts from file or textbox", script_args={"prompt_txt": "ok\n--bogus 1"})


def test_script_generations_stay_within_the_request_budget(ctx):
    # The request itself is small; the script's second cell is over --max-image-pixels (2048x2048).
    args = {"x_type": "Size", "x_values": "64x64, 4096x4096"}
    with pytest.raises(Exception, match="4096x4096 is 16777216 pixels; at most"):
        run(ctx, script_name="X/Y/Z plot", script_args=args)
