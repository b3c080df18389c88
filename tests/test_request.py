"""GenerationRequest: A1111 defaults, from_dict, and one clear message per bad field."""

import pytest

from webui.generation.request import (
    FieldError,
    GenerationRequest,
    GenerationResult,
    RequestError,
)


def _errors(**fields) -> dict[str, str]:
    with pytest.raises(RequestError) as err:
        GenerationRequest(**fields).validate()
    return {e.field: e.message for e in err.value.errors}


def test_defaults_are_a1111s():
    r = GenerationRequest()
    assert (r.prompt, r.negative_prompt, r.styles) == ("", "", [])
    assert (r.seed, r.subseed, r.subseed_strength) == (-1, -1, 0.0)
    assert (r.sampler_name, r.scheduler) == ("DPM++ 2M", "Automatic")
    assert (r.steps, r.cfg_scale, r.width, r.height) == (20, 7.0, 512, 512)
    # clip_skip None means "the CLIP_stop_at_last_layers setting", as A1111's API has no such field
    assert (r.batch_size, r.n_iter, r.clip_skip, r.override_settings, r.save_images) == (1, 1, None, {}, True)
    assert r.validate() == r
    assert GenerationRequest(clip_skip=2).validate().clip_skip == 2


def test_save_images_must_be_bool():
    with pytest.raises(RequestError, match="save_images"):
        GenerationRequest(save_images="no").validate()


def test_mutable_defaults_are_not_shared():
    a, b = GenerationRequest(), GenerationRequest()
    a.styles.append("x")
    a.override_settings["k"] = 1
    assert b.styles == [] and b.override_settings == {}


def test_validate_returns_a_normalised_copy():
    r = GenerationRequest(sampler_name="DPM++ 2M Karras", steps="30", cfg_scale="7.5", width=768.0, seed="42")
    v = r.validate()
    assert (v.sampler_name, v.scheduler) == ("DPM++ 2M", "Karras")
    assert (v.steps, v.cfg_scale, v.width, v.seed) == (30, 7.5, 768, 42)
    assert isinstance(v.cfg_scale, float)
    assert r.sampler_name == "DPM++ 2M Karras"  # original untouched


def test_none_prompts_and_seeds_mean_defaults():
    v = GenerationRequest(negative_prompt=None, styles=None, seed=None).validate()
    assert (v.negative_prompt, v.styles, v.seed) == ("", [], -1)


@pytest.mark.parametrize("field,value,needle", [
    ("width", 500, "multiple of 8 from 64 to 4096, got 500"),
    ("width", 32, "got 32"),
    ("height", 4104, "got 4104"),
    ("height", "tall", "got 'tall'"),
    ("steps", 0, "from 1 to 150, got 0"),
    ("steps", 151, "from 1 to 150, got 151"),
    ("steps", "abc", "whole number from 1 to 150, got 'abc'"),
    ("steps", 2.5, "got 2.5"),
    ("steps", True, "got True"),
    ("cfg_scale", 0.5, "from 1 to 30, got 0.5"),
    ("cfg_scale", 31, "got 31"),
    ("cfg_scale", "high", "number from 1 to 30, got 'high'"),
    ("cfg_scale", float("nan"), "got nan"),
    ("batch_size", 9, "from 1 to 8, got 9"),
    ("batch_size", 0, "got 0"),
    ("n_iter", 101, "from 1 to 100, got 101"),
    ("seed", -2, "-1 (random) or a whole number from 0 to 4294967295, got -2"),
    ("seed", 2**32, "got 4294967296"),
    ("seed", "lucky", "got 'lucky'"),
    ("subseed", -5, "got -5"),
    ("subseed_strength", 1.5, "from 0 to 1, got 1.5"),
    ("subseed_strength", -0.1, "got -0.1"),
    ("clip_skip", 0, "from 1 to 12, got 0"),
    ("clip_skip", 13, "got 13"),
    ("prompt", 123, "must be text, got 123"),
    ("negative_prompt", ["a"], "must be text"),
    ("styles", "anime", "list of style names"),
    ("styles", ["ok", 3], "list of style names"),
    ("override_settings", [1], "must be an object"),
])
def test_each_bad_field_gets_its_own_message(field, value, needle):
    errors = _errors(**{field: value})
    assert list(errors) == [field]
    assert needle in errors[field]


