"""ui-config.json reading/writing, which stored defaults fit which control, and quicksettings_list handling."""
import json

import gradio as gr
import pytest

from webui.settings import Settings, SettingsError
from webui.ui.defaults import UiDefaults, Unfit, fit
from webui.ui.quicksettings import quick_candidates, quicksettings_keys
from webui.uiconfig import UiConfig, UiConfigError


def test_damaged_file_is_reported_ignored_and_never_overwritten(tmp_path):
    path = tmp_path / "ui-config.json"
    for bad in (b'{"txt2img/Sampling steps/value": 30', b"[1, 2]", b"\xff\xfe", b'{"a": NaN}'):
        path.write_bytes(bad)
        config = UiConfig.load(path)
        assert config.entries == {} and config.unwritable
        assert "unreadable" in config.warnings[0] and str(path) in config.warnings[0]
        with pytest.raises(UiConfigError, match="unreadable"):
            config.save_values({"txt2img/Sampling steps/value": 30})
        assert path.read_bytes() == bad
    assert UiConfig.load(tmp_path / "absent.json").entries == {}


def test_save_keeps_other_entries_and_other_writers(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Width/maximum": 2048, "img2img/Seed/value": 5}))
    config = UiConfig.load(path)
    # Another page applied its own default after this build read the file: kept too.
    path.write_text(json.dumps({"txt2img/Width/maximum": 2048, "img2img/Seed/value": 7}))
    config.save_values({"txt2img/Sampling steps/value": 33})
    assert json.loads(path.read_text()) == {"txt2img/Width/maximum": 2048, "img2img/Seed/value": 7,
                                            "txt2img/Sampling steps/value": 33}
    assert config.value("txt2img/Sampling steps/value") == 33


def test_damaged_file_leaves_the_built_in_defaults(tmp_path, caplog):
    path = tmp_path / "ui-config.json"
    path.write_text('{"txt2img/Sampling steps/value": 33,')  # cut off mid-write
    defaults = UiDefaults(UiConfig.load(path))
    with gr.Blocks():
        with gr.Tab("txt2img") as tab:
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
        defaults.track("txt2img", tab)
    assert steps.value == 20 and not defaults.from_config(steps)
    assert f"{path}: unreadable" in caplog.text


def test_fit_checks_type_range_and_choices():
    steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
    cfg = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale")
    assert fit(steps, 33.0) == 33 and isinstance(fit(steps, 33.0), int)
    assert fit(cfg, 7.5) == 7.5
    for bad in ("lots", True, 151, 0, 20.5, float("nan")):
        with pytest.raises(Unfit):
            fit(steps, bad)
    seed = gr.Number(value=-1, precision=0, label="Seed")
    assert fit(seed, 12.0) == 12
    with pytest.raises(Unfit):
        fit(seed, 1.5)
    sampler = gr.Dropdown(choices=[("Euler a", "Euler a"), ("DPM++ 2M", "DPM++ 2M")], value="Euler a", label="S")
    assert fit(sampler, "DPM++ 2M") == "DPM++ 2M"
    with pytest.raises(Unfit):
        fit(sampler, "No such sampler")
    styles = gr.Dropdown(choices=["a", "b"], value=[], multiselect=True, label="Styles")
    assert fit(styles, ["b"]) == ["b"]
    with pytest.raises(Unfit):
        fit(styles, "b")
    assert fit(gr.Checkbox(label="Tiling"), False) is False
    with pytest.raises(Unfit):
        fit(gr.Checkbox(label="Tiling"), "yes")
    assert fit(gr.Textbox(label="Prompt"), "a cat") == "a cat"
    with pytest.raises(Unfit):
        fit(gr.Textbox(label="Prompt"), 3)


def test_track_applies_fitting_values_ignores_the_rest_and_lists_changes(tmp_path, caplog):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Sampling steps/value": 33, "txt2img/CFG Scale/value": 99,
                                "txt2img/Prompt/value": "a red square", "txt2img/Seed/value": "x",
                                "txt2img/Generation info/value": "not a default"}))
    defaults = UiDefaults(UiConfig.load(path))
    with gr.Blocks():
        with gr.Tab("txt2img") as tab:
            prompt = gr.Textbox(label="Prompt")
            with gr.Row():
                steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
                cfg = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale")
            seed = gr.Number(value=-1, precision=0, label="Seed")
            hr_steps = gr.Slider(0, 150, value=0, step=1, label="Sampling steps")  # same label: not tracked
            clip = gr.Slider(1, 12, value=1, step=1, label="Clip skip")
            info = gr.Textbox(label="Generation info", interactive=False)
            gr.Button("Generate")
        defaults.track("txt2img", tab, exclude=[clip])
    assert (steps.value, cfg.value, prompt.value, seed.value, hr_steps.value) == (33, 7, "a red square", -1, 0)
    assert info.value != "not a default"
    keys = [item.key for item in defaults.items]
    assert keys == ["txt2img/Prompt/value", "txt2img/Sampling steps/value", "txt2img/CFG Scale/value",
                    "txt2img/Seed/value"]
    assert "txt2img/CFG Scale/value: 99 is outside" in caplog.text and "txt2img/Seed/value" in caplog.text
    assert defaults.from_config(steps) and not defaults.from_config(cfg)  # 99 did not fit: the code's 7
    # What the page shows against the defaults in effect (numbers as the page sends them).
    assert defaults.changes(["a red square", 33.0, 7.0, -1]) == []
    assert defaults.changes(["a red square", 40.0, 7.5, "12a"]) == [
        ("txt2img/Sampling steps/value", 33, 40), ("txt2img/CFG Scale/value", 7, 7.5)]


