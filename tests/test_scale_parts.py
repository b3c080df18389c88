"""Scale-out pieces that need no Ray cluster: flags, the ordered gate, progress both ends, the control
state, and a replica's core run in this process (same pixels as generate(), nothing saved)."""
import asyncio
import dataclasses
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.scale_helpers import one_thread
from webui.cli import parse_args
from webui.generation.core import generate
from webui.generation.request import GenerationRequest
from webui.generation.styles import Style
from webui.scale.control import JobControl
from webui.scale.gate import OrderedGate
from webui.scale.messages import Ticket, Update
from webui.scale.options import ScalePlan, check_flags, scale_requested
from webui.scale.progress import MirrorProgress, ReplicaProgress

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_the_default_app_imports_no_ray():
    code = ("import sys, webui.context, webui.jobs, webui.cli, webui.scale.options;"
            "print('ray' in sys.modules or any(m.startswith('ray.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("argv, problem", [
    (["--ray-replicas", "2", "--ray-max-replicas", "3"], "not both"),
    (["--ray-replicas", "0"], "at least 1"),
    (["--ray-min-replicas", "1"], "needs --ray-max-replicas"),
    (["--ray-min-replicas", "3", "--ray-max-replicas", "2"], "more than"),
    (["--ray-max-replicas", "0"], "at least 1"),
    (["--ray-replicas", "1", "--ray-cpus-per-replica", "0"], "more than 0"),
])
def test_contradicting_ray_flags_exit_with_a_message(argv, problem, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2 and problem in capsys.readouterr().err


def test_a_ray_flag_without_ray_installed_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    parse_args([])  # the default app does not need Ray
    with pytest.raises(SystemExit) as exc:
        parse_args(["--ray-replicas", "2"])
    assert exc.value.code == 2 and "requirements-scale.txt" in capsys.readouterr().err


def test_plans_from_flags():
    assert not scale_requested(parse_args([]))
    local = ScalePlan.from_args(parse_args(["--ray-replicas", "2"]))
    assert (local.address, local.deploy, local.slots) == (None, True, 2) and "on this machine" in local.describe()
    auto = ScalePlan.from_args(parse_args(["--ray-address", "auto", "--ray-max-replicas", "4"]))
    assert (auto.min_replicas, auto.max_replicas, auto.slots, auto.deploy) == (1, 4, 4, True)
    attach = ScalePlan.from_args(parse_args(["--ray-address", "head:6379"]))
    assert not attach.deploy and "attached" in attach.describe()
    assert check_flags(parse_args(["--ray-min-replicas", "0", "--ray-max-replicas", "2"])) is None


def test_gate_lets_jobs_in_in_reserved_order_and_at_most_limit_at_once():
    gate = OrderedGate(2)
    for key in "abcde":
        gate.reserve(key)
    entered, lock = [], threading.Lock()

    def run(key):
        gate.enter(key)
        with lock:
            entered.append((key, gate.inside))
        time.sleep(0.05)
        gate.leave()

    threads = [threading.Thread(target=run, args=(k,)) for k in "edcba"]  # threads start in reverse order
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join(5)
    assert [k for k, _ in entered] == list("abcde")
    assert max(n for _, n in entered) <= 2


def test_replica_progress_throttles_updates_and_mirror_takes_them():
    sent: list[Update] = []
    replica = ReplicaProgress(sent.append, every_s=60)
    replica.preview_every, replica.make_preview = 2, lambda latents: f"preview@{latents}"
    replica.begin_batch(0, 2, 10)
    for step in range(1, 5):
        replica.step(step, latents=step)
    assert len(sent) == 1, "within every_s only the forced batch start is sent"
    replica.send(force=True)
    assert sent[-1].step == 4 and sent[-1].preview == "preview@4" and sent[-1].preview_step == 4
    replica.send(force=True)
    assert sent[-1].preview is None, "an unchanged preview is not sent twice"

    signals = []
    mirror = MirrorProgress(lambda token, what: signals.append((token, what)))
    for update in sent:
        mirror.apply(update)
    snap = mirror.snapshot()
    assert (snap.job_no, snap.job_count, snap.sampling_step, snap.sampling_steps) == (0, 2, 4, 10)
    assert snap.preview == "preview@4" and snap.textinfo == "Batch 1 of 2"
    mirror.interrupt()
    mirror.skip()
    assert signals == [(mirror.token, "interrupt"), (mirror.token, "skip")] and mirror.interrupted


def test_control_state_long_poll_and_forget():
    async def scenario():
        control = JobControl()
        waiter = asyncio.ensure_future(control.wait_change("t", (False, 0)))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await control.signal("t", "skip")
        assert await asyncio.wait_for(waiter, 1) == (False, 1)
        await control.signal("t", "interrupt")
        assert await control.wait_change("t", (False, 1)) == (True, 1)
        late = asyncio.ensure_future(control.wait_change("t", (True, 1)))
        await asyncio.sleep(0.01)
        await control.forget("t")
        assert await asyncio.wait_for(late, 1) == (False, 0)
        with pytest.raises(ValueError):
            await control.signal("t", "explode")

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def replica_core(tiny_sd15, tiny_sdxl, tmp_path_factory):
    from webui.scale.replica import ReplicaCore

    data = tmp_path_factory.mktemp("replica-data")
    flags = {"data_dir": str(data), "ckpt_dir": str(tiny_sd15.single_file.parent)}
    return ReplicaCore(flags, {"samples_save": True})


def test_replica_core_matches_generate_and_saves_nothing(replica_core, app_context, tiny_sd15):
    app_context.models.select(str(tiny_sd15.single_file))
    app_context.styles.put(Style("red-style", "{prompt}, red"))
    request = GenerationRequest(prompt="a circle", negative_prompt="blue", seed=77, steps=3, width=64, height=64,
                                sampler_name="Euler a", styles=["red-style"], save_images=True)
    local = one_thread(generate, dataclasses.replace(request, save_images=False), app_context.core)
    info = app_context.models.current().info
    ticket = Ticket(job_id="job-1", request=request, checkpoint=info.name, checkpoint_path=str(info.filename),
                    settings=app_context.settings.as_dict(), styles=[app_context.styles.get("red-style")])
    remote = one_thread(replica_core.generate, ticket, ReplicaProgress(lambda update: None))
    assert remote.paths == [] and not any(replica_core.paths.outputs_dir.rglob("*.png"))
    assert remote.prompts == ["a circle, red"] and remote.infotexts == local.infotexts
    assert np.array_equal(np.asarray(remote.images[0]), np.asarray(local.images[0]))


def test_replica_core_runs_an_outpainting_job_unsaved(replica_core, app_context, tiny_sd15):
    from PIL import Image

    from webui.generation.outpaint import OutpaintJob, run_outpaint

    app_context.models.select(str(tiny_sd15.single_file))
    request = GenerationRequest(prompt="a circle", seed=5, steps=2, width=64, height=64, sampler_name="Euler a",
                                mode="img2img", init_images=[Image.new("RGB", (64, 64), (30, 160, 60))],
                                denoising_strength=0.8, save_images=True)
    job = OutpaintJob(request, pixels=32, directions=("left",), mask_blur=2)
    local = one_thread(run_outpaint, dataclasses.replace(job, request=dataclasses.replace(request, save_images=False)),
                       app_context.core)
    info = app_context.models.current().info
    ticket = Ticket(job_id="job-2", request=job, checkpoint=info.name, checkpoint_path=str(info.filename),
                    settings=app_context.settings.as_dict())
    remote = one_thread(replica_core.generate, ticket, ReplicaProgress(lambda update: None))
    assert remote.images[0].size == local.images[0].size == (128, 64), "the grown canvas"
    assert remote.paths == [] and remote.infotexts == local.infotexts
    assert np.array_equal(np.asarray(remote.images[0]), np.asarray(local.images[0]))


def test_replica_core_switches_checkpoints_by_name_and_says_when_one_is_missing(replica_core, tiny_sdxl):
    from webui.models.errors import ModelLoadError

    assert replica_core.select(tiny_sdxl.single_file.name) == tiny_sdxl.single_file.name
    assert replica_core.models.current().arch == "sdxl"
    with pytest.raises(ModelLoadError, match="model folders must exist on every worker"):
        replica_core.select("not-here.safetensors", "/nowhere/not-here.safetensors")


def test_the_front_saves_a_replica_result_as_generate_would(replica_core, app_context, tiny_sd15):
    from PIL import Image

    from webui.images import read_infotext
    from webui.scale.saving import save_result

    app_context.models.select(str(tiny_sd15.single_file))
    info = app_context.models.current().info
    request = GenerationRequest(prompt="a square", seed=78, steps=2, width=64, height=64, sampler_name="Euler a",
                                batch_size=2, save_images=True)
    ticket = Ticket(job_id="job-2", request=request, checkpoint=info.name, checkpoint_path=str(info.filename),
                    settings=app_context.settings.as_dict())
    result = replica_core.generate(ticket, ReplicaProgress(lambda update: None))
    result.request = dataclasses.replace(result.request, save_images=True)
    paths = save_result(app_context.core, result, info.model_name)
    assert len(paths) == 2 and all(p.is_relative_to(app_context.paths.outputs_dir) for p in paths)
    for path, image, text in zip(paths, result.images, result.infotexts):
        with Image.open(path) as saved:
            assert read_infotext(saved) == text and np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(image))
    grids = list((app_context.paths.outputs_dir / "txt2img-grids").rglob("*.png"))
    assert grids, "a batch saves its grid on the front too"
    result.interrupted = True
    assert save_result(app_context.core, result, info.model_name) == [], "incomplete images are not saved"


