import json

import pytest

from webui.settings import Option, Settings, SettingsError


def test_defaults_without_file(tmp_path):
    s = Settings.load(tmp_path / "config.json")
    assert s.get("CLIP_stop_at_last_layers") == 1 and s["grid_save"] is True


def test_persist_and_reload_keeps_unknown_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"some_extension_option": [1, 2], "grid_save": False}))
    s = Settings.load(path)
    assert s["grid_save"] is False and s["some_extension_option"] == [1, 2]
    s.set("CLIP_stop_at_last_layers", 2)
    on_disk = json.loads(path.read_text())
    assert on_disk == {"some_extension_option": [1, 2], "grid_save": False, "CLIP_stop_at_last_layers": 2}
    assert Settings.load(path)["CLIP_stop_at_last_layers"] == 2


@pytest.mark.parametrize("key,value,message", [
    ("CLIP_stop_at_last_layers", 13, "above the maximum"),
    ("CLIP_stop_at_last_layers", 0, "below the minimum"),
    ("CLIP_stop_at_last_layers", 1.5, "whole number"),
    ("CLIP_stop_at_last_layers", "2", "expected a number"),
    ("grid_save", "yes", "true or false"),
    ("samples_filename_pattern", 5, "expected text"),
    ("no_such_option", 1, "unknown setting"),
])
def test_bad_values_refused_with_message(tmp_path, key, value, message):
    s = Settings.load(tmp_path / "config.json")
    with pytest.raises(SettingsError, match=message):
        s.set(key, value)
    assert not (tmp_path / "config.json").exists()


def test_update_is_all_or_nothing(tmp_path):
    s = Settings.load(tmp_path / "config.json")
    with pytest.raises(SettingsError):
        s.update({"grid_save": False, "CLIP_stop_at_last_layers": 99})
    assert s["grid_save"] is True


def test_bad_value_in_file_falls_back_with_warning(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"CLIP_stop_at_last_layers": "lots"}))
    s = Settings.load(path)
    assert s["CLIP_stop_at_last_layers"] == 1 and "CLIP_stop_at_last_layers" in s.warnings[0]


def test_unreadable_file_is_never_overwritten(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    s = Settings.load(path)
    s.set("grid_save", False)
    assert path.read_text() == "{not json" and s["grid_save"] is False and s.warnings


def test_atomic_write_leaves_no_temp_files(tmp_path):
    s = Settings.load(tmp_path / "config.json")
    for i in range(1, 5):
        s.set("CLIP_stop_at_last_layers", i)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_extension_option_adopts_kept_value(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ext_strength": 0.7}))
    s = Settings.load(path)
    s.add_option(Option("ext_strength", 0.5, "Extension strength", minimum=0, maximum=1))
    assert s["ext_strength"] == 0.7 and "ext_strength" in s.as_dict()
