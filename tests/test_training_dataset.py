"""Dataset folders, buckets, caption handling and the dataset tools (no model needed)."""
import random

import pytest
from PIL import Image

from webui.training import dataset as ds
from webui.training import dataset_tools as tools


def image(path, size, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_kohya_repeats_folders_and_captions(tmp_path):
    image(tmp_path / "loose.png", (64, 64))
    (tmp_path / "loose.txt").write_text("  loose,   tag \n")
    image(tmp_path / "10_sks dog" / "a.jpg", (96, 64))
    image(tmp_path / "10_sks dog" / "b.png", (64, 96))
    (tmp_path / "10_sks dog" / "b.txt").write_text("a dog, sitting")
    image(tmp_path / "not-a-kohya-folder" / "c.png", (64, 64))  # ignored: no "<repeats>_" prefix
    data = ds.scan_folder(tmp_path)
    by_name = {i.path.name: i for i in data.images}
    assert set(by_name) == {"loose.png", "a.jpg", "b.png"}
    assert by_name["loose.png"].caption == "loose, tag" and by_name["loose.png"].repeats == 1
    assert by_name["a.jpg"].caption == "sks dog" and not by_name["a.jpg"].captioned
    assert by_name["b.png"].repeats == 10 and by_name["b.png"].size == (64, 96)
    assert data.num_with_repeats == 21
    assert data.subsets() == {".": {"n_repeats": 1, "img_count": 1}, "10_sks dog": {"n_repeats": 10, "img_count": 2}}
    assert data.notes == ["1 image(s) have no .txt caption: using the folder name 'sks dog' as their caption "
                          "(as kohya does)"]
    a1111 = {i.path.name: i.caption for i in ds.scan_folder(tmp_path, missing_caption="filename").images}
    assert a1111["a.jpg"] == "a"  # textual inversion: words of the file name, as A1111 does
    assert ds.filename_words(tmp_path / "0012-red_fox (2).png") == "red fox"


def test_buckets_follow_aspect_ratio_and_cover_the_area():
    buckets = ds.make_buckets(512, 64)
    assert (512, 512) in buckets and (768, 320) in buckets and (320, 768) in buckets
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert ds.assign_bucket((1920, 1080), buckets) == (640, 384)
    assert ds.assign_bucket((1000, 1000), buckets) == (512, 512)
    assert ds.make_buckets(512, 64, enable=False) == [(512, 512)]
    small = ds.make_buckets(64, 16)
    assert (64, 64) in small and all(w % 16 == 0 and h % 16 == 0 for w, h in small)
    fitted, crop = ds.fit_to_bucket(Image.new("RGB", (200, 100)), (64, 48))
    assert fitted.size == (64, 48) and crop == (0, 16)


def test_batches_are_a_pure_function_of_seed_and_epoch(tmp_path):
    for i in range(5):
        image(tmp_path / "2_x" / f"{i}.png", (64, 64) if i < 3 else (96, 64))
    data = ds.scan_folder(tmp_path)
    buckets = ds.make_buckets(64, 16)
    plan = ds.BatchPlan(data, buckets, batch_size=2, seed=5)
    again = ds.BatchPlan(data, buckets, batch_size=2, seed=5)
    assert plan.batches_per_epoch == 3 + 2  # squares: 3 images x 2 repeats in pairs; wide: 2 x 2
    epoch = plan.epoch(0)
    assert [len(b) for b in epoch].count(2) == len(epoch)
    assert all(len({s.bucket for s in b}) == 1 for b in epoch), "a batch never mixes buckets"
    assert [plan.batch(i) for i in range(10)] == [again.batch(i) for i in range(10)]
    assert plan.epoch(1) != plan.epoch(0)


def test_caption_dropout_shuffle_and_keep_tokens():
    rng = random.Random(0)
    caption = "sks, red, circle, blue background, flat"
    outs = {ds.process_caption(caption, rng, shuffle=True, keep_tokens=1) for _ in range(30)}
    assert all(o.startswith("sks, ") for o in outs) and len(outs) > 3
    assert ds.process_caption(caption, random.Random(1), dropout_rate=1.0) == ""
    assert ds.process_caption(caption, random.Random(1)) == caption


def test_tag_edits_across_captions(tmp_path):
    for i, text in enumerate(["a, b, c", "b, d", None]):
        image(tmp_path / f"{i}.png", (64, 64))
        if text:
            (tmp_path / f"{i}.txt").write_text(text)
    assert tools.edit_tags(tmp_path, "add", "sks").changed == 2
    assert (tmp_path / "0.txt").read_text().strip() == "sks, a, b, c"
    edit = tools.edit_tags(tmp_path, "replace", "b", "d")
    assert (edit.changed, edit.without_caption) == (2, 1)
    assert (tmp_path / "1.txt").read_text().strip() == "sks, d"  # no duplicate tag after replace
    assert tools.edit_tags(tmp_path, "remove", "sks").changed == 2
    assert tools.edit_tags(tmp_path, "append", "end").changed == 2
    assert (tmp_path / "0.txt").read_text().strip() == "a, d, c, end"
    with pytest.raises(tools.ToolError, match="give the new tag"):
        tools.edit_tags(tmp_path, "replace", "a", "")
    written = tools.write_caption(tmp_path, tmp_path / "2.png", "  fresh   caption ")
    assert written.read_text() == "fresh caption\n"
    with pytest.raises(tools.ToolError, match="not inside"):
        tools.write_caption(tmp_path, tmp_path.parent / "elsewhere.png", "x")


def test_prepare_buckets_flips_crops_and_copies_captions(tmp_path):
    src = tmp_path / "src"
    image(src / "3_a" / "wide.png", (300, 150))
    (src / "3_a" / "wide.txt").write_text("wide thing")
    image(src / "tall.png", (100, 200))
    counts = tools.prepare_buckets(src, tmp_path / "out", 128, 16, flip=True)
    assert sum(counts.values()) == 4
    out = tmp_path / "out"
    with Image.open(out / "3_a" / "wide.png") as im, Image.open(out / "3_a" / "wide_flip.png") as flipped:
        assert im.size == flipped.size and im.size[0] > im.size[1]
    assert (out / "3_a" / "wide_flip.txt").read_text() == "wide thing"
    assert not (out / "tall.txt").exists()
    with pytest.raises(tools.ToolError, match="outside the dataset folder"):
        tools.prepare_buckets(src, src / "inside", 128, 16)
