"""Prompt editing, alternation and AND applied per model call (webui/generation/guidance.py)."""
from contextlib import contextmanager

import numpy as np
import torch

from webui.generation import conditioning, guidance, samplers, seeds
from webui.generation.conditioning import Conditioning
from webui.generation.vae_codec import decode as _decode
from webui.generation.request import GenerationRequest


# --- the plan, with a stand-in encoder -------------------------------------------------------------

def _fake_encoder(log):
    """Encodes a text as a [1, 77 * chunks, 4] tensor filled with a number unique to the text."""
    codes = {}

    def code(text):
        return codes.setdefault(text, float(len(codes) + 1))

    def encode(prompt, negative):
        log.append((prompt, negative))
        length = 154 if "long" in prompt else 77
        return Conditioning(torch.full((1, length, 4), code(prompt)), torch.full((1, 77, 4), -code(negative)))

    return encode, code


def test_split_and_follows_a1111():
    assert guidance.split_and("a cat AND a dog :1.2") == [("a cat", 1.0, False), (" a dog", 1.2, True)]
    assert guidance.split_and("a cat:1.5") == [("a cat", 1.5, True)]
    assert guidance.split_and("a (cat:1.2)") == [("a (cat:1.2)", 1.0, False)]
    assert guidance.split_and("ANDROID") == [("ANDROID", 1.0, False)]
    assert guidance.split_and("x AND y:-0.5 AND z") == [("x", 1.0, False), (" y", -0.5, True), (" z", 1.0, False)]


def test_prompt_editing_switches_at_the_step_a1111_switches():
    log = []
    encode, code = _fake_encoder(log)
    plan = guidance.build_plan("[red:blue:4] circle", "bad", 10, encode)
    assert not plan.trivial
    texts = [plan.at(call)[1][0][1].embeds[0, 0, 0].item() for call in range(10)]
    # A1111: the entry ending at step 4 serves model calls 0..4 (call index <= end).
    assert texts == [code("red circle")] * 5 + [code("blue circle")] * 5
    assert plan.at(3)[0].embeds[0, 0, 0].item() == -code("bad")


def test_alternation_alternates_each_call():
    log = []
    encode, code = _fake_encoder(log)
    plan = guidance.build_plan("[cat|dog]", "", 6, encode)
    seen = [plan.at(call)[1][0][1].embeds[0, 0, 0].item() for call in range(6)]
    cat, dog = code("cat"), code("dog")
    assert seen == [cat, cat, dog, cat, dog, cat]  # A1111's schedule ends at 1, 2, ...: calls 0 and 1 both use step 1


def test_plain_prompt_plan_is_trivial_and_encodes_nothing_new():
    log = []
    encode, _ = _fake_encoder(log)
    base = encode("a plain prompt", "neg")
    plan = guidance.build_plan("a plain prompt", "neg", 20, encode, base)
    assert plan.trivial and len(log) == 1
    assert not guidance.hook_needed(plan, samplers.build_scheduler({}, "Euler", "Automatic"))
    assert guidance.hook_needed(plan, samplers.build_scheduler({}, "DDIM CFG++", "Automatic"))
    assert guidance.hook_needed(plan, samplers.build_scheduler({}, "DPM adaptive", "Automatic"))
    assert not guidance.build_plan("a:1.0", "", 20, encode).trivial  # a written weight is AND syntax


class FakeUNet(torch.nn.Module):
    """eps = sample * mean(encoder_hidden_states): the rows show which conditioning they saw."""

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=True, **kwargs):
        scale = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (sample * scale,)


@contextmanager
def hooked(plan, scheduler, batch, cfg):
    unet = FakeUNet()
    pipe = type("P", (), {"unet": unet, "scheduler": scheduler})()
    with guidance.guidance_hook(pipe, plan, batch, cfg) as hook:
        yield unet, hook
    assert "forward" not in unet.__dict__  # restored


def test_and_combines_guidance_as_a1111_and_the_pipeline_cfg_finishes_it():
    log = []
    encode, code = _fake_encoder(log)
    plan = guidance.build_plan("one AND two :0.5 AND long three:-0.25", "neg", 4, encode)
    sched = samplers.build_scheduler({}, "Euler", "Automatic")
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    cfg = 7.0
    with hooked(plan, sched, 2, cfg) as (unet, hook):
        pipeline_batch = torch.cat([x, x])
        out = unet(pipeline_batch, 10, encoder_hidden_states=torch.zeros(4, 77, 4), return_dict=False)[0]
    # The hook ran one batch: uncond + 3 sub-prompts, padded to the longest (154 tokens): sub-prompts by
    # repeating their last vector (A1111), the negative with the empty prompt's chunk (as the core pads).
    hidden = hook.last_hidden
    assert hidden.shape == (8, 154, 4)
    c1, c2, c3 = code("one"), code(" two"), code(" long three")
    eps_u = x * ((-code("neg") + code("")) / 2)
    reference = eps_u + cfg * (1.0 * (x * c1 - eps_u) + 0.5 * (x * c2 - eps_u) - 0.25 * (x * c3 - eps_u))
    noise_uncond, noise_text = out.chunk(2)
    torch.testing.assert_close(noise_uncond + cfg * (noise_text - noise_uncond), reference, rtol=1e-4, atol=1e-4)


