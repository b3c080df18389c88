"""LoRA training on the tiny models: weights change, kohya names + metadata, save/reload, resume, bad input."""
import json
import re
import time

import pytest
import torch
from safetensors.torch import load_file

from webui.generation.progress import Progress
from webui.training.lora import LoRANetwork, NetworkSpec, is_kohya_key, network_from_file, read_metadata
from webui.training.lora_run import LoraTrainer, text_encoders
from webui.training.runs import RunState
from webui.training.settings import LoraSettings, SettingsError


def settings(folder, name, **kw):
    base = dict(name=name, data_dir=str(folder), max_train_steps=4, batch_size=2, unet_lr=1e-3,
                text_encoder_lr=1e-3, save_every_n_steps=2, sample_every_n_steps=0, save_precision="float")
    return LoraSettings(**{**base, **kw}).validate()


def train(ctx, s, progress=None):
    state = RunState("lora", s.name, ctx.paths.data_dir, ctx.paths.lora_dir / f"{s.name}.safetensors")
    with ctx.models.active() as model:
        LoraTrainer(s, model, ctx.paths.lora_dir, ctx.paths.data_dir, state, progress or Progress(), None).run()
    return state


class StopAfter(Progress):
    """A progress whose interrupt fires once ``n`` optimiser steps are recorded (the UI's Interrupt button)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def step(self, step, latents=None):
        super().step(step, latents)
        if step >= self.n:
            self.interrupt()


def unet_out(pipe, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lat = torch.randn(1, 4, 32, 32, generator=gen)
    cond = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=gen)
    with torch.no_grad():
        return pipe.unet(lat, torch.tensor([500]), cond).sample


def test_training_changes_weights_saves_kohya_file_and_reloads(app_context, train_folder):
    ctx = app_context
    pipe = ctx.models.current().pipe
    before = unet_out(pipe)
    state = train(ctx, settings(train_folder, "t-basic"))
    assert state.state == "done" and state.step == 4 and [s for s, _ in state.losses] == [1, 2, 3, 4]
    assert any("no .txt caption" in n and "'shapes'" in n for n in state.notes)
    # The borrowed model is exactly as before: patches removed, nothing written into base weights.
    assert torch.equal(unet_out(pipe), before)
    assert all(not p.requires_grad for p in pipe.unet.parameters()) is False  # flags restored to the loader's
    out = ctx.paths.lora_dir / "t-basic.safetensors"
    weights = load_file(str(out))
    assert weights and all(is_kohya_key(k) for k in weights)
    ups = [v for k, v in weights.items() if k.endswith("lora_up.weight")]
    assert any(v.abs().sum() > 0 for v in ups), "lora_up starts at zero; training must move it"
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in weights)
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k") for k in weights)
    meta = read_metadata(out)
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_network_dim"] == "16"
    assert meta["ss_network_alpha"] == "8.0" and meta["ss_network_module"] == "networks.lora"
    assert meta["ss_steps"] == "4" and meta["ss_resolution"] == "(64, 64)" and meta["ss_output_name"] == "t-basic"
    assert json.loads(meta["ss_tag_frequency"])["3_shapes"]["shape"] == 3
    assert json.loads(meta["ss_dataset_dirs"]) == {"3_shapes": {"n_repeats": 3, "img_count": 4}}
    assert meta["ss_sd_model_name"] == "tiny-sd15.safetensors" and meta["ss_new_sd_model_hash"]

    # Reload from the file and reproduce the trained model's output exactly (saved as float).
    net = network_from_file(out, "sd15", pipe.unet, text_encoders(pipe)).attach()
    try:
        reloaded = unet_out(pipe)
    finally:
        net.detach()
    assert not torch.equal(reloaded, before)
    # diffusers' own kohya loader takes the file and gives the same UNet output.
    pipe.load_lora_weights(str(out), adapter_name="check")
    try:
        theirs = unet_out(pipe)
    finally:
        pipe.unload_lora_weights()
    torch.testing.assert_close(theirs, reloaded, rtol=1e-5, atol=1e-5)
    assert torch.equal(unet_out(pipe), before)


def test_resume_continues_the_same_loss_curve(app_context, train_folder):
    ctx = app_context
    straight = train(ctx, settings(train_folder, "t-straight", max_train_steps=6, flip_aug=True,
                                   shuffle_caption=True, caption_dropout_rate=0.3, noise_offset=0.05))
    stopped = train(ctx, settings(train_folder, "t-resumed", max_train_steps=6, flip_aug=True, shuffle_caption=True,
                                  caption_dropout_rate=0.3, noise_offset=0.05), StopAfter(3))
    assert stopped.state == "interrupted" and stopped.step == 3
    # The interrupted run left a loadable LoRA at its last step.
    meta = read_metadata(ctx.paths.lora_dir / "t-resumed.safetensors")
    assert meta["ss_steps"] == "3"
    resumed = train(ctx, settings(train_folder, "t-resumed", max_train_steps=6, flip_aug=True, shuffle_caption=True,
                                  caption_dropout_rate=0.3, noise_offset=0.05, resume=True))
    assert resumed.state == "done" and resumed.start_step == 3
    assert [s for s, _ in resumed.losses] == [1, 2, 3, 4, 5, 6]
    for (s1, a), (s2, b) in zip(straight.losses, resumed.losses):
        # Steps before the resume come back from loss.csv (5 decimals); the ones after are recomputed.
        tolerance = dict(abs=1e-5) if s1 <= 3 else dict(rel=1e-5, abs=1e-7)
        assert s1 == s2 and a == pytest.approx(b, **tolerance), f"step {s1}: {a} vs {b}"
    one = load_file(str(ctx.paths.lora_dir / "t-straight.safetensors"))
    two = load_file(str(ctx.paths.lora_dir / "t-resumed.safetensors"))
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-5, atol=1e-6)
    rows = (ctx.paths.data_dir / "train" / "lora" / "t-resumed" / "loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_locon_unet_only_and_text_encoder_only(app_context, train_folder):
    ctx = app_context
    train(ctx, settings(train_folder, "t-locon", network_type="LoCon", text_encoder_lr=0, rank=4, alpha=0,
                        conv_rank=2, max_train_steps=1))
    weights = load_file(str(ctx.paths.lora_dir / "t-locon.safetensors"))
    assert not any(k.startswith("lora_te") for k in weights)
    assert weights["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[1:] == (32, 3, 3)
    assert float(weights["lora_unet_down_blocks_1_attentions_0_proj_in.alpha"]) == 4.0  # alpha 0 means alpha = rank
    assert json.loads(read_metadata(ctx.paths.lora_dir / "t-locon.safetensors")["ss_network_args"])["conv_dim"] == "2"
    train(ctx, settings(train_folder, "t-te", unet_lr=0, max_train_steps=1, save_precision="fp16"))
    weights = load_file(str(ctx.paths.lora_dir / "t-te.safetensors"))
    assert weights and all(k.startswith("lora_te_") for k in weights)
    assert {v.dtype for v in weights.values()} == {torch.float16}


def test_sdxl_uses_kohya_sdxl_names_and_diffusers_loads_them(tiny_sdxl):
    pipe = tiny_sdxl.load_pretrained()
    net = LoRANetwork(NetworkSpec("LoCon", rank=4, alpha=2, conv_rank=2, conv_alpha=1), "sdxl", pipe.unet,
                      [pipe.text_encoder, pipe.text_encoder_2])
    names = list(net.adapters)
    assert any(n.startswith("lora_te1_text_model_encoder_layers_0_") for n in names)
    assert any(n.startswith("lora_te2_text_model_encoder_layers_9_mlp_fc2") for n in names)
    # kohya trains SDXL on the LDM UNet: input_blocks / middle_block / output_blocks names.
    assert "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q" in names  # tiny: 1 layer per block
    assert "lora_unet_input_blocks_1_0_in_layers_2" in names
    assert not any("down_blocks" in n or "up_blocks" in n for n in names)
    with torch.no_grad():
        for m in net.adapters.values():
            m.lora_up.weight.normal_(0, 0.05)
    gen = torch.Generator().manual_seed(0)
    lat, cond = torch.randn(1, 4, 32, 32, generator=gen), torch.randn(1, 77, 96, generator=gen)
    added = {"text_embeds": torch.randn(1, 32, generator=gen), "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64.0]])}

    def run():
        with torch.no_grad():
            return pipe.unet(lat, torch.tensor([300]), cond, added_cond_kwargs=added).sample

    base = run()
    net.attach()
    mine = run()
    net.detach()
    assert torch.equal(run(), base) and not torch.equal(mine, base)
    pipe.load_lora_weights(net.kohya_state_dict(torch.float32))
    torch.testing.assert_close(run(), mine, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field,value,message", [
    ("rank", 0, "rank: must be a whole number from 1"),
    ("unet_lr", "fast", "unet_lr: must be a number"),
    ("text_encoder_lr", float("nan"), "text_encoder_lr: must be a number"),
    ("name", "../evil", "not a usable file name"),
    ("network_type", "LoHa", "network_type: must be one of LoRA, LoCon"),
    ("max_train_steps", -5, "max_train_steps"),
])
def test_bad_settings_name_the_field(train_folder, field, value, message):
    with pytest.raises(SettingsError) as info:
        LoraSettings.from_dict({"name": "ok", "data_dir": str(train_folder), field: value})
    assert message in str(info.value)
    assert info.value.as_dicts()[0]["field"] == field


def test_submit_refuses_bad_folders_and_overwrites(app_context, train_folder, tmp_path):
    ctx = app_context
    service = ctx.training
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "broken.png").write_bytes(b"not a png")
    for folder, text in ((tmp_path / "empty", "no readable images"), (tmp_path / "missing", "does not exist"),
                         (tmp_path / "junk", "could not be read: broken.png")):
        with pytest.raises(SettingsError, match=re.escape(text)):
            service.submit_lora({"name": "x", "data_dir": str(folder)}, ctx.queue)
    (ctx.paths.lora_dir / "taken.safetensors").write_bytes(b"keep me")
    with pytest.raises(SettingsError, match="already exists: tick Overwrite"):
        service.submit_lora({"name": "taken", "data_dir": str(train_folder)}, ctx.queue)
    with pytest.raises(SettingsError, match="nothing to resume"):
        service.submit_lora({"name": "never-ran", "data_dir": str(train_folder), "resume": True}, ctx.queue)
    assert (ctx.paths.lora_dir / "taken.safetensors").read_bytes() == b"keep me"
    with pytest.raises(SettingsError, match="unknown setting"):
        service.submit_lora({"name": "x", "data_dir": str(train_folder), "network_dimm": 4}, ctx.queue)


def test_generation_waits_for_training_and_says_why(app_context, train_folder):
    from webui.generation.request import GenerationRequest
    from webui.training.service import wait_text

    ctx = app_context
    submitted = ctx.training.submit_lora(settings(train_folder, "t-queue", max_train_steps=300, overwrite=True),
                                         ctx.queue)
    job = submitted.job
    deadline = time.monotonic() + 120
    while submitted.state.step < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    generation = ctx.submit_txt2img(GenerationRequest(prompt="a cube", steps=2, width=64, height=64,
                                                      save_images=False))
    text = wait_text(ctx.queue, generation)
    assert text.startswith("In queue: 1 job(s) ahead. Running now: train-lora (Training LoRA t-queue: step ")
    job.progress.interrupt()
    assert job.wait(120).state == "interrupted"
    assert len(generation.wait(120).images) == 1
    assert wait_text(ctx.queue, generation) == ""


def test_sdxl_training_run_with_size_conditioning(tiny_sdxl, train_folder, tmp_path):
    from types import SimpleNamespace

    pipe = tiny_sdxl.load_pretrained()
    info = SimpleNamespace(filename=tiny_sdxl.single_file, shorthash="abc", sha256="abc" * 4, model_name="tiny-sdxl")
    model = SimpleNamespace(info=info, pipe=pipe, arch="sdxl", native_size=64, prediction_type="epsilon",
                            scheduler_config=dict(pipe.scheduler.config))
    s = settings(train_folder, "t-sdxl", max_train_steps=2, network_type="LoCon", rank=4, conv_rank=2)
    state = RunState("lora", s.name, tmp_path, tmp_path / "lora" / "t-sdxl.safetensors")
    LoraTrainer(s, model, tmp_path / "lora", tmp_path, state, Progress(), None).run()
    assert state.state == "done" and len(state.losses) == 2
    path = tmp_path / "lora" / "t-sdxl.safetensors"
    weights = load_file(str(path))
    assert any(k.startswith("lora_te1_") for k in weights) and any(k.startswith("lora_te2_") for k in weights)
    assert read_metadata(path)["ss_base_model_version"] == "sdxl_base_v1-0"
    pipe.load_lora_weights(str(path))  # diffusers' kohya loader takes the SDXL file (sgm UNet names)
    assert pipe.get_active_adapters()


def test_training_submitted_during_a_generation_waits_and_says_why(app_context, train_folder):
    from webui.generation.request import GenerationRequest
    from webui.training.service import wait_text

    ctx = app_context
    generation = ctx.submit_txt2img(GenerationRequest(prompt="a cube", steps=150, width=64, height=64,
                                                      save_images=False))
    deadline = time.monotonic() + 60
    while ctx.queue.current() is not generation and time.monotonic() < deadline:
        time.sleep(0.05)
    submitted = ctx.training.submit_lora(settings(train_folder, "t-behind", max_train_steps=1, overwrite=True),
                                         ctx.queue)
    assert submitted.state.state == "queued"
    assert wait_text(ctx.queue, submitted.job).startswith("In queue: 1 job(s) ahead. Running now: txt2img")
    generation.progress.interrupt()  # stops the generation early; the training then runs
    assert submitted.job.wait(120).state == "done"
