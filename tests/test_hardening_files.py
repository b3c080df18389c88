"""Damaged user files and non-finite numbers: reported, never fatal, never persisted or overwritten."""
import json
import math

import pytest

from webui.generation.styles import Style, StyleStore
from webui.models.registry import HashCache
from webui.settings import Settings, SettingsError, SettingsNotSaved
from webui.userfiles import parse_json_strict, read_json_object

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("key, value", [
    ("sd_checkpoint_cache_ram_fraction", math.nan),
    ("sd_checkpoint_cache_ram_fraction", math.inf),
    ("CLIP_stop_at_last_layers", math.nan),
    ("CLIP_stop_at_last_layers", -math.inf),
    ("show_progress_every_n_steps", math.inf),
    ("comma_padding_backtrack", math.nan),
    ("sd_checkpoint_cache_ram_fraction", 10 ** 400),  # no float for it
    ("CLIP_stop_at_last_layers", 10 ** 5000),  # past Python's int -> str digit limit
], ids=["nan-fraction", "inf-fraction", "nan-int", "-inf-int", "inf-steps", "nan-backtrack", "1e400", "10^5000"])
def test_non_finite_numbers_are_refused_and_never_saved(tmp_path, key, value):
    path = tmp_path / "config.json"
    settings = Settings.load(path)
    with pytest.raises(SettingsError, match=key):
        settings.update({key: value})
    assert not path.exists() and settings.get(key) == settings.options[key].default


def test_lone_surrogate_text_is_refused(tmp_path):
    settings = Settings.load(tmp_path / "config.json")
    with pytest.raises(SettingsError, match="invalid Unicode"):
        settings.update({"samples_filename_pattern": "x\ud800"})


@pytest.mark.parametrize("content", [
    '{"sd_checkpoint_cache_ram_fraction": NaN, "grid_save": false, "other_tool": [1]}',
    '{"sd_checkpoint_cache_ram_fraction": Infinity, "grid_save": false, "other_tool": [1]}',
    '{"sd_checkpoint_cache_ram_fraction": -1e999, "grid_save": false, "other_tool": [1]}',
])
def test_non_finite_value_in_config_falls_back_for_that_key_only(tmp_path, content):
    # An older version wrote NaN into config.json: start with the default for that key, keep the rest.
    path = tmp_path / "config.json"
    path.write_text(content)
    settings = Settings.load(path)
    assert settings.get("sd_checkpoint_cache_ram_fraction") == 0.5 and settings.get("grid_save") is False
    assert any("sd_checkpoint_cache_ram_fraction" in w and "finite" in w for w in settings.warnings)
    settings.save_changes({"CLIP_stop_at_last_layers": 2})
    saved = json.loads(path.read_text())  # plain JSON again: the bad value is gone, the rest kept
    assert saved == {"grid_save": False, "other_tool": [1], "CLIP_stop_at_last_layers": 2}


@pytest.mark.parametrize("content, problem", [
    ('{"a": ' + DEEP + "}", "nested too deeply"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8"),
])
def test_damaged_config_starts_with_defaults_and_keeps_the_file(tmp_path, content, problem):
    path = tmp_path / "config.json"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    before = path.read_bytes()
    settings = Settings.load(path)
    assert settings.get("sd_checkpoint_cache_ram_fraction") == 0.5
    assert any(str(path) in w and problem in w for w in settings.warnings), settings.warnings
    # A user's change is refused with the reason, and the file is untouched.
    with pytest.raises(SettingsNotSaved, match="unreadable at start"):
        settings.save_changes({"grid_save": False})
    assert settings.get("grid_save") is True and path.read_bytes() == before


def test_config_that_is_a_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    settings = Settings.load(tmp_path / "config.json")
    assert "not a regular file" in settings.warnings[0] and settings.unsaved_reason


def test_save_changes_saves_when_the_file_was_readable(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"grid_save": True, "other_tool": 1}))
    settings = Settings.load(path)
    settings.save_changes({"grid_save": False})
    assert json.loads(path.read_text()) == {"grid_save": False, "other_tool": 1}


def test_strict_json_parser():
    assert parse_json_strict('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for text in ("NaN", "-Infinity", "[1e400]", DEEP):
        with pytest.raises(ValueError):
            parse_json_strict(text)
    assert read_json_object(__import__("pathlib").Path("/nonexistent/x.json")) == ({}, None)


def test_damaged_cache_json_is_moved_aside_not_overwritten(tmp_path, caplog):
    path = tmp_path / "cache.json"
    path.write_text('{"hashes": ' + DEEP + "}")
    before = path.read_bytes()
    cache = HashCache(path)
    assert cache.get("checkpoint/x") is None
    assert "nested too deeply" in caplog.text
    cache.put("checkpoint/x", {"sha256": "ab" * 32, "mtime": 1.0})
    kept = list(tmp_path.glob("cache.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == before
    assert json.loads(path.read_text())["hashes"]["checkpoint/x"]["sha256"] == "ab" * 32


def test_cache_json_that_is_a_directory_keeps_hashes_in_memory(tmp_path):
    path = tmp_path / "cache.json"
    path.mkdir()
    cache = HashCache(path)
    cache.put("checkpoint/x", {"sha256": "cd" * 32})
    assert cache.get("checkpoint/x")["sha256"] == "cd" * 32 and path.is_dir()


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(b"name,prompt\n\x00\x01\x02binary\xff\xfe\n"), "unreadable"),
    (lambda p: p.write_text("name,prompt,negative_prompt\nbig," + "x" * 131_073 + ",\n"), "field larger"),
    (lambda p: p.mkdir(), "Is a directory"),
])
def test_damaged_styles_file_means_no_styles_and_is_never_overwritten(tmp_path, make, problem):
    path = tmp_path / "styles.csv"
    make(path)
    store = StyleStore(path)
    assert store.all() == [] and problem in store.unreadable and str(path) in store.unreadable
    with pytest.raises(ValueError, match="styles not saved"):
        store.put(Style("new", "a"))
    if path.is_file():
        assert b"new" not in path.read_bytes()


def test_styles_error_names_the_line(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt\nok,fine\nbig," + "x" * 131_073 + "\n")
    assert "line 3" in StyleStore(path).unreadable
