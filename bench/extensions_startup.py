"""Start-up time with 20 extensions (5 built-in + 15 test ones) against start-up with none.

    nice -n 10 .venv/bin/python bench/extensions_startup.py --repeats 3

Each run starts the real app (`app.py`, bundled demo model, its own data dir) and times it from
process start to the "Running on" line, then stops it. Runs alternate between the two setups
so machine load hits both alike; the result is the ratio of medians in one run. The same
20 extensions are also loaded in-process (ExtensionHost.load) to show their own cost.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "ext_fixtures"
FROM_FIXTURES = ["a1111-alwayson", "bad-patch", "broken-import", "broken-register", "broken-ui", "collide-a",
                 "collide-b", "native-all-hooks", "needs-port", "raising-hook"]
GENERATED = 5  # small native extensions with a setting, a panel, hooks, JS and a localization each
NATIVE_TEMPLATE = '''from webui.extensions.api import Param


def register(api):
    api.setting("bench_{n}_level", 1, "Bench extension {n} level", minimum=0, maximum=9)
    api.panel("Bench panel {n}", [Param("enabled", bool, False), Param("amount", float, 0.5, minimum=0, maximum=1)],
              enabled_param="enabled")
    api.on_plan(lambda job, plan: None)
    api.on_step(lambda job, state: None)
'''


def make_extensions(data: Path) -> int:
    target = data / "extensions"
    target.mkdir(parents=True, exist_ok=True)
    for name in FROM_FIXTURES:
        shutil.copytree(FIXTURES / name, target / name)
    for n in range(GENERATED):
        folder = target / f"bench-native-{n}"
        (folder / "javascript").mkdir(parents=True)
        (folder / "localizations").mkdir()
        (folder / "extension.toml").write_text(f'[extension]\nname = "bench-native-{n}"\napi = 1\n'
                                               'entry = "plugin:register"\n')
        (folder / "plugin.py").write_text(NATIVE_TEMPLATE.format(n=n))
        (folder / "javascript" / "bench.js").write_text(f"onUiLoaded(() => {{ window.bench{n} = true; }});\n")
        (folder / "localizations" / "zh_CN.json").write_text(json.dumps({f"Bench panel {n}": f"测试面板 {n}"}))
    return len(FROM_FIXTURES) + GENERATED


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(data: Path, extra: list[str], timeout: float = 900) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from process start to 'Running on', for one app start.

    CPU time is reported too because this machine is shared: wall time swings with other
    processes' load, the CPU the app itself spends much less.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir", str(data),
                                *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    try:
        for line in process.stdout:
            if line.startswith("Running on http"):
                return time.perf_counter() - started, _cpu_seconds(process.pid)
            if time.perf_counter() - started > timeout:
                break
        raise RuntimeError(f"the app did not start (exit code {process.poll()})")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def in_process_load(data: Path) -> dict:
    from webui.extensions.discover import BUILTIN_DIR
    from webui.extensions.host import ExtensionHost
    from webui.settings import Settings

    import gradio  # noqa: F401  (the app imports it anyway; keep its import out of the extensions' time)

    started = time.perf_counter()
    host = ExtensionHost(data, Settings.load(None), builtin_dir=BUILTIN_DIR).load()
    total = time.perf_counter() - started
    host.finish_start()
    return {"extensions": len(host.records), "load_s": round(total, 3),
            "slowest": sorted(((r.name, round(r.load_ms)) for r in host.records), key=lambda x: -x[1])[:3]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-ext-"))
    with_ext, without = root / "with", root / "without"
    user = make_extensions(with_ext)
    builtin = sum(1 for p in (ROOT / "extensions-builtin").iterdir() if p.is_dir())
    none_flags = ["--disable-all-extensions"]
    wall: dict[str, list[float]] = {"none": [], "twenty": []}
    cpu: dict[str, list[float]] = {"none": [], "twenty": []}
    start_once(without, none_flags)  # warm the file cache (torch, gradio) before timing anything
    for _ in range(args.repeats):
        for key, data, flags in (("none", without, none_flags), ("twenty", with_ext, [])):
            w, c = start_once(data, flags)
            wall[key].append(w)
            cpu[key].append(c)
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {"extensions": builtin + user, "builtin": builtin, "test": user, "repeats": args.repeats,
              "wall_s": {k: [round(x, 2) for x in v] for k, v in wall.items()},
              "cpu_s": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
              "median_wall_s": {k: round(v, 2) for k, v in med_wall.items()},
              "median_cpu_s": {k: round(v, 2) for k, v in med_cpu.items()},
              "ratio_wall": round(med_wall["twenty"] / med_wall["none"], 3),
              "ratio_cpu": round(med_cpu["twenty"] / med_cpu["none"], 3),
              "load_average": os.getloadavg(),
              "in_process": in_process_load(with_ext)}
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
