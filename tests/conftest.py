"""Shared pytest setup: offline hub settings and the tiny-model fixtures.

The environment variables are set at import, before any test module imports
diffusers/transformers/huggingface_hub (they read them once, at import time).
"""

import os

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY"):
    os.environ[_name] = "1"

# Tests run under the allocator policy the app applies at start (see webui/allocator.py).
from webui.allocator import configure_allocator  # noqa: E402

configure_allocator()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.kit import REPO_ROOT, TinyModel, build_tiny, kit_root  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where configs/ lives)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def kit_dir() -> Path:
    """Versioned cache folder of the tiny models, shared across sessions (git-ignored)."""
    return kit_root(REPO_ROOT / "tests" / ".cache" / "kit")


@pytest.fixture(scope="session")
def tiny_sd15(kit_dir) -> TinyModel:
    """Tiny SD 1.x model: diffusers folder, A1111 single file and sidecar config."""
    return build_tiny("sd15", kit_dir)


@pytest.fixture(scope="session")
def tiny_sdxl(kit_dir) -> TinyModel:
    """Tiny SDXL model: diffusers folder, A1111 single file and sidecar config."""
    return build_tiny("sdxl", kit_dir)


@pytest.fixture(scope="session")
def app_context(tiny_sd15, tiny_sdxl, tmp_path_factory):
    """A real AppContext (model manager, queue, core) over the tiny checkpoints, with its own data dir."""
    from webui.context import context_from_flags

    data = tmp_path_factory.mktemp("data")
    ctx = context_from_flags(["--data-dir", str(data), "--ckpt-dir", str(tiny_sd15.single_file.parent),
                              "--ckpt", str(tiny_sd15.single_file)])
    yield ctx
    ctx.queue.stop()


@pytest.fixture(scope="session")
def tiny_sd15_inpaint(kit_dir) -> TinyModel:
    """Tiny SD 1.x inpainting model (9-channel UNet) in the same three forms.

    Kept in its own folder: tests that scan the tiny_sd15 checkpoint folder must not find it.
    """
    return build_tiny("sd15-inpaint", kit_dir / "inpaint")


@pytest.fixture(scope="session")
def train_folder(tmp_path_factory) -> Path:
    """A tiny kohya dataset: ``3_shapes/`` with four 64x64 shape images, three captioned, one not."""
    import random

    from webui.training.shapes import canonical_caption, random_spec, render

    root = tmp_path_factory.mktemp("train-data")
    folder = root / "3_shapes"
    folder.mkdir()
    rng = random.Random(7)
    for i in range(4):
        spec = random_spec(rng)
        render(spec).save(folder / f"img{i}.png")
        if i < 3:
            (folder / f"img{i}.txt").write_text(canonical_caption(spec.shape, spec.colour, spec.background) + ", shape")
    return root


@pytest.fixture(scope="session")
def tiny_controlnet_sd15(tiny_sd15, kit_dir):
    """Tiny ControlNet for the tiny SD 1.x model, in every file form (tests/controlnet_kit.py)."""
    from tests.controlnet_kit import build_tiny_controlnet

    return build_tiny_controlnet("sd15", tiny_sd15.load_pretrained(), kit_dir)


@pytest.fixture(scope="session")
def tiny_controlnet_sdxl(tiny_sdxl, kit_dir):
    """Tiny ControlNet for the tiny SDXL model, in every file form (tests/controlnet_kit.py)."""
    from tests.controlnet_kit import build_tiny_controlnet

    return build_tiny_controlnet("sdxl", tiny_sdxl.load_pretrained(), kit_dir)


@pytest.fixture
def sd15(app_context, tiny_sd15):
    """The shared app context with the tiny SD 1.x checkpoint active. Tests may add core features; the
    context's own (networks, ControlNet, refiner, extensions) are put back after each test."""
    app_context.models.select(str(tiny_sd15.single_file))
    features = list(app_context.core.features)
    yield app_context
    app_context.core.features[:] = features
