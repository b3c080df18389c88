"""The bundled demo model and the code that trains and grades it.

Fast tests of the dataset generator, the pixel classifier and the reusable
training loop (resume must repeat an uninterrupted run), plus a handful of
prompts through the shipped single file to check the model still draws.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from webui.training.loop import LoopConfig, TrainLoop, warmup_cosine
from webui.training.shapes import (BACKGROUNDS, PALETTE, SHAPE_COLOURS, SHAPES, ShapeSpec, canonical_caption,
                                   classify, make_batch, random_caption, random_spec, render)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
SIDECAR = REPO / "models" / "Stable-diffusion" / "demo-shapes.config"


# ------------------------------------------------------------ dataset + classifier

def test_canonical_caption_uses_the_right_article():
    assert canonical_caption("circle", "red", "blue") == "a red circle on a blue background"
    assert canonical_caption("square", "orange", "white") == "an orange square on a white background"


def test_classifier_reads_rendered_shapes():
    rng = random.Random(0)
    specs = [random_spec(rng) for _ in range(300)]
    readings = [classify(render(sp)) for sp in specs]
    assert all(r.colour == sp.colour for r, sp in zip(readings, specs))
    assert all(r.background == sp.background for r, sp in zip(readings, specs))
    shape_ok = sum(r.shape == sp.shape for r, sp in zip(readings, specs))
    assert shape_ok >= 297, shape_ok


def test_classifier_sees_no_shape_on_a_blank_image():
    blank = Image.new("RGB", (64, 64), PALETTE["gray"])
    assert classify(blank).colour is None
    # A tiny square (too small to count as a drawn shape) is not a shape either.
    speck = render(ShapeSpec("square", "red", "gray", 32, 32, 2))
    assert classify(speck).shape is None


def test_every_palette_combination_is_generated():
    rng = random.Random(1)
    seen = {(sp.shape, sp.colour, sp.background) for sp in (random_spec(rng) for _ in range(6000))}
    expected = {(s, c, b) for s in SHAPES for c in SHAPE_COLOURS for b in BACKGROUNDS if b != c}
    assert seen == expected


def test_captions_never_name_a_wrong_attribute():
    rng = random.Random(2)
    words = set(PALETTE) | set(SHAPES)
    for _ in range(500):
        sp = random_spec(rng)
        caption = random_caption(sp, rng)
        named = {w.strip(",") for w in caption.split()} & words
        assert named <= {sp.shape, sp.colour, sp.background}, caption


def test_batches_are_a_pure_function_of_the_seed():
    a, caps_a, _ = make_batch(7, 4)
    b, caps_b, _ = make_batch(7, 4)
    c, _, _ = make_batch(8, 4)
    assert a.shape == (4, 3, 64, 64) and a.min() >= -1 and a.max() <= 1
    assert (a == b).all() and caps_a == caps_b
    assert not (a == c).all()


# ------------------------------------------------------------ training loop

def _tiny_loop(out: Path, max_steps: int, crash_at: int | None = None) -> TrainLoop:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    target = torch.tensor([[1.0, -2.0, 0.5]])

    def step_fn(step: int) -> torch.Tensor:
        if step == crash_at:
            raise KeyboardInterrupt
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(step))
        return (model(x) - x @ target.T).pow(2).mean()

    cfg = LoopConfig(out_dir=out, max_steps=max_steps, lr=0.05, warmup_steps=3, save_every=4, log_every=2,
                     ema_max_decay=0.9)
    return TrainLoop(cfg, {"model": model}, list(model.parameters()), step_fn)


def test_loop_learns_and_logs(tmp_path):
    loop = _tiny_loop(tmp_path, 60)
    loop.run()
    rows = (tmp_path / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,sec_per_step" and len(rows) == 31
    assert float(rows[-1].split(",")[1]) < 0.1 * float(rows[1].split(",")[1])
    assert (tmp_path / "state.pt").exists()


def test_resume_repeats_an_uninterrupted_run(tmp_path):
    straight = _tiny_loop(tmp_path / "a", 10)
    straight.run()
    crashed = _tiny_loop(tmp_path / "b", 10, crash_at=6)
    with pytest.raises(KeyboardInterrupt):
        crashed.run()
    resumed = _tiny_loop(tmp_path / "b", 10)
    resumed.run(resume=True)
    assert resumed.step == 10
    for p, q in zip(straight.params, resumed.params):
        assert torch.equal(p, q)
    for p, q in zip(straight.ema.shadow, resumed.ema.shadow):
        assert torch.equal(p, q)
    assert (tmp_path / "a" / "loss.csv").read_text().splitlines()[0] == "step,loss,lr,sec_per_step"
    logged = [int(r.split(",")[0]) for r in (tmp_path / "b" / "loss.csv").read_text().splitlines()[1:]]
    assert logged == [2, 4, 6, 8, 10]


def test_ema_weights_are_swapped_in_only_inside_the_context(tmp_path):
    loop = _tiny_loop(tmp_path, 5)
    loop.run()
    live = [p.detach().clone() for p in loop.params]
    with loop.export_weights():
        assert all(torch.equal(p, s) for p, s in zip(loop.params, loop.ema.shadow))
        assert not all(torch.equal(p, q) for p, q in zip(loop.params, live))
    assert all(torch.equal(p, q) for p, q in zip(loop.params, live))


def test_warmup_then_cosine_to_the_floor(tmp_path):
    cfg = LoopConfig(out_dir=tmp_path, max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert warmup_cosine(0, cfg) == pytest.approx(0.1)
    assert warmup_cosine(9, cfg) == pytest.approx(1.0)
    assert warmup_cosine(55, cfg) == pytest.approx(0.55)
    assert warmup_cosine(100, cfg) == pytest.approx(0.1)


# ------------------------------------------------------------ the shipped model

def test_shipped_file_is_an_fp16_a1111_checkpoint_with_a_weightless_sidecar():
    from safetensors import safe_open

    assert SHIPPED.stat().st_size <= 50 * 1024 * 1024
    with safe_open(str(SHIPPED), "pt") as f:
        keys = list(f.keys())
        assert all(f.get_slice(k).get_dtype() == "F16" for k in keys)
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("first_stage_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.") for k in keys)
    index = json.loads((SIDECAR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    scheduler = json.loads((SIDECAR / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerAncestralDiscreteScheduler"
    assert scheduler["clip_sample"] is False  # DDIM built from this config must not clip latents
    assert (SIDECAR / "tokenizer" / "vocab.json").exists()
    weights = [p for p in SIDECAR.rglob("*") if p.suffix in {".safetensors", ".bin", ".ckpt", ".pt"}]
    assert weights == []


@pytest.fixture(scope="module")
def demo_generate():
    """The shipped file through the project's own loading and sampling: manager, queue, core.generate."""
    from bench.eval_demo import core_generate

    return core_generate(str(SHIPPED), sampler="DPM++ 2M")