def test_quicksettings_keys_checkpoint_first_unknown_and_unsuitable_skipped():
    settings = Settings(path=None)
    assert quicksettings_keys(settings) == (["sd_model_checkpoint", "sd_vae"], [])
    settings.values["quicksettings_list"] = ["CLIP_stop_at_last_layers", "sd_vae", "sd_vae", "no_such_option",
                                             "disabled_extensions", "sd_model_checkpoint"]
    keys, problems = quicksettings_keys(settings)
    assert keys == ["sd_model_checkpoint", "CLIP_stop_at_last_layers", "sd_vae"]
    assert len(problems) == 2 and "'no_such_option' is not a setting" in problems[0]
    settings.values["quicksettings_list"] = []  # the checkpoint picker is never lost
    assert quicksettings_keys(settings)[0] == ["sd_model_checkpoint"]
    legacy = Settings(path=None, extra={"quicksettings": "sd_model_checkpoint, CLIP_stop_at_last_layers"})
    assert quicksettings_keys(legacy)[0] == ["sd_model_checkpoint", "CLIP_stop_at_last_layers"]
    offered = quick_candidates(settings)
    assert {"sd_vae", "CLIP_stop_at_last_layers", "samples_save"} <= set(offered)
    assert "quicksettings_list" not in offered


def test_quicksettings_list_option_is_checked_and_read_from_config(tmp_path):
    settings = Settings(path=tmp_path / "config.json")
    settings.set("quicksettings_list", ["sd_model_checkpoint", "CLIP_stop_at_last_layers"])
    assert json.loads((tmp_path / "config.json").read_text())["quicksettings_list"] == [
        "sd_model_checkpoint", "CLIP_stop_at_last_layers"]
    for bad in ("sd_vae", ["sd_vae", 3], {"sd_vae": 1}):
        with pytest.raises(SettingsError, match="list of names"):
            settings.set("quicksettings_list", bad)
    (tmp_path / "config.json").write_text(json.dumps({"quicksettings_list": "sd_vae"}))
    loaded = Settings.load(tmp_path / "config.json")
    assert list(loaded.get("quicksettings_list")) == ["sd_model_checkpoint", "sd_vae"]
    assert "quicksettings_list" in loaded.warnings[0]


def test_the_page_tracks_generation_controls_not_the_style_editor(app_context, monkeypatch):
    from webui.ui import app as ui_app
    from webui.ui import defaults as ui_defaults

    tracked = []
    real_track = ui_defaults.UiDefaults.track

    def spy(self, tab, root, exclude=()):
        real_track(self, tab, root, exclude)
        tracked.append(self)

    monkeypatch.setattr(ui_defaults.UiDefaults, "track", spy)
    ui_app.build_ui(app_context)
    labels = {item.key.split("/")[1] for item in tracked[0].items}
    keys = {item.key for item in tracked[0].items}
    assert {"txt2img/Sampling steps/value", "img2img/Sampling steps/value", "txt2img/Styles/value"} <= keys
    assert not labels & {"Style", "Style prompt", "Style negative prompt", "Clip skip"}, labels
