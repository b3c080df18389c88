"""A1111 styles.csv: load, atomic save, and the two merge rules."""

import pytest

from webui.generation.styles import Style, StyleStore, apply_styles, merge_style

A1111_CSV = (
    '\ufeffname,prompt,negative_prompt\r\n'
    '"Cinematic","cinematic still {prompt}, shallow depth of field, film grain","cartoon, ""anime"""\r\n'
    'Quality,"masterpiece, best quality","lowres, bad anatomy"\r\n'
    '# Section,,\r\n'
    ',,\r\n'
    'Multi line,"line one\nline two",\r\n'
)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes(A1111_CSV.encode("utf-8"))
    return StyleStore(path)


def test_loads_a1111_file(store):
    assert store.names() == ["Cinematic", "Quality", "Multi line"]  # comment and blank rows skipped
    assert store.get("Cinematic").negative_prompt == 'cartoon, "anime"'
    assert store.get("Multi line") == Style("Multi line", "line one\nline two", "")
    assert store.get("nope") is None


def test_missing_file_is_empty(tmp_path):
    assert StyleStore(tmp_path / "absent.csv").names() == []


def test_append_rule(store):
    assert apply_styles("a cat", "blurry", ["Quality"], store) == (
        "a cat, masterpiece, best quality",
        "blurry, lowres, bad anatomy",
    )
    # empty prompt: just the style, no leading comma
    assert apply_styles("", "", ["Quality"], store) == ("masterpiece, best quality", "lowres, bad anatomy")


def test_placeholder_rule(store):
    prompt, negative = apply_styles("a cat", "", ["Cinematic"], store)
    assert prompt == "cinematic still a cat, shallow depth of field, film grain"
    assert negative == 'cartoon, "anime"'


def test_styles_apply_in_order(store):
    prompt, _ = apply_styles("a cat", "", ["Quality", "Cinematic"], store)
    assert prompt == "cinematic still a cat, masterpiece, best quality, shallow depth of field, film grain"
    prompt, _ = apply_styles("a cat", "", ["Cinematic", "Quality"], store)
    assert prompt == "cinematic still a cat, shallow depth of field, film grain, masterpiece, best quality"


def test_merge_style_edges():
    assert merge_style("", "  a cat ") == "a cat"
    assert merge_style("{prompt}, {prompt}", "x") == "x, x"
    assert merge_style(" style ", "") == "style"


def test_unknown_styles_are_named(store):
    with pytest.raises(ValueError, match="unknown styles: Nope, Gone"):
        apply_styles("a", "", ["Quality", "Nope", "Gone"], store)
    with pytest.raises(ValueError, match="unknown style: Nope"):
        apply_styles("a", "", ["Nope"], store)


def test_round_trip(store, tmp_path):
    store.put(Style("New, with comma", 'say "hi", {prompt}', "ugly\nbad"))
    store.put(Style("Quality", "replaced", ""))
    again = StyleStore(store.path)
    assert again.all() == store.all()
    assert again.names() == ["Cinematic", "Quality", "Multi line", "New, with comma"]
    assert again.get("Quality").prompt == "replaced"
    raw = store.path.read_bytes()
    assert raw.startswith("\ufeffname,prompt,negative_prompt\r\n".encode("utf-8"))
    assert b'"New, with comma","say ""hi"", {prompt}"' in raw
    again.delete("Cinematic")
    assert StyleStore(store.path).names() == ["Quality", "Multi line", "New, with comma"]
    with pytest.raises(ValueError, match="unknown style"):
        again.delete("Cinematic")
    assert [p.name for p in tmp_path.iterdir()] == ["styles.csv"]  # no temp files left behind


def test_save_is_atomic_when_writing_fails(store, monkeypatch):
    before = store.path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("webui.generation.styles.os.replace", broken_replace)
    with pytest.raises(OSError):
        store.put(Style("X", "x", ""))
    assert store.path.read_bytes() == before
    assert "X" not in store  # memory matches the file
    assert [p.name for p in store.path.parent.iterdir()] == ["styles.csv"]


def test_legacy_text_column(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,text\nOld,old style\n", encoding="utf-8")
    assert StyleStore(path).get("Old") == Style("Old", "old style", "")


def test_nameless_style_rejected(store):
    with pytest.raises(ValueError, match="name"):
        store.put(Style("  ", "x"))
