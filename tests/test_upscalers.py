"""Upscalers: spandrel detection of tiny random models of its own architectures, sizes, tiling, bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.upscaler_kit import tiny_compact, tiny_esrgan, write_upscalers
from webui.models.upscalers import (LATENT_MODES, UpscalerError, UpscalerManager, pil_to_tensor, run_tiled,
                                    tile_starts, upscale_latents)


@pytest.fixture(scope="module")
def upscaler_dir(tmp_path_factory):
    """models/ with a tiny ESRGAN (.pth, 4x), a tiny Real-ESRGAN compact (.safetensors, 2x) and bad files."""
    return write_upscalers(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def manager(upscaler_dir):
    return UpscalerManager(upscaler_dir)


def _photo(width=40, height=28, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    return Image.fromarray((base * 0.6 + rng.integers(0, 100, (height, width, 3))).astype(np.uint8))


def test_lists_builtins_then_model_files(manager):
    names = manager.names()
    assert names[:3] == ["None", "Lanczos", "Nearest"]
    assert {"tiny-esrgan-4x", "tiny-compact-2x"} <= set(names)
    assert manager.names(latent=True)[:6] == list(LATENT_MODES)


def test_spandrel_detects_architecture_and_scale(manager):
    assert manager.model_scale("tiny-esrgan-4x") == 4
    assert manager.model_scale("tiny-compact-2x") == 2


@pytest.mark.parametrize("name", ["tiny-esrgan-4x", "tiny-compact-2x", "Lanczos", "Nearest", "None"])
def test_output_size_follows_a1111_rounding(manager, name):
    image = _photo(40, 28)
    out = manager.upscale(image, name, scale=2)
    assert out.size == (80, 56)
    out = manager.upscale(image, name, scale=1.5)
    assert out.size == (56, 40)  # 60 -> 56 and 42 -> 40: multiples of 8, as A1111 makes them


def test_model_pass_is_the_network_output(manager):
    """At its native scale the result is the network's own output (no resize on top)."""
    image = _photo(16, 16)
    out = manager.upscale(image, "tiny-compact-2x", size=(32, 32))
    with torch.no_grad():
        expected = tiny_compact()(pil_to_tensor(image)).clamp(0, 1)
    got = torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1)
    assert (got - expected[0]).abs().max() <= 1 / 255 + 1e-6


def test_two_passes_when_the_model_scale_is_too_small(manager):
    out = manager.upscale(_photo(16, 16), "tiny-compact-2x", size=(64, 64))  # 2x twice
    assert out.size == (64, 64)


def test_tiled_result_matches_untiled_within_tolerance():
    """Overlapping tiles blended with ramps stay within 2/255 mean and 24/255 max of one whole pass."""
    model = tiny_esrgan(scale=2)
    image = pil_to_tensor(_photo(96, 80, seed=3))
    with torch.no_grad():
        whole = model(image).clamp(0, 1)
        tiled = run_tiled(lambda t: model(t).clamp(0, 1), image, 2, tile=48, overlap=16)
    diff = (whole - tiled).abs()
    assert tiled.shape == whole.shape
    assert diff.mean().item() < 2 / 255, diff.mean().item()
    assert diff.max().item() < 24 / 255, diff.max().item()
    with torch.no_grad():
        no_overlap = run_tiled(lambda t: model(t).clamp(0, 1), image, 2, tile=48, overlap=0)
    assert (whole - no_overlap).abs().mean() > diff.mean()  # the overlap is what hides the seams


def test_tile_starts_cover_everything():
    for length in (1, 47, 48, 49, 100, 257):
        starts = tile_starts(length, 48, 8)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + 48] = True
        assert covered.all() and starts[-1] + min(48, length) == length


def test_interrupt_between_tiles():
    model = tiny_esrgan(scale=2)
    with pytest.raises(InterruptedError):
        run_tiled(model, pil_to_tensor(_photo(96, 96)), 2, tile=32, overlap=8, should_stop=lambda: True)


@pytest.mark.parametrize("name, words", [("corrupt", "not a readable"), ("unknown-arch", "does not recognise"),
                                         ("pickled-code", "refused")])
def test_bad_files_are_refused_with_their_name(manager, name, words):
    with pytest.raises(UpscalerError, match=name) as info:
        manager.upscale(_photo(), name, scale=2)
    assert words in str(info.value)


def test_unknown_name_and_bad_scale(manager):
    with pytest.raises(UpscalerError, match="unknown upscaler 'nope'"):
        manager.upscale(_photo(), "nope", scale=2)
    with pytest.raises(UpscalerError, match="positive"):
        manager.upscale(_photo(), "Lanczos", scale=0)
    with pytest.raises(UpscalerError, match="outside"):
        manager.upscale(_photo(), "Lanczos", size=(100000, 10))
    with pytest.raises(UpscalerError, match="unknown upscaler"):
        manager.get("Latent")  # latent modes only where latents exist (hires fix)


def test_latent_modes():
    latents = torch.randn(1, 4, 8, 8)
    for mode in LATENT_MODES:
        out = upscale_latents(latents, mode, (16, 12))
        assert out.shape == (1, 4, 16, 12)
    assert torch.equal(upscale_latents(latents, "Latent (nearest)", (16, 16))[:, :, ::2, ::2], latents)


def test_refresh_finds_new_files_and_drops_removed_ones(upscaler_dir, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(upscaler_dir, root)
    manager = UpscalerManager(root)
    assert "tiny-compact-2x" in manager.names()
    (root / "RealESRGAN" / "tiny-compact-2x.safetensors").rename(root / "SwinIR-moved.safetensors")
    manager.refresh()
    assert "tiny-compact-2x" not in manager.names()
