"""launch.sh from an already set-up checkout: a second start must not reinstall anything."""
import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_second_launch_does_not_reinstall(tmp_path):
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:16]
    stamp = ROOT / ".venv" / f".installed-requirements.txt-{digest}"
    assert stamp.exists(), "run ./launch.sh once first: the suite expects the set-up .venv"
    run = subprocess.run(["bash", "launch.sh", "--exit", "--data-dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Installing" not in run.stdout and "Device: cpu" in run.stdout
    assert stamp.exists()
