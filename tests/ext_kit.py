"""Helpers for extension tests: copy fixture extensions (tests/ext_fixtures) into a data dir, load a host."""
from __future__ import annotations

import shutil
from pathlib import Path

from webui.extensions.host import ExtensionHost
from webui.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "ext_fixtures"
NO_CRASH = ["a1111-alwayson", "bad-patch", "broken-import", "broken-register", "broken-ui", "collide-a", "collide-b",
            "native-all-hooks", "needs-port", "raising-hook"]


def install_fixtures(data_dir: Path, names: list[str] | None = None) -> Path:
    """Copy the named fixture extensions (default: all but crash-on-import) to <data_dir>/extensions."""
    target = Path(data_dir) / "extensions"
    target.mkdir(parents=True, exist_ok=True)
    for name in names or NO_CRASH:
        shutil.copytree(FIXTURES / name, target / name, dirs_exist_ok=True)
    return target


def load_host(data_dir: Path, names: list[str] | None = None, builtin_dir: Path | None = None, args=None,
              config: dict | None = None, finish: bool = True) -> ExtensionHost:
    """A loaded host over fixture extensions (no built-ins unless ``builtin_dir``)."""
    import json

    data_dir = Path(data_dir)
    if names is not None or not (data_dir / "extensions").exists():
        install_fixtures(data_dir, names)
    if config is not None:
        (data_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    settings = Settings.load(data_dir / "config.json")
    empty = data_dir / "no-builtins"
    empty.mkdir(exist_ok=True)
    host = ExtensionHost(data_dir, settings, args, builtin_dir=builtin_dir or empty).load()
    if finish:
        host.finish_start()  # as the app does once it serves; otherwise the next load is in safe mode
    return host


def git(*args, cwd=None) -> str:
    import subprocess

    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
                           "-c", "init.defaultBranch=main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def make_bare_repo(root: Path, files: dict[str, str], name: str = "test-ext") -> Path:
    """A bare git repository holding ``files`` in one commit on 'main' (to install from)."""
    work, bare = Path(root) / f"{name}-work", Path(root) / f"{name}.git"
    work.mkdir(parents=True)
    git("init", "-q", cwd=work)
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first version", cwd=work)
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def push_change(bare: Path, rel: str, text: str) -> str:
    """Commit one more change into the bare repo; returns the new commit."""
    work = bare.parent / (bare.stem + "-update")
    if not work.exists():
        git("clone", "-q", str(bare), str(work))
    (work / rel).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "second version", cwd=work)
    git("push", "-q", "origin", "HEAD", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def https_alias(bare: Path, url: str) -> dict[str, str]:
    """Git config (as environment variables) that serves ``url`` from the local bare repository.

    The installer only accepts https:// URLs; git's url.<base>.insteadOf maps the URL to the
    local repository, so tests install for real without a network.
    """
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{bare}.insteadOf", "GIT_CONFIG_VALUE_0": url}


TEST_EXT_URL = "https://example.invalid/someone/test-ext.git"
TEST_EXT_FILES = {
    "extension.toml": '[extension]\nname = "test-ext"\napi = 1\nentry = "plugin:register"\n',
    "plugin.py": "def register(api):\n    api.setting('test_ext_installed', True, 'Installed from git')\n",
    "requirements.txt": "numpy\n",
    "install.py": ("import launch\nfrom pathlib import Path\n"
                   "Path('install-ran.txt').write_text('numpy=' + str(launch.is_installed('numpy')))\n"),
}
