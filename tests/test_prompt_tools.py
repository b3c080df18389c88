"""The prompt tools' server side: style name checks, save / delete / apply as the buttons do them,
the placeholder's words and where notification.mp3 is looked for (browser side: test_browser_prompt_tools.py)."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from webui.generation.styles import Style, StyleStore, apply_known_styles, check_style_name
from webui.ui import prompt_tools
from webui.ui.prompt_tools import apply_selected, delete_style, notification_file, placeholder, save_style

CSV = '\ufeffname,prompt,negative_prompt\r\nQuality,"masterpiece, best quality",lowres\r\nWarm,"{prompt}, warm",cold\r\n'


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes(CSV.encode("utf-8"))
    return StyleStore(path)


@pytest.mark.parametrize("name, problem", [("", "needs a name"), ("   ", "needs a name"), (None, "needs a name"),
                                           ("# Section", "cannot start with '#'"), ("two\nlines", "one line")])
def test_bad_style_names_are_refused_saying_why(store, name, problem):
    before = store.path.read_bytes()
    with pytest.raises(ValueError, match=problem):
        check_style_name(name)
    message, saved = save_style(store, name, "x", "y")
    assert saved is None and problem.split("'")[0] in message and 'class="error-box' in message
    assert store.path.read_bytes() == before and store.names() == ["Quality", "Warm"]


def test_save_adds_or_replaces_and_is_read_back(store):
    message, saved = save_style(store, "  Night  ", "{prompt}, at night", "sun")
    assert saved == "Night" and message.endswith("Saved style &#x27;Night&#x27; to styles.csv.</div>")
    save_style(store, "Quality", "replaced", "")
    again = StyleStore(store.path)
    assert again.names() == ["Quality", "Warm", "Night"]
    assert again.get("Night") == Style("Night", "{prompt}, at night", "sun")
    assert again.get("Quality").prompt == "replaced"


def test_delete_asks_nothing_of_an_empty_name_and_names_an_unknown_one(store):
    assert delete_style(store, "") == ("", False)  # the confirmation was cancelled
    message, deleted = delete_style(store, "Nope")
    assert not deleted and "unknown style: Nope" in message
    message, deleted = delete_style(store, "Warm")
    assert deleted and "Deleted style" in message
    assert StyleStore(store.path).names() == ["Quality"]


def test_apply_writes_styles_into_prompts_and_clears_the_selection(store):
    assert apply_selected(store, "a cat", "blurry", ["Warm", "Quality"]) == (
        "a cat, warm, masterpiece, best quality", "blurry, cold, lowres", [])
    assert apply_selected(store, None, None, None) == ("", "", [])


def test_apply_skips_a_style_deleted_meanwhile_and_names_it(store):
    assert apply_known_styles("a cat", "", ["Gone", "Quality"], store) == (
        "a cat, masterpiece, best quality", "lowres", ["Gone"])
    with pytest.warns(UserWarning, match="no longer in styles.csv: Gone"):  # a toast on the page
        assert apply_selected(store, "a cat", "", ["Gone"]) == ("a cat", "", [])


def _model(bundled: bool, name: str):
    return SimpleNamespace(info=SimpleNamespace(bundled=bundled, model_name=name))


def test_placeholder_suggests_the_demo_models_prompts():
    text = placeholder(_model(True, "demo-shapes"))
    assert text.startswith("Prompt (press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt). The demo model draws one shape")
    assert '"a red circle on a blue background"' in text and "circle, square, triangle" in text
    assert placeholder(_model(False, "demo-shapes-copy")) == "Prompt (press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"
    assert placeholder(None) == "Prompt (press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"


def test_placeholder_names_exactly_the_shortcuts_the_page_has():
    """A1111's placeholder names Ctrl+Enter, Alt+Enter and Esc; ours only what shortcuts.js handles."""
    js = (Path(prompt_tools.__file__).parent / "static" / "shortcuts.js").read_text(encoding="utf-8")
    handled = {"Ctrl+Enter": '"Enter"' in js and "ctrlKey" in js, "Alt+Enter": "altKey" in js,
               "Esc": '"Escape"' in js}
    said = {key: key in prompt_tools.SHORTCUTS for key in handled}
    assert said == handled, "update SHORTCUTS in webui/ui/prompt_tools.py to the keys static/shortcuts.js handles"


def test_notification_file_is_only_that_file(tmp_path):
    assert notification_file(tmp_path) is None
    (tmp_path / "notification.mp3").mkdir()
    assert notification_file(tmp_path) is None  # a folder of that name is not a sound
    (tmp_path / "notification.mp3").rmdir()
    (tmp_path / "notification.mp3").write_bytes(b"ID3")
    assert notification_file(tmp_path) == tmp_path / "notification.mp3"


def test_page_load_picks_up_a_hand_edited_file_but_not_its_own_writes(store, monkeypatch):
    save_style(store, "Night", "at night", "")
    reads = []
    monkeypatch.setattr(store, "_read", lambda real=store._read: reads.append(1) or real())
    assert store.reload_if_changed() is False and reads == []  # its own write: nothing to read
    store.path.write_bytes(CSV.encode("utf-8") + b"Hand,by hand,\r\n")  # the user edits the file
    assert store.reload_if_changed() is True
    assert store.names() == ["Quality", "Warm", "Hand"] and reads == [1]