def test_without_pipeline_cfg_the_hook_applies_the_scale_itself():
    log = []
    encode, code = _fake_encoder(log)
    plan = guidance.build_plan("one AND two", "neg", 4, encode)
    sched = samplers.build_scheduler({}, "Euler", "Automatic")
    x = torch.ones(1, 4, 2, 2)
    with hooked(plan, sched, 1, 1.0) as (unet, _):
        out = unet(x, 10, encoder_hidden_states=torch.zeros(1, 77, 4), return_dict=False)[0]
    u, c1, c2 = -code("neg"), code("one"), code(" two")
    torch.testing.assert_close(out, x * (u + (c1 - u) + (c2 - u)))


# --- through the real core on the tiny SD 1.5 model --------------------------------------------------

def req(**kw):
    base = dict(prompt="a red circle", negative_prompt="blue", seed=4321, steps=4, width=64, height=64,
                sampler_name="Euler", save_images=False)
    base.update(kw)
    return GenerationRequest(**base)


@contextmanager
def recorded_unet_inputs(ctx):
    """Record the encoder_hidden_states the real UNet forward receives (below the guidance hook)."""
    with ctx.models.active() as model:
        unet = model.pipe.unet
    seen = []
    cls_forward = type(unet).forward

    def record(*args, **kwargs):
        seen.append(kwargs["encoder_hidden_states"].detach().clone())
        return cls_forward(unet, *args, **kwargs)

    unet.forward = record
    try:
        yield seen
    finally:
        del unet.forward


def _embeds(ctx, text):
    with ctx.models.active() as model:
        return conditioning.encode_prompts(model.pipe, text, "").prompt_embeds


def test_prompt_editing_changes_the_unet_conditioning_at_the_right_step(sd15):
    with recorded_unet_inputs(sd15) as seen:
        result = sd15.queue.run(req(prompt="[a red circle:a blue square:2]"))
    assert len(seen) == 4 and result.images
    first, second = _embeds(sd15, "a red circle")[0], _embeds(sd15, "a blue square")[0]
    conds = [hidden[1] for hidden in seen]  # row 0 is the negative, row 1 the prompt
    for call, cond in enumerate(conds):
        expected = first if call <= 2 else second  # [from:to:2] over 4 steps: calls 0..2, then 3
        torch.testing.assert_close(cond, expected.to(cond.dtype))
    torch.testing.assert_close(seen[0][0], seen[3][0])  # the negative does not change
    plain = sd15.queue.run(req(prompt="a blue square"))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(result.images[0]))
    assert result.infotexts[0].startswith("[a red circle:a blue square:2]")


def test_alternation_alternates_the_unet_conditioning(sd15):
    with recorded_unet_inputs(sd15) as seen:
        sd15.queue.run(req(prompt="[red|blue] circle", steps=5))
    red, blue = _embeds(sd15, "red circle")[0], _embeds(sd15, "blue circle")[0]
    picked = ["red" if torch.allclose(h[1], red, atol=1e-5) else "blue" if torch.allclose(h[1], blue, atol=1e-5)
              else "?" for h in seen]
    assert picked == ["red", "red", "blue", "red", "blue"]


def test_and_matches_a_reference_computed_by_hand(sd15):
    prompt, negative, cfg, steps, seed = "a red circle AND a blue square :0.7", "green", 6.0, 3, 99
    result = sd15.queue.run(req(prompt=prompt, negative_prompt=negative, cfg_scale=cfg, steps=steps, seed=seed))
    with sd15.models.active() as model:
        pipe = model.pipe
        sched = samplers.build_scheduler(model.scheduler_config, "Euler", "Automatic")
        sched.set_timesteps(steps)
        e_u = conditioning.encode_prompts(pipe, "", negative).negative_prompt_embeds
        e_1 = conditioning.encode_prompts(pipe, "a red circle", "").prompt_embeds
        e_2 = conditioning.encode_prompts(pipe, " a blue square", "").prompt_embeds
        shape = (pipe.vae.config.latent_channels, 64 // pipe.vae_scale_factor, 64 // pipe.vae_scale_factor)
        x = seeds.make_noise(shape, [seed]) * sched.init_noise_sigma
        with torch.no_grad():
            for t in sched.timesteps:
                model_in = sched.scale_model_input(x, t)
                eps = [pipe.unet(model_in, t, encoder_hidden_states=e).sample for e in (e_u, e_1, e_2)]
                guided = eps[0] + cfg * (1.0 * (eps[1] - eps[0]) + 0.7 * (eps[2] - eps[0]))
                x = sched.step(guided, t, x).prev_sample
            image = pipe.image_processor.postprocess(_decode(pipe, x).float(), output_type="pil")[0]
    got, want = np.asarray(result.images[0], dtype=np.int16), np.asarray(image, dtype=np.int16)
    assert np.abs(got - want).max() <= 1
    single = sd15.queue.run(req(prompt="a red circle", negative_prompt=negative, cfg_scale=cfg, steps=steps, seed=seed))
    assert np.abs(np.asarray(single.images[0], dtype=np.int16) - got).max() > 5  # the second sub-prompt counts


def test_and_on_sdxl_uses_each_sub_prompts_pooled_embedding(app_context, tiny_sdxl, tiny_sd15):
    app_context.models.select(str(tiny_sdxl.single_file))
    try:
        both = app_context.queue.run(req(prompt="a red circle AND a blue square", steps=2))
        one = app_context.queue.run(req(prompt="a red circle", steps=2))
        assert not np.array_equal(np.asarray(both.images[0]), np.asarray(one.images[0]))
    finally:
        app_context.models.select(str(tiny_sd15.single_file))
