"""Networks through the real generation core: LoRA tags, embeddings, hypernetworks and VAE choice
change the image and the infotext the way A1111's do; bad or missing files never stop a job."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests import networks_kit as nk
from webui.generation.core import generate
from webui.generation.request import GenerationRequest, RequestError

SMALL = dict(width=64, height=64, steps=2, seed=123, sampler_name="Euler", save_images=False)


@pytest.fixture(scope="module")
def ctx(tiny_sd15, tmp_path_factory):
    from webui.context import context_from_flags

    data = tmp_path_factory.mktemp("networks-data")
    nk.populate(data)
    context = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(tiny_sd15.single_file.parent),
                                  "--ckpt", str(tiny_sd15.single_file)])
    yield context
    context.queue.stop()


def run(ctx, **fields):
    return generate(GenerationRequest(**{**SMALL, **fields}), ctx.core)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def params(text: str) -> str:
    return text.splitlines()[-1]


def test_lora_tag_changes_pixels_and_weight_zero_changes_nothing(ctx):
    plain = run(ctx, prompt="a red circle")
    zero = run(ctx, prompt="a red circle <lora:style:0>")
    assert np.array_equal(pixels(plain), pixels(zero))
    styled = run(ctx, prompt="a red circle <lora:style:1>")
    assert np.abs(pixels(styled) - pixels(plain)).mean() > 1
    assert re.search(r'Lora hashes: "style: [0-9a-f]{12}"', params(styled.infotexts[0]))
    assert styled.infotexts[0].startswith("a red circle <lora:style:1>\n")  # PNG Info gets the tag back
    again = run(ctx, prompt="a red circle")  # every LoRA removed: the exact same image as before
    assert np.array_equal(pixels(plain), pixels(again))
    assert "Lora hashes" not in again.infotexts[0] and not again.comments


def test_alias_subfolder_te_unet_weights_and_two_loras(ctx):
    both = run(ctx, prompt="a red circle <lora:style-alias:0.5:1> <lora:other:1>")
    assert re.search(r'Lora hashes: "style-alias: [0-9a-f]{12}, other: [0-9a-f]{12}"', params(both.infotexts[0]))
    one = run(ctx, prompt="a red circle <lora:style:0.5:1>")
    assert not np.array_equal(pixels(both), pixels(one))
    patcher = ctx.networks.patcher(ctx.models.current().pipe)
    assert patcher.applied_names == ["style"]


def test_missing_broken_and_wrong_base_loras_are_reported_and_the_job_runs(ctx):
    plain = run(ctx, prompt="a red circle")
    result = run(ctx, prompt="a red circle <lora:nope:1> <lora:broken:1> <lora:xl-only:1>")
    assert np.array_equal(pixels(plain), pixels(result))
    text = "\n".join(result.comments)
    assert "Networks not found: nope" in text
    assert "LoRA broken not used: broken.safetensors" in text
    assert "LoRA xl-only skipped:" in text and "another base" in text


def test_a_weight_that_is_not_a_number_is_a_request_error(ctx):
    with pytest.raises(RequestError, match="prompt: <lora:style:heavy>: the weight must be a number"):
        GenerationRequest(prompt="x <lora:style:heavy>").validate()


def test_embedding_by_name_and_ti_hashes(ctx):
    named = run(ctx, prompt="a bluesq on white", negative_prompt="bluesq")
    words = run(ctx, prompt="a blue square on white", negative_prompt="blue square")
    assert np.array_equal(pixels(named), pixels(words))
    assert re.search(r'TI hashes: "bluesq: [0-9a-f]{12}"', params(named.infotexts[0]))
    assert "TI hashes" not in words.infotexts[0]


def test_hypernetwork_tag_changes_the_image_and_unhooks_after(ctx):
    plain = run(ctx, prompt="a red circle")
    hyper = run(ctx, prompt="a red circle <hypernet:hyper:1>")
    assert not np.array_equal(pixels(plain), pixels(hyper))
    assert hyper.infotexts[0].startswith("a red circle <hypernet:hyper:1>")
    assert np.array_equal(pixels(run(ctx, prompt="a red circle")), pixels(plain))
    missing = run(ctx, prompt="a red circle <hypernet:gone:1>")
    assert "Hypernetworks not found: gone" in missing.comments


def test_vae_override_for_one_job_then_back_to_the_checkpoints_own(ctx):
    plain = run(ctx, prompt="a red circle")
    alt = run(ctx, prompt="a red circle", override_settings={"sd_vae": "alt.safetensors"})
    assert np.abs(pixels(alt) - pixels(plain)).mean() > 1
    assert re.search(r"VAE hash: [0-9a-f]{10}, VAE: alt.safetensors", params(alt.infotexts[0]))
    back = run(ctx, prompt="a red circle")  # setting is Automatic: no VAE named after the checkpoint
    assert np.array_equal(pixels(back), pixels(plain)) and "VAE" not in params(back.infotexts[0])


def test_sdxl_vae_on_an_sd_model_is_refused_and_the_previous_stays(ctx):
    from webui.models.networks.vae import VaeError

    ctx.networks.select_vae(ctx.models, "alt.safetensors")
    try:
        with pytest.raises(VaeError, match="sdxl_vae.safetensors is an SDXL VAE; the loaded model is SD 1.x / 2.x"):
            ctx.networks.select_vae(ctx.models, "sdxl_vae.safetensors")
        assert ctx.settings.get("sd_vae") == "alt.safetensors"
        assert ctx.networks.vaes.current(ctx.models.current().pipe).name == "alt.safetensors"
        result = run(ctx, prompt="a red circle", override_settings={"sd_vae": "sdxl_vae.safetensors"})
        assert any("VAE not changed" in c for c in result.comments)
        assert "VAE: alt.safetensors" in params(result.infotexts[0])
    finally:
        ctx.networks.select_vae(ctx.models, "Automatic")


def test_networks_feature_fills_the_processing_seams(ctx):
    """The feature the refactored core calls: infotext keys, comments, embeddings; p.prompt kept as written."""
    import contextlib
    from types import SimpleNamespace

    from webui.models.networks.feature import NetworksFeature

    with ctx.models.active() as model, contextlib.ExitStack() as stack:
        p = SimpleNamespace(request=GenerationRequest(override_settings={"sd_vae": "alt.safetensors"}), model=model,
                            prompt="a bluesq <lora:style:1> <lora:nope:1>", negative_prompt="", extra_infotext={},
                            comments=[], embeddings=None, enter=stack.enter_context)
        NetworksFeature(ctx.networks).prepare(p)
        assert p.prompt == "a bluesq <lora:style:1> <lora:nope:1>"
        assert list(p.extra_infotext) == ["VAE hash", "VAE", "Lora hashes", "TI hashes"]
        assert p.extra_infotext["VAE"] == "alt.safetensors" and p.extra_infotext["TI hashes"].startswith("bluesq: ")
        assert p.comments == ["Networks not found: nope"] and list(p.embeddings.used) == ["bluesq"]
        assert ctx.networks.patcher(model.pipe).applied_names == ["style"]


def test_files_added_while_running_are_found_without_refresh(ctx):
    import shutil

    lora_dir, emb_dir = ctx.paths.lora_dir, ctx.paths.embeddings_dir
    shutil.copy(lora_dir / "style.safetensors", lora_dir / "late.safetensors")
    shutil.copy(emb_dir / "bluesq.safetensors", emb_dir / "bluesq-late.safetensors")
    try:
        result = run(ctx, prompt="a bluesq-late <lora:late:1>")
        assert not result.comments
        assert re.search(r'Lora hashes: "late: [0-9a-f]{12}", TI hashes: "bluesq-late: [0-9a-f]{12}"',
                         params(result.infotexts[0]))
    finally:
        (lora_dir / "late.safetensors").unlink()
        (emb_dir / "bluesq-late.safetensors").unlink()
