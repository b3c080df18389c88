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