def test_unknown_sampler_lists_valid_ones():
    errors = _errors(sampler_name="Euler z")
    assert set(errors) == {"sampler_name"}
    assert "Euler z" in errors["sampler_name"]
    assert "Euler a" in errors["sampler_name"] and "DPM++ 2M" in errors["sampler_name"]


def test_unknown_schedule_lists_valid_ones():
    errors = _errors(scheduler="Polynomial")
    assert set(errors) == {"scheduler"}
    assert "Karras" in errors["scheduler"] and "SGM Uniform" in errors["scheduler"]


def test_schedule_the_sampler_cannot_do_is_reported_on_scheduler():
    errors = _errors(sampler_name="DPM adaptive", scheduler="Karras")  # it picks its own steps
    assert set(errors) == {"scheduler"}
    assert "DPM adaptive" in errors["scheduler"]


def test_unavailable_sampler_says_why(monkeypatch):
    # Every sampler runs with requirements.txt installed; without torchsde the SDE ones would not.
    import dataclasses

    from webui.generation import samplers

    monkeypatch.setattr(samplers, "SAMPLERS", tuple(
        dataclasses.replace(spec, available=False, reason="needs the 'torchsde' package, which is not installed")
        if spec.name == "DPM++ 2M SDE" else spec for spec in samplers.SAMPLERS))
    errors = _errors(sampler_name="DPM++ 2M SDE")
    assert "not available" in errors["sampler_name"]
    assert "torchsde" in errors["sampler_name"]


def test_wrong_type_sampler_is_reported_not_crashing():
    assert "sampler_name" in _errors(sampler_name=5)
    assert "scheduler" in _errors(scheduler=5)


def test_all_errors_are_reported_together():
    with pytest.raises(RequestError) as err:
        GenerationRequest(steps="abc", width=10, cfg_scale=99, sampler_name="nope").validate()
    fields = [e.field for e in err.value.errors]
    assert sorted(fields) == ["cfg_scale", "sampler_name", "steps", "width"]
    assert all(isinstance(e, FieldError) for e in err.value.errors)
    assert "steps:" in str(err.value) and "width:" in str(err.value)
    assert {"field": "steps", "message": err.value.errors[0].message} in err.value.as_dicts()


def test_from_dict_returns_unknown_keys():
    req, unknown = GenerationRequest.from_dict({
        "prompt": "a cat", "steps": 25, "restore_faces": False, "tiling": False, "eta": 0.5,
        "styles": ["s1"],
    })
    assert (req.prompt, req.steps, req.styles, req.tiling) == ("a cat", 25, ["s1"], False)
    assert unknown == {"restore_faces": False, "eta": 0.5}


def test_from_dict_copies_lists_and_reports_bad_types_on_validate():
    styles = ["a"]
    req, _ = GenerationRequest.from_dict({"styles": styles, "steps": "abc"})
    styles.append("b")
    assert req.styles == ["a"]
    with pytest.raises(RequestError) as err:
        req.validate()
    assert [e.field for e in err.value.errors] == ["steps"]


def test_from_dict_accepts_legacy_sampler_index():
    req, unknown = GenerationRequest.from_dict({"sampler_index": "Euler a"})
    assert req.sampler_name == "Euler a" and unknown == {}
    req, unknown = GenerationRequest.from_dict({"sampler_index": "Euler", "sampler_name": "DDIM"})
    assert req.sampler_name == "DDIM" and unknown == {"sampler_index": "Euler"}


def test_from_dict_rejects_non_objects():
    with pytest.raises(RequestError):
        GenerationRequest.from_dict(["prompt"])


def test_result_holds_per_image_lists():
    req = GenerationRequest().validate()
    res = GenerationResult(images=[], infotexts=[], seeds=[1], subseeds=[2], prompts=["p"],
                           negative_prompts=[""], timings={"total": 1.0}, request=req)
    assert res.interrupted is False and res.seeds == [1]
