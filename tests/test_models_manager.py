"""ModelManager: load the tiny kit in every form, hot-swap through the RAM cache, survive bad files."""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from webui.devices import DeviceInfo, choose_policy
from webui.models.errors import ModelLoadError
from webui.models.manager import ModelManager
from webui.models.registry import sha256_of
from webui.paths import REPO_ROOT, Paths
from webui.settings import Settings


def make_paths(tmp: Path, ckpt_dir: Path | None = None, bundled: Path | None = None) -> Paths:
    ckpt_dir = ckpt_dir or tmp / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return Paths(data_dir=tmp, ckpt_dir=ckpt_dir, vae_dir=tmp / "VAE", lora_dir=tmp / "Lora",
                 embeddings_dir=tmp / "embeddings", controlnet_dir=tmp / "ControlNet", outputs_dir=tmp / "outputs",
                 config_file=tmp / "config.json", styles_file=tmp / "styles.csv", cache_file=tmp / "cache.json",
                 configs_dir=REPO_ROOT / "configs", bundled_ckpt_dir=bundled or tmp / "bundled")


def _hardlink_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link(model, folder: Path, stem: str | None = None) -> Path:
    """Put a tiny model's single file and sidecar into `folder` (optionally renamed).

    Hard links, not symlinks: the shared kit cache may be pruned by a concurrent test run.
    """
    stem = stem or model.single_file.stem
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.safetensors"
    _hardlink_or_copy(model.single_file, target)
    shutil.copytree(model.config_dir, folder / f"{stem}.config")
    return target


class CountingHasher:
    def __init__(self):
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        return sha256_of(path)


def manager_for(tmp_path, limit=2, settings_path=None, ram_fraction=0.5, **kwargs) -> ModelManager:
    settings = Settings(path=settings_path)
    settings.update({"sd_checkpoints_limit": limit, "sd_checkpoint_cache_ram_fraction": ram_fraction}, save=False)
    policy = choose_policy(DeviceInfo(cpu_cores=2, ram_bytes=8 << 30))
    return ModelManager(kwargs.pop("paths", None) or make_paths(tmp_path), settings, policy, **kwargs)


def render(model) -> np.ndarray:
    """A plain pipeline call with a fixed generator (no dependency on the generation core)."""
    return model.pipe("a red circle", num_inference_steps=2, height=64, width=64, guidance_scale=5.0,
                      generator=torch.Generator().manual_seed(7), output_type="np").images[0]


@pytest.fixture
def two_models(tmp_path, tiny_sd15, tiny_sdxl):
    ckpt = tmp_path / "models" / "Stable-diffusion"
    link(tiny_sd15, ckpt)
    link(tiny_sdxl, ckpt)
    shutil.copytree(tiny_sd15.diffusers_dir, ckpt / "tiny-sd15-folder", copy_function=_hardlink_or_copy)
    return tmp_path


def test_every_form_loads_with_the_right_arch_and_size(two_models, tiny_sd15):
    manager = manager_for(two_models)
    names = [i.name for i in manager.checkpoints()]
    assert names == ["tiny-sd15-folder", "tiny-sd15.safetensors", "tiny-sdxl.safetensors"]
    sd15 = manager.select("tiny-sd15.safetensors")
    assert (sd15.arch, sd15.native_size, type(sd15.pipe).__name__) == ("sd15", 64, "StableDiffusionPipeline")
    assert sd15.info.shorthash == hashlib.sha256(tiny_sd15.single_file.read_bytes()).hexdigest()[:10]
    assert sd15.pipe.safety_checker is None and sd15.scheduler_config["_class_name"] == "PNDMScheduler"
    single_image = render(sd15)
    folder = manager.select("tiny-sd15-folder")
    assert (folder.arch, folder.info.kind, folder.native_size) == ("sd15", "diffusers", 64)
    np.testing.assert_allclose(render(folder), single_image, atol=1e-5)  # same weights, two containers
    sdxl = manager.select("tiny-sdxl")
    assert (sdxl.arch, sdxl.native_size, type(sdxl.pipe).__name__) == ("sdxl", 64, "StableDiffusionXLPipeline")
    assert render(sdxl).shape == (64, 64, 3)


