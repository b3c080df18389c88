"""Files the app writes follow the umask like A1111's (0644 usually), not mkstemp's private 0600."""
import os
import stat

import pytest
from PIL import Image

from webui.images import ImageSaver
from webui.models.registry import HashCache
from webui.settings import Settings


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_grids_config_and_cache_follow_the_umask(tmp_path, umask_022):
    saver = ImageSaver()
    image = Image.new("RGB", (8, 8))
    sample = saver.save(image, tmp_path / "out", "1", "a prompt")
    grid = saver.save_grid(image, tmp_path / "grids", "a prompt")
    settings = Settings.load(tmp_path / "config.json")
    settings.set("CLIP_stop_at_last_layers", 2)
    cache = HashCache(tmp_path / "cache.json")
    cache.put("checkpoint/x", {"sha256": "0" * 64, "mtime": 1.0, "size": 1})
    for path in (sample, grid, tmp_path / "config.json", tmp_path / "cache.json"):
        assert _mode(path) == 0o644, path


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        sample = ImageSaver().save(Image.new("RGB", (8, 8)), tmp_path, "1", None)
    finally:
        os.umask(old)
    assert _mode(sample) == 0o600