# A handful of prompts across colours, shapes and backgrounds (DPM++ 2M, the UI default; 20 steps, CFG 7).
DRAW_CASES = [
    ("red", "circle", "blue", 1),
    ("green", "square", "white", 1),
    ("blue", "triangle", "yellow", 1),
    ("yellow", "circle", "black", 2),
    ("purple", "square", "gray", 2),
    ("orange", "triangle", "green", 2),
]


def test_demo_model_still_draws(demo_generate):
    readings = [classify(demo_generate(canonical_caption(s, c, b), "", seed)) for c, s, b, seed in DRAW_CASES]
    colours = sum(r.colour == c for r, (c, _, _, _) in zip(readings, DRAW_CASES))
    shapes = sum(r.shape == s for r, (_, s, _, _) in zip(readings, DRAW_CASES))
    backgrounds = sum(r.background == b for r, (_, _, b, _) in zip(readings, DRAW_CASES))
    assert colours >= 5, readings
    assert shapes >= 4, readings
    assert backgrounds >= 5, readings


@pytest.mark.parametrize("prompt", ["a circle on a blue background", "a circle"])
def test_negative_prompt_removes_red(demo_generate, prompt):
    readings = [classify(demo_generate(prompt, "red", seed)) for seed in range(4)]
    assert all(r.colour not in (None, "red") for r in readings), readings
    assert all(r.background != "red" for r in readings), readings
