"""A1111 infotext: exact writing, A1111-style parsing, and round trips."""

import random

import pytest

from webui.generation import samplers
from webui.generation.request import GenerationRequest
from webui.infotext import (
    build_infotext,
    infotext_to_request_fields,
    parse_infotext,
    quote,
)

GOLDEN = (
    "masterpiece, best quality, 1girl, (red scarf:1.2), snowy street, <lora:add_detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4)\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3141592653, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 42, "
    "Variation seed strength: 0.25, Clip skip: 2, RNG: CPU, "
    'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)

# Written by hand in the shape A1111 1.9 writes, with extension keys we do not know.
A1111_SAMPLE = (
    "a photo of an astronaut riding a horse on mars, highly detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M SDE, Schedule type: Exponential, CFG scale: 6, Seed: 1234567890, "
    "Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, "
    "VAE: sdxl_vae.safetensors, Denoising strength: 0.35, Clip skip: 2, ADetailer model: face_yolov8n.pt, "
    "ADetailer confidence: 0.3, Hires upscale: 1.5, Hires resize: 1664x2432, Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "add_detail: 7c6bad76eb54, epiNoiseoffset_v2: d1131f7207d6", '
    'TI hashes: "easynegative: c74b4e810b03", Emphasis: Original, Version: v1.9.4'
)


def test_golden_string():
    req = GenerationRequest(steps=28, sampler_name="DPM++ 2M", scheduler="Automatic", cfg_scale=7.5,
                            width=512, height=768, subseed_strength=0.25, clip_skip=2).validate()
    text = build_infotext(
        req, seed=3141592653, subseed=42, model_name="v1-5-pruned-emaonly", model_hash="6ce0161689",
        prompt="masterpiece, best quality, 1girl, (red scarf:1.2), snowy street, <lora:add_detail:0.6>",
        negative_prompt="lowres, bad anatomy, (worst quality:1.4)",
        extra={"Lora hashes": "add_detail: 7c6bad76eb54"}, version="v1.10.1",
    )
    assert text == GOLDEN


def test_defaults_are_left_out_and_whole_numbers_have_no_point():
    text = build_infotext(GenerationRequest(sampler_name="Euler a").validate(), seed=5, subseed=9,
                          model_name=None, model_hash=None, prompt="cat", negative_prompt="")
    assert text == ("cat\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, "
                    "Seed: 5, Size: 512x512, RNG: CPU")


def test_vae_keys_sit_after_model_and_extra_replaces_in_place():
    text = build_infotext(GenerationRequest().validate(), 1, 2, "m", "h", "p", "",
                          extra={"Denoising strength": 0.7, "Steps": 99, "Flag": "Flag"},
                          vae_name="vae.safetensors", vae_hash="abc")
    params = text.split("\n")[-1]
    assert params.startswith("Steps: 99, Sampler: DPM++ 2M, Schedule type: Karras,")
    # A1111's create_infotext has a slot for Denoising strength before Clip skip and RNG.
    assert "Model: m, VAE hash: abc, VAE: vae.safetensors, Denoising strength: 0.7, RNG: CPU, Flag" in params


def test_quote_rule():
    assert quote("plain") == "plain"
    assert quote("a, b") == '"a, b"'
    assert quote("a: b") == '"a: b"'
    assert quote("a\nb") == '"a\\nb"'
    assert quote('say "x", ok') == '"say \\"x\\", ok"'
    assert quote("ünï, cødé") == '"ünï, cødé"'  # not escaped to \\u


def test_golden_parses_back():
    p = parse_infotext(GOLDEN)
    assert p["Prompt"].startswith("masterpiece, best quality")
    assert p["Negative prompt"] == "lowres, bad anatomy, (worst quality:1.4)"
    assert (p["Size-1"], p["Size-2"]) == ("512", "768")
    assert "Size" not in p
    assert p["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert p["CFG scale"] == "7.5" and p["Version"] == "v1.10.1" and p["RNG"] == "CPU"


def test_a1111_sample_keeps_unknown_keys():
    p = parse_infotext(A1111_SAMPLE)
    assert p["ADetailer model"] == "face_yolov8n.pt"
    assert p["ADetailer confidence"] == "0.3"
    assert p["Hires upscaler"] == "4x-UltraSharp"
    assert (p["Hires resize-1"], p["Hires resize-2"]) == ("1664", "2432")
    assert p["Lora hashes"] == "add_detail: 7c6bad76eb54, epiNoiseoffset_v2: d1131f7207d6"
    assert p["TI hashes"] == "easynegative: c74b4e810b03"
    assert p["VAE"] == "sdxl_vae.safetensors" and p["Emphasis"] == "Original"
    fields = infotext_to_request_fields(p)
    assert fields["sampler_name"] == "DPM++ 2M SDE"
    assert fields["scheduler"] == "Automatic"  # Exponential is DPM++ 2M SDE's own default
    assert (fields["width"], fields["height"], fields["clip_skip"], fields["steps"]) == (832, 1216, 2, 30)
    assert fields["cfg_scale"] == 6.0 and fields["seed"] == 1234567890
    assert fields["negative_prompt"] == "blurry, lowres"
    assert "ADetailer model" not in fields
    GenerationRequest(**fields).validate()


@pytest.mark.parametrize("sampler,expected", [
    ("DPM++ 2M Karras", ("DPM++ 2M", "Automatic")),
    ("DPM++ SDE Karras", ("DPM++ SDE", "Automatic")),
    ("DPM++ 2M SDE Karras", ("DPM++ 2M SDE", "Karras")),
    ("Euler a", ("Euler a", "Automatic")),
    ("LMS Karras", ("LMS", "Karras")),
])
def test_old_infotext_combined_sampler_names(sampler, expected):
    text = f"a cat\nSteps: 20, Sampler: {sampler}, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    fields = infotext_to_request_fields(parse_infotext(text))
    assert (fields["sampler_name"], fields["scheduler"]) == expected
    assert fields["clip_skip"] == 1 and fields["subseed_strength"] == 0.0


def test_text_without_parameters_is_all_prompt():
    p = parse_infotext("just a prompt\nwith two lines")
    assert p == {"Prompt": "just a prompt\nwith two lines", "Negative prompt": ""}


def test_multiline_negative_and_missing_prompt():
    text = "Negative prompt: ugly\nblurry\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64"
    p = parse_infotext(text)
    assert (p["Prompt"], p["Negative prompt"]) == ("", "ugly\nblurry")


def test_bad_values_pass_through_for_validation_to_report():
    fields = infotext_to_request_fields(
        {"Prompt": "x", "Steps": "many", "Sampler": "Mystery sampler", "Schedule type": "Karras"})
    assert fields["steps"] == "many" and fields["sampler_name"] == "Mystery sampler"


# --- round trip -------------------------------------------------------------

_WORDS = ["cat", "Ünïcødé", "漢字", "🙂", "(masterpiece:1.2)", "[from:to:0.5]", "a, b", "key: value",
          'say "hi"', "back\\slash", "<lora:x:0.8>", "BREAK", "ß", "x,y:z", "{a|b}", "100%"]


def _text(rng: random.Random, allow_lines: bool) -> str:
    lines = []
    for _ in range(rng.randint(1, 3) if allow_lines else 1):
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6))))
    return "\n".join(lines)