def test_swap_a_b_a_reads_each_file_once_and_keeps_images(two_models):
    hasher = CountingHasher()
    manager = manager_for(two_models, limit=2, hasher=hasher)
    a = manager.select("tiny-sd15.safetensors")
    before = render(a)
    manager.select("tiny-sdxl.safetensors")
    assert manager.current().arch == "sdxl"
    again = manager.select(a.info.title)
    assert again is a and again.pipe is a.pipe
    assert (manager.stats.file_reads, manager.stats.cache_hits, manager.stats.loads) == (2, 1, 2)
    assert hasher.calls == 2  # each file hashed once, on its first load
    assert np.array_equal(render(again), before)


def test_cache_limit_and_ram_budget_evict_least_recently_used(two_models):
    one = manager_for(two_models, limit=1)
    for name in ("tiny-sd15.safetensors", "tiny-sdxl.safetensors", "tiny-sd15.safetensors"):
        one.select(name)
    assert one.stats.file_reads == 3 and one.stats.evictions == 2 and len(one.cached()) == 1

    # Room for three by count, but the budget (5% of a 100 MB "machine") holds no parked model.
    tight = manager_for(two_models, limit=3, ram_bytes=100 * 2**20, ram_fraction=0.05)
    for name in ("tiny-sd15.safetensors", "tiny-sdxl.safetensors", "tiny-sd15.safetensors"):
        tight.select(name)
    assert tight.stats.file_reads == 3 and [m.info.name for m in tight.cached()] == ["tiny-sd15.safetensors"]


def test_select_persists_the_title(two_models):
    manager = manager_for(two_models, settings_path=two_models / "config.json")
    model = manager.select("tiny-sdxl")
    saved = Settings.load(two_models / "config.json")
    assert saved.get("sd_model_checkpoint") == model.info.title and "[" in model.info.title


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_files_leave_the_previous_model_active(two_models, tiny_sd15):
    ckpt = two_models / "models" / "Stable-diffusion"
    (ckpt / "cut.safetensors").write_bytes(tiny_sd15.single_file.read_bytes()[:3_000_000])
    (ckpt / "notes.safetensors").write_text("prompt ideas: a cat, a dog\n")
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, str(ckpt / "style-lora.safetensors"))
    shutil.copy(tiny_sd15.single_file, ckpt / "no-sidecar.safetensors")
    marker = two_models / "PWNED"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": Evil(marker)}, ckpt / "evil.ckpt")
    manager = manager_for(two_models)
    good = manager.select("tiny-sd15.safetensors")
    before = render(good)
    cases = {"cut.safetensors": "truncated", "notes.safetensors": "not a safetensors file",
             "style-lora.safetensors": "LoRA", "no-sidecar.safetensors": "no-sidecar.config/",
             "evil.ckpt": "posix.system"}
    for name, message in cases.items():
        with pytest.raises(ModelLoadError, match=message) as err:
            manager.select(name)
        assert name in str(err.value)
        assert manager.current() is good, name
    assert "--disable-safe-unpickle" in str(pytest.raises(ModelLoadError, manager.select, "evil.ckpt").value)
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match="no checkpoint matches"):
        manager.select("does-not-exist-anywhere")
    with manager.active() as model:
        assert model is good and np.array_equal(render(model), before)
    assert manager.stats.failures >= len(cases)


