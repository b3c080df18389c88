from datetime import datetime

from PIL import Image

from webui.images import ImageSaver, NameFields, expand_pattern, image_grid, read_infotext


def img(color=(255, 0, 0), size=(8, 8)):
    return Image.new("RGB", size, color)


def test_numbering_continues_and_never_overwrites(tmp_path):
    saver = ImageSaver()
    a = saver.save(img(), tmp_path, "42", "a cat\nSteps: 20, Seed: 42")
    b = saver.save(img(), tmp_path, "42", None)
    assert (a.name, b.name) == ("00000-42.png", "00001-42.png")
    (tmp_path / "00007-9.png").write_bytes(b"user's file")
    c = ImageSaver().save(img(), tmp_path, "43", None)  # a new saver = a restart
    assert c.name == "00008-43.png" and (tmp_path / "00007-9.png").read_bytes() == b"user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-42.png", "00001-42.png", "00007-9.png", "00008-43.png"]


def test_infotext_in_parameters_chunk_including_unicode(tmp_path):
    text = "ein Hund, 日本\nNegative prompt: blur\nSteps: 20, Seed: 1"
    path = ImageSaver().save(img(), tmp_path, "1", text)
    with Image.open(path) as loaded:
        assert read_infotext(loaded) == text


def test_grid_naming_and_layout(tmp_path):
    grid = image_grid([img(size=(4, 6)) for _ in range(4)])
    assert grid.size == (8, 12)
    assert image_grid([img(size=(4, 4)) for _ in range(3)]).size == (8, 8)
    saver = ImageSaver()
    assert saver.save_grid(grid, tmp_path, None).name == "grid-0000.png"
    assert saver.save_grid(grid, tmp_path, None).name == "grid-0001.png"


def test_pattern_tags():
    fields = NameFields(seed=7, prompt="a red circle, on: blue?", model_name="demo", sampler="Euler a", steps=20,
                        cfg=7.0, width=64, height=64)
    assert expand_pattern("[seed]", fields) == "7"
    assert expand_pattern("[seed]-[prompt_words]-[cfg]-[width]x[height]", fields) == "7-a red circle on blue-7-64x64"
    assert expand_pattern("[date]-[nope]", fields, datetime(2026, 1, 2)) == "2026-01-02-[nope]"
    assert "/" not in expand_pattern("[prompt]", NameFields(seed=1, prompt="a/b\\c"))
