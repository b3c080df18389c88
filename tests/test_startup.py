"""The startup checkpoint loads behind the page: the server side never waits for it."""
import threading

import numpy as np
import pytest

from webui import cli, devices
from webui.context import build_context
from webui.generation.request import GenerationRequest
from webui.models.manager import ModelManager
from webui.paths import Paths
from webui.settings import Settings


@pytest.fixture
def slow_startup(monkeypatch):
    """ModelManager.startup held until the test releases it (a checkpoint that takes its time)."""
    release, started = threading.Event(), threading.Event()
    original = ModelManager.startup

    def held(self, ckpt=None):
        started.set()
        assert release.wait(120), "the test never released the load"
        return original(self, ckpt)

    monkeypatch.setattr(ModelManager, "startup", held)
    return started, release


def _context(tiny_sd15, tmp_path, background=True):
    args = cli.parse_args(["--data-dir", str(tmp_path), "--ckpt-dir", str(tiny_sd15.single_file.parent),
                           "--ckpt", str(tiny_sd15.single_file)])
    paths = Paths.from_args(args)
    paths.ensure()
    policy = devices.choose_policy(devices.detect(None), devices.PolicyFlags.from_args(args))
    return build_context(args, paths, policy, Settings.load(paths.config_file), load_in_background=background)


def test_context_returns_while_the_startup_checkpoint_loads(tiny_sd15, tmp_path, slow_startup):
    started, release = slow_startup
    ctx = _context(tiny_sd15, tmp_path)
    try:
        assert started.wait(60)  # the load is running on the worker, and we got here anyway
        assert ctx.loading and ctx.models.current() is None
        assert ctx.status == "Loading tiny-sd15.safetensors ..."
        assert ctx.startup_size == 64  # read from the file's header and config while the weights load
        # A generation sent now waits behind the load (FIFO) instead of failing for want of a model.
        job = ctx.submit_txt2img(GenerationRequest(prompt="a red circle", steps=2, width=64, height=64, seed=3,
                                                   save_images=False))
        assert not job.done
        release.set()
        result = job.wait(300)
        assert len(result.images) == 1 and np.asarray(result.images[0]).shape == (64, 64, 3)
        assert not ctx.loading and ctx.startup_job.done
        assert ctx.status.startswith("Loaded checkpoint tiny-sd15.safetensors")
        assert ctx.models.current().info.model_name == "tiny-sd15"
    finally:
        release.set()
        ctx.queue.stop()


def test_without_background_loading_the_model_is_ready_on_return(tiny_sd15, tmp_path):
    ctx = _context(tiny_sd15, tmp_path, background=False)
    try:
        assert not ctx.loading and ctx.startup_job is None
        assert ctx.models.current() is not None and ctx.status.startswith("Loaded checkpoint")
    finally:
        ctx.queue.stop()


def test_a_failing_startup_load_does_not_leave_the_header_loading(tiny_sd15, tmp_path, monkeypatch):
    def broken(self, ckpt=None):
        raise MemoryError("out of RAM")

    monkeypatch.setattr(ModelManager, "startup", broken)
    ctx = _context(tiny_sd15, tmp_path)
    try:
        with pytest.raises(Exception, match="out of RAM"):
            ctx.startup_job.wait(60)
        assert not ctx.loading and "Could not load the startup checkpoint" in ctx.status
    finally:
        ctx.queue.stop()
