import subprocess
import sys
from pathlib import Path

import pytest

from webui.cli import build_parser, parse_args
from webui.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--listen", "--server-name", "--port", "--api", "--api-auth", "--gradio-auth", "--medvram", "--lowvram",
         "--no-half", "--no-half-vae", "--precision", "--xformers", "--opt-sdp-attention", "--use-cpu",
         "--device-id", "--skip-torch-cuda-test", "--ckpt", "--ckpt-dir", "--vae-dir", "--lora-dir",
         "--embeddings-dir", "--controlnet-dir", "--data-dir", "--exit", "--enable-insecure-extension-access",
         "--disable-safe-unpickle", "--autolaunch", "--mcp"]


def test_help_lists_every_flag():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for flag in FLAGS:
        assert flag in out, flag


def test_defaults_match_a1111():
    args = parse_args([])
    assert args.port == 7860 and args.precision == "autocast" and not args.listen and args.use_cpu is None


@pytest.mark.parametrize("argv", [["--precision", "bogus"], ["--no-such-flag"], ["--gradio-auth", "nopass"],
                                  ["--port", "abc"]])
def test_bad_flags_fail_with_argparse_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


def test_auth_pairs_and_use_cpu_forms():
    args = parse_args(["--api-auth", "a:b,c:d:e", "--use-cpu", "all"])
    assert args.api_auth == [("a", "b"), ("c", "d:e")] and args.use_cpu == ["all"]


def test_paths_follow_data_dir_and_flags(tmp_path):
    paths = Paths.from_args(parse_args(["--data-dir", str(tmp_path), "--lora-dir", str(tmp_path / "L")]))
    assert paths.ckpt_dir == tmp_path / "models" / "Stable-diffusion"
    assert paths.lora_dir == tmp_path / "L" and paths.config_file == tmp_path / "config.json"


def test_app_exit_prints_device_line(tmp_path):
    run = subprocess.run([sys.executable, "app.py", "--exit", "--data-dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Device: cpu, dtype: float32") and "--exit" in run.stdout
    assert (tmp_path / "models" / "Stable-diffusion").is_dir()


def test_app_refuses_missing_cuda_without_skip(tmp_path):
    run = subprocess.run([sys.executable, "app.py", "--exit", "--device-id", "0", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "--skip-torch-cuda-test" in run.stderr
    run = subprocess.run([sys.executable, "app.py", "--exit", "--device-id", "0", "--skip-torch-cuda-test",
                          "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "falls back to the CPU" in run.stdout


def test_help_names_each_default_once_and_never_none():
    text = build_parser().format_help()
    flat = " ".join(text.split())  # argparse wraps lines; judge the words
    assert "(default: None)" not in flat and "(default: False)" not in flat
    for flag in flat.split(" --")[1:]:
        assert flag.count("(default:") <= 1, flag
    assert "(default: 7860)" in flat and "(default: the repo)" in flat