def test_legacy_ckpt_loads_safely_and_unsafe_only_with_the_flag(two_models, tiny_sd15, caplog):
    ckpt = two_models / "models" / "Stable-diffusion"
    state = load_file(str(tiny_sd15.single_file))
    for stem in ("plain", "lightning"):
        shutil.copytree(tiny_sd15.config_dir, ckpt / f"{stem}.config")
    torch.save({"state_dict": state, "global_step": 10}, ckpt / "plain.ckpt")
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=1e-4)}, ckpt / "lightning.ckpt")

    safe = manager_for(two_models)
    reference = render(safe.select("tiny-sd15.safetensors"))
    assert np.array_equal(render(safe.select("plain.ckpt")), reference)  # weights-only pickle: no flag needed
    with pytest.raises(ModelLoadError, match=r"argparse\.Namespace.*--disable-safe-unpickle"):
        safe.select("lightning.ckpt")

    unsafe = manager_for(two_models, allow_unsafe_pickle=True)
    with caplog.at_level(logging.WARNING, logger="webui.models.loader"):
        model = unsafe.select("lightning.ckpt")
    assert model.arch == "sd15" and "--disable-safe-unpickle" in caplog.text
    assert np.array_equal(render(model), reference)


def test_swap_waits_for_the_running_generation(two_models):
    manager = manager_for(two_models)
    a = manager.select("tiny-sd15.safetensors")
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def generation():
        with manager.active() as model:
            holding.set()
            release.wait(30)
            assert model is a

    worker = threading.Thread(target=generation)
    worker.start()
    holding.wait(10)
    swapper = threading.Thread(target=lambda: (manager.select("tiny-sdxl.safetensors"), done.set()))
    swapper.start()
    deadline = time.time() + 60
    while manager.stats.loads < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert manager.stats.loads == 2 and not done.is_set() and manager.current() is a
    release.set()
    worker.join(30)
    swapper.join(60)
    assert done.is_set() and manager.current().arch == "sdxl"
    with manager.active():
        with pytest.raises(RuntimeError, match="holds manager.active"):
            manager.select("tiny-sd15.safetensors")


def test_startup_choices(tmp_path, tiny_sd15, tiny_sdxl):
    empty = manager_for(tmp_path / "empty")
    message = empty.startup(None)
    assert str(empty.paths.ckpt_dir) in message and empty.current() is None
    with pytest.raises(ModelLoadError, match="No checkpoint is loaded"):
        with empty.active():
            pass

    bundled = tmp_path / "repo" / "models" / "Stable-diffusion"
    link(tiny_sd15, bundled, "demo-shapes")
    paths = make_paths(tmp_path / "data", bundled=bundled)
    demo_only = manager_for(tmp_path, paths=paths)
    assert "demo-shapes.safetensors" in demo_only.startup(None)

    link(tiny_sdxl, paths.ckpt_dir, "mine")
    user_first = manager_for(tmp_path, paths=paths)
    assert "Loaded checkpoint mine.safetensors [" in user_first.startup(None)

    last_used = manager_for(tmp_path, paths=paths)
    last_used.settings.set("sd_model_checkpoint", "demo-shapes.safetensors [0000000000]", save=False)
    assert last_used.startup(None).startswith("Loaded checkpoint demo-shapes")

    outside = link(tiny_sd15, tmp_path / "elsewhere", "external")
    flagged = manager_for(tmp_path, paths=paths)
    assert flagged.startup(Path(outside)).startswith("Loaded checkpoint external.safetensors")
    missing = manager_for(tmp_path, paths=paths)
    message = missing.startup("nowhere/zzz.safetensors")
    assert "--ckpt nowhere/zzz.safetensors: no such file" in message and "Loaded checkpoint mine" in message


def test_a_replaced_file_is_reloaded_not_served_from_the_cache(two_models, tiny_sd15):
    manager = manager_for(two_models)
    first = manager.select("tiny-sd15.safetensors")
    assert manager.select("tiny-sd15.safetensors") is first and manager.stats.file_reads == 1
    path = first.info.filename
    path.unlink()  # a hard link: unlink first so the shared kit file stays untouched
    save_file(load_file(str(tiny_sd15.single_file)), str(path), metadata={"retrained": "yes"})
    manager.refresh()
    second = manager.select("tiny-sd15.safetensors")
    assert second is not first and manager.stats.file_reads == 2
    assert second.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.info.sha256
