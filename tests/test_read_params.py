"""↙ "Read generation parameters from prompt": which text counts as infotext and what it fills."""
from webui.ui.read_params import looks_like_infotext, read_updates

TEXT = ("a red circle\nNegative prompt: blue\nSteps: 7, Sampler: Euler a, Schedule type: Automatic, CFG scale: 4.5, "
        "Seed: 99, Size: 96x64, Denoising strength: 0.4")


def test_only_text_ending_in_a_parameter_line_counts():
    assert looks_like_infotext(TEXT)
    assert not looks_like_infotext("a red circle, Steps: 7 is in the prompt\nmore prompt")
    assert not looks_like_infotext("")
    assert not looks_like_infotext(None)


def test_infotext_fills_the_fields_and_leaves_the_prompt_alone():
    targets = dict.fromkeys(["prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "seed", "width",
                             "height", "denoising_strength", "subseed"])
    values = dict(zip(targets, read_updates(TEXT, targets)))
    assert values["prompt"] == "a red circle" and values["negative_prompt"] == "blue"
    assert (values["steps"], values["sampler_name"], values["cfg_scale"], values["seed"]) == (7, "Euler a", 4.5, 99)
    assert (values["width"], values["height"], values["denoising_strength"]) == (96, 64, 0.4)
    assert values["subseed"] == {"__type__": "update"}  # a key the text lacks is left as the user set it


def test_plain_prompt_changes_nothing():
    targets = dict.fromkeys(["prompt", "seed"])
    assert read_updates("just a prompt", targets) == [{"__type__": "update"}, {"__type__": "update"}]
