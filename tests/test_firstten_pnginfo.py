"""PNG Info's table shows the infotext's own keys, not the parser's internal Size-1 / Size-2."""
from webui.infotext import parse_infotext
from webui.ui.pnginfo import params_html

TEXT = ("a cat\nNegative prompt: dog\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x96, "
        "Hires resize: 128x192, Model: tiny")


def test_table_shows_size_as_written():
    table = params_html(parse_infotext(TEXT))
    assert "Size-1" not in table and "Size-2" not in table and "resize-1" not in table
    assert "<th>Size</th><td>64x96</td>" in table
    assert "<th>Hires resize</th><td>128x192</td>" in table
    assert "<th>Seed</th><td>5</td>" in table


def test_readme_names_files_as_the_app_writes_them(repo_root, tmp_path):
    from PIL import Image

    from webui.images import ImageSaver

    saver = ImageSaver()
    assert saver.save(Image.new("RGB", (8, 8)), tmp_path, "5", None).name == "00000-5.png"
    assert saver.save_grid(Image.new("RGB", (8, 8)), tmp_path / "grids", None).name == "grid-0000.png"
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert "00001-<seed>.png" not in readme and "grid-0001.png" not in readme
    assert "00000-<seed>.png" in readme and "grid-0000.png" in readme
    assert "nothing to relearn" not in readme and "## Not there yet" in readme