def test_launch_with_a_ray_flag_uses_the_installed_pinned_ray(tmp_path):
    import hashlib
    import re
    from importlib.metadata import version

    pin = re.search(r"^ray\[serve\]==(\S+)$", (ROOT / "requirements-scale.txt").read_text(), re.M)
    assert pin and version("ray") == pin.group(1), "the venv's Ray is the pinned one"
    digest = hashlib.sha256((ROOT / "requirements-scale.txt").read_bytes()).hexdigest()[:16]
    stamp = ROOT / ".venv" / f".installed-requirements-scale.txt-{digest}"
    assert stamp.exists(), "run ./launch.sh --test once first: it installs requirements-scale.txt"
    run = subprocess.run(["bash", "launch.sh", "--ray-replicas", "1", "--exit", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Installing" not in run.stdout and stamp.exists()


def test_the_rayservice_builder_makes_the_same_deployment_from_its_args():
    from webui.scale.serve_app import app_builder

    fixed = app_builder({"replicas": 3, "gpus_per_replica": 1, "cpus_per_replica": 2,
                         "flags": {"data_dir": "/data"}, "warm": "model.safetensors"})._bound_deployment
    assert (fixed.name, fixed.num_replicas, fixed.max_ongoing_requests) == ("GenerationReplica", 3, 1)
    assert fixed.ray_actor_options["num_gpus"] == 1 and fixed.ray_actor_options["num_cpus"] == 2
    assert fixed.ray_actor_options["runtime_env"]["env_vars"]["MALLOC_ARENA_MAX"] == "1"
    assert fixed.init_args == ({"data_dir": "/data"}, {}, "model.safetensors")
    auto = app_builder({"min_replicas": 0, "max_replicas": 4})._bound_deployment._deployment_config
    assert (auto.autoscaling_config.min_replicas, auto.autoscaling_config.max_replicas) == (0, 4)
