"""Model manager load and swap cost, as ratios against a bare diffusers call in the same run.

Measures, each in a fresh subprocess (so peak RSS is that of one load):
  bare     `<Pipeline>.from_single_file(file, config=<folder>, local_files_only=True)`
  manager  `ModelManager.select(file)` with an empty hash cache (probe + SHA-256 + load + placement)
  cached   the same with the SHA-256 already in cache.json (what every later start costs)
and in one process, the cached hot-swap A -> B -> A (sd_checkpoints_limit 2).

All runs read the file from a warm page cache (it is read once before the first run).

    .venv/bin/python bench/model_load.py                       # tiny kit models (sd15, sdxl)
    .venv/bin/python bench/model_load.py --file tmp/random-sd15/random-sd15.safetensors --generate
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _paths(ckpt_dir: Path, other_dir: Path, data: Path):
    from webui.paths import Paths

    return Paths(data_dir=data, ckpt_dir=ckpt_dir, vae_dir=data / "VAE", lora_dir=data / "Lora",
                 embeddings_dir=data / "embeddings", controlnet_dir=data / "ControlNet", outputs_dir=data / "out",
                 config_file=data / "config.json", styles_file=data / "styles.csv", cache_file=data / "cache.json",
                 bundled_ckpt_dir=other_dir)


def _manager(file: Path, data: Path, limit: int = 1, other: Path | None = None):
    from webui.devices import choose_policy, detect
    from webui.models.manager import ModelManager
    from webui.settings import Settings

    settings = Settings(path=None)
    settings.update({"sd_checkpoints_limit": limit}, save=False)
    paths = _paths(file.parent, (other or file).parent, data)
    return ModelManager(paths, settings, choose_policy(detect()))


def _render(pipe) -> float:
    import torch

    started = time.perf_counter()
    pipe("a red circle", num_inference_steps=2, height=64, width=64,
         generator=torch.Generator().manual_seed(0), output_type="np")
    return time.perf_counter() - started


def child(mode: str, file: Path, generate: bool) -> dict:
    """One measured load in this (fresh) process."""
    import torch

    import diffusers
    from webui.models.probe import probe_checkpoint

    result: dict = {"mode": mode}
    probe = probe_checkpoint(file)  # header only
    # Import the pipeline stack before timing: the app pays it once at start, not per load.
    cls = getattr(diffusers, probe.pipeline_class)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        if mode == "bare":
            started = time.perf_counter()
            pipe = cls.from_single_file(str(file), config=str(probe.config_dir), local_files_only=True,
                                        dtype=torch.float32)
            result["load_s"] = time.perf_counter() - started
        else:
            manager = _manager(file, data)
            info = manager.find(str(file))
            if mode == "cached":
                manager.ensure_hash(info)
            started = time.perf_counter()
            model = manager.select(info.title)
            result["load_s"] = time.perf_counter() - started
            result["arch"], result["config"] = model.arch, model.scheduler_config.get("_class_name")
            pipe = model.pipe
        if generate:
            result["generate_s"] = _render(pipe)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_child(mode: str, file: Path, generate: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--file", str(file)]
                         + (["--generate"] if generate else []), capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def swap_bench(file_a: Path, file_b: Path, repeat: int) -> dict:
    """Load A and B once, then time cached swaps (sd_checkpoints_limit 2)."""
    with tempfile.TemporaryDirectory() as tmp:
        manager = _manager(file_a, Path(tmp), limit=2, other=file_b)
        a, b = manager.find(str(file_a)), manager.find(str(file_b))
        timings = {}
        for label, info in (("load_a_s", a), ("load_b_s", b)):
            started = time.perf_counter()
            manager.select(info.title)
            timings[label] = time.perf_counter() - started
        swaps = []
        for _ in range(repeat):
            for info in (a, b):
                started = time.perf_counter()
                manager.select(info.title)
                swaps.append(time.perf_counter() - started)
        assert manager.stats.file_reads == 2, manager.stats
        timings["swap_s_median"] = statistics.median(swaps)
        timings["stats"] = vars(manager.stats)
        return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="checkpoint A (default: the tiny kit's SD 1.x file)")
    parser.add_argument("--file-b", type=Path, help="checkpoint B for the swap (default: the tiny kit's SDXL file)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--generate", action="store_true", help="also time a 64x64, 2-step image after loading")
    parser.add_argument("--child", choices=["bare", "manager", "cached"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.file.resolve(), args.generate)))
        return 0
    if args.file is None or args.file_b is None:
        from tests.kit import build_tiny, kit_root

        root = kit_root(REPO / "tests" / ".cache" / "kit")
        args.file = args.file or build_tiny("sd15", root).single_file
        args.file_b = args.file_b or build_tiny("sdxl", root).single_file
    file_a, file_b = args.file.resolve(), args.file_b.resolve()
    for file in (file_a, file_b):
        with open(file, "rb") as fh:  # warm the page cache so every run reads from RAM
            while fh.read(1 << 24):
                pass
    print(f"A: {file_a} ({file_a.stat().st_size / 1e6:.0f} MB), B: {file_b.name}; repeat {args.repeat}")
    runs: dict[str, list[dict]] = {"bare": [], "manager": [], "cached": []}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits every mode alike
        for mode in runs:
            runs[mode].append(run_child(mode, file_a, args.generate))
    med = {mode: statistics.median(r["load_s"] for r in rs) for mode, rs in runs.items()}
    for mode, rs in runs.items():
        extra = ""
        if args.generate:
            extra = f", generate 64x64/2 steps {statistics.median(r['generate_s'] for r in rs):.2f}s"
        each = ", ".join(f"{r['load_s']:.2f}" for r in rs)
        print(f"{mode:8s} load {med[mode]:7.2f}s (runs: {each}), "
              f"peak RSS {max(r['peak_rss_mb'] for r in rs):.0f} MB{extra}")
    print(f"ratio manager/bare (first load, hashing included): {med['manager'] / med['bare']:.2f}")
    print(f"ratio cached/bare  (hash known from cache.json):   {med['cached'] / med['bare']:.2f}")
    swap = swap_bench(file_a, file_b, args.repeat)
    print(f"swap A->B->A (limit 2): loads {swap['load_a_s']:.2f}s + {swap['load_b_s']:.2f}s, cached swap median "
          f"{swap['swap_s_median'] * 1000:.1f} ms, ratio swap/bare load {swap['swap_s_median'] / med['bare']:.4f}; "
          f"stats {swap['stats']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
