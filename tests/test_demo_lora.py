"""The shipped demo LoRA on the shipped (unmodified) demo model, through `<lora:demo-pink-cyan:1>`.

A handful of cases the full eval (bench/eval_demo_lora.py, docs/training.md) drew right for both
seeds; the model alone draws none of them in pink or cyan.
"""
from pathlib import Path

import pytest
from safetensors.torch import load_file

from webui.training.lora import is_kohya_key, read_metadata
from webui.training.shapes import ALL_COLOURS, canonical_caption, classify

ROOT = Path(__file__).resolve().parents[1]
LORA = ROOT / "models" / "Lora" / "demo-pink-cyan.safetensors"
CASES = [("pink", "circle", "blue"), ("pink", "square", "black"), ("cyan", "circle", "white"),
         ("cyan", "triangle", "yellow")]


def test_shipped_file_is_a_small_kohya_locon_for_the_demo_model():
    assert LORA.stat().st_size <= 2_000_000
    assert all(is_kohya_key(k) for k in load_file(str(LORA)))
    meta = read_metadata(LORA)
    assert meta["ss_sd_model_name"] == "demo-shapes.safetensors" and meta["ss_base_model_version"] == "sd_v1"


@pytest.fixture(scope="module")
def generate():
    from bench.eval_demo_lora import make_generator

    gen, ctx = make_generator(LORA, "DPM++ 2M", 20, via="tag")
    yield gen
    ctx.queue.stop()


def test_the_tag_draws_pink_and_cyan_the_model_alone_does_not(generate):
    with_lora = [classify(generate(canonical_caption(s, c, b), 11, True), ALL_COLOURS).colour for c, s, b in CASES]
    without = [classify(generate(canonical_caption(s, c, b), 11, False), ALL_COLOURS).colour for c, s, b in CASES]
    assert sum(got == c for got, (c, _, _) in zip(with_lora, CASES)) >= 3, with_lora
    assert not any(got in ("pink", "cyan") for got in without), without