def _random_case(rng: random.Random):
    cases = [(s.name, sch) for s in samplers.SAMPLERS if s.available for sch in s.schedules]
    sampler, schedule = rng.choice(cases)
    varied = rng.random() < 0.5
    req = GenerationRequest(
        prompt=_text(rng, True) if rng.random() < 0.95 else "",
        negative_prompt=_text(rng, True) if rng.random() < 0.5 else "",
        sampler_name=sampler, scheduler=schedule,
        steps=rng.randint(1, 150), cfg_scale=rng.choice([rng.uniform(1, 30), float(rng.randint(1, 30))]),
        width=8 * rng.randint(8, 512), height=8 * rng.randint(8, 512),
        subseed_strength=rng.random() if varied else 0.0,
        clip_skip=rng.randint(1, 12),
    ).validate()
    return req, rng.randint(0, 2**32 - 1), rng.randint(0, 2**32 - 1)


def test_round_trip_200_random_requests():
    rng = random.Random(20240611)
    for _ in range(200):
        req, seed, subseed = _random_case(rng)
        model = rng.choice(["v1-5", "my, model: v2", "ünï"])
        text = build_infotext(req, seed, subseed, model, "0123abcdef", req.prompt, req.negative_prompt,
                              version="v0.1.0")
        parsed = parse_infotext(text)
        assert parsed["Model"] == model
        fields = infotext_to_request_fields(parsed)
        assert fields["prompt"] == req.prompt, text
        assert fields["negative_prompt"] == req.negative_prompt, text
        for name in ("steps", "cfg_scale", "width", "height", "clip_skip", "sampler_name", "subseed_strength"):
            assert fields[name] == getattr(req, name), (name, text)
        assert fields["seed"] == seed
        if req.subseed_strength:
            assert fields["subseed"] == subseed
        else:
            assert "subseed" not in fields
        # Same effective schedule; an explicit default reads back as "Automatic".
        assert samplers.effective_schedule(fields["sampler_name"], fields["scheduler"]) == \
            samplers.effective_schedule(req.sampler_name, req.scheduler)
        assert GenerationRequest(**fields).validate().steps == req.steps
