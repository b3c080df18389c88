"""Install and update extensions from git, with A1111's --listen lock and our dependency pins.

Install is two steps: ``preview(url)`` clones into ``<data dir>/tmp`` and reports the commit
and what would run (requirements.txt, install.py) without running anything; ``install(preview)``
then installs requirements with ``pip --constraint`` on our torch / diffusers / transformers /
gradio / numpy (and friends) versions, so an extension cannot replace them, runs install.py
in a subprocess whose ``launch.run_pip`` goes through the same constraints, and moves the
folder into ``extensions/``. Updates back up config.json first. Only ``https://`` URLs.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from webui.extensions.manifest import canonical, read_git, read_manifest
from webui.paths import REPO_ROOT

PINNED = ("torch", "torchvision", "torchaudio", "diffusers", "transformers", "gradio", "numpy", "safetensors",
          "pydantic", "fastapi", "accelerate", "huggingface-hub", "tokenizers", "pillow")
ACCESS_DENIED = ("extension access disabled because of command line flags: --listen or --server-name lets other "
                 "machines connect; add --enable-insecure-extension-access to install or update from the UI")
GIT_TIMEOUT = 300
PIP_TIMEOUT = 1800
INSTALL_ENV = Path(__file__).resolve().parents[1] / "compat" / "a1111" / "install_env"


class InstallError(RuntimeError):
    """An install or update was refused or failed; the message is for the user."""


def access_refusal(args) -> str:
    """A1111's lock: '' when installs are allowed, else the reason."""
    if args is None:
        return ""
    remote = bool(getattr(args, "listen", False) or getattr(args, "server_name", None)
                  or getattr(args, "share", False))
    return ACCESS_DENIED if remote and not getattr(args, "enable_insecure_extension_access", False) else ""


def check_url(url: str) -> str:
    """The URL, stripped, if it is an https git URL; InstallError otherwise."""
    url = (url or "").strip()
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.netloc:
        raise InstallError(f"only https:// git URLs can be installed, got {url or 'nothing'!r}")
    if parsed.username or parsed.password:
        raise InstallError("put no credentials in the URL")
    return url


def constraints_text() -> str:
    """Exact pins of the installed versions of the packages extensions must not replace."""
    lines = []
    for name in PINNED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def _git(args: list[str], cwd: Path | None = None, timeout: int = GIT_TIMEOUT) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise InstallError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"git {args[0]} took longer than {timeout}s") from None
    if done.returncode != 0:
        raise InstallError(f"git {args[0]} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout.strip()


def commit_date(folder: Path) -> int | None:
    """Unix time of the checked-out commit (None when not a git checkout)."""
    if not (folder / ".git").exists():
        return None
    try:
        return int(_git(["log", "-1", "--format=%ct"], cwd=folder, timeout=30))
    except (InstallError, ValueError):
        return None


@dataclass
class Preview:
    """What an install would do; shown to the user before anything runs."""

    url: str
    branch: str
    name: str
    folder: Path  # the clone in tmp/
    commit: str
    date: int
    subject: str
    kind: str
    requirements: str  # requirements.txt content ('' when none)
    install_py: str  # install.py content ('' when none)
    files: int

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.date))
        parts = [f"{self.name}: commit {self.commit[:8]} ({when}) \"{self.subject}\" on {self.branch or 'default'}",
                 f"kind: {self.kind}, {self.files} files"]
        parts.append("requirements.txt (installed with our pins as constraints):\n" + self.requirements.strip()
                     if self.requirements.strip() else "requirements.txt: none")
        parts.append("install.py (runs once, in a subprocess):\n" + self.install_py[:2000]
                     if self.install_py else "install.py: none")
        return "\n".join(parts)


class Installer:
    """Installs into one app's extensions folder."""

    def __init__(self, data_dir: Path, user_dir: Path, args=None, python: str = sys.executable):
        self.data_dir = Path(data_dir)
        self.user_dir = Path(user_dir)
        self.args = args
        self.python = python
        self.tmp = self.data_dir / "tmp"

    def _check_access(self) -> None:
        reason = access_refusal(self.args)
        if reason:
            raise InstallError(reason)

    def preview(self, url: str, branch: str = "", dirname: str = "") -> Preview:
        """Clone into tmp/ and describe it; nothing from the repository runs."""
        self._check_access()
        url = check_url(url)
        name = canonical(dirname or re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1]))
        if (self.user_dir / name).exists():
            raise InstallError(f"extensions/{name} already exists; choose another local directory name")
        for folder in self.user_dir.glob("*") if self.user_dir.is_dir() else []:
            if read_git(folder).remote == url:
                raise InstallError(f"{url} is already installed as {folder.name}")
        target = self.tmp / f"ext-install-{uuid.uuid4().hex[:8]}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        args = ["clone", "--filter=blob:none", "--depth", "50"]
        if branch.strip():
            args += ["--branch", branch.strip()]
        try:
            _git(args + ["--", url, str(target)])
            commit = _git(["rev-parse", "HEAD"], cwd=target)
            date, _, subject = _git(["log", "-1", "--format=%ct %s"], cwd=target).partition(" ")
            current_branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=target)
        except InstallError:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        manifest = read_manifest(target, builtin=False)

        def text(rel: str) -> str:
            path = target / rel
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

        files = sum(1 for p in target.rglob("*") if p.is_file() and ".git" not in p.relative_to(target).parts)
        return Preview(url, current_branch, name, target, commit, int(date or 0), subject, manifest.kind,
                       text("requirements.txt"), text("install.py"), files)

    def install(self, preview: Preview) -> str:
        """Install a previewed clone (the user confirmed); returns a summary line."""
        self._check_access()
        if not preview.folder.is_dir():
            raise InstallError("the preview is gone; preview the URL again")
        target = self.user_dir / preview.name
        if target.exists():
            raise InstallError(f"extensions/{preview.name} already exists")
        try:
            log = self._dependencies(preview.folder)
            self.user_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(preview.folder), str(target))
        finally:
            shutil.rmtree(preview.folder.parent, ignore_errors=True)
        return f"Installed {preview.name} at commit {preview.commit[:8]} into {target}. {log}".strip()

    def discard(self, preview: Preview) -> None:
        shutil.rmtree(preview.folder.parent, ignore_errors=True)

    def _dependencies(self, folder: Path) -> str:
        """requirements.txt through pip with constraints, then install.py; InstallError on failure."""
        notes = []
        constraints = self.tmp / "constraints.txt"
        constraints.parent.mkdir(parents=True, exist_ok=True)
        constraints.write_text(constraints_text(), encoding="utf-8")
        requirements = folder / "requirements.txt"
        if requirements.is_file() and requirements.read_text(encoding="utf-8", errors="replace").strip():
            self._run([self.python, "-m", "pip", "install", "--constraint", str(constraints), "-r",
                       str(requirements)], folder, "pip install -r requirements.txt")
            notes.append("requirements installed (with our pins as constraints).")
        if (folder / "install.py").is_file():
            env_path = os.pathsep.join([str(INSTALL_ENV), str(REPO_ROOT)])
            self._run([self.python, "install.py"], folder, "install.py",
                      extra_env={"PYTHONPATH": env_path, "WEBUI_CONSTRAINTS": str(constraints)})
            notes.append("install.py ran.")
        return " ".join(notes)

    def _run(self, command: list[str], cwd: Path, what: str, extra_env: dict | None = None) -> None:
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(extra_env or {})}
        try:
            done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            raise InstallError(f"{what} took longer than {PIP_TIMEOUT}s") from None
        if done.returncode != 0:
            raise InstallError(f"{what} failed (nothing was installed into extensions/):\n"
                               f"{(done.stdout + done.stderr).strip()[-1500:]}")

    # -- updates --------------------------------------------------------------------------------
    def check_update(self, folder: Path) -> str:
        """'behind' / 'latest' / a reason it cannot be checked."""
        if not (folder / ".git").exists():
            return "not a git checkout"
        try:
            _git(["fetch", "--quiet", "origin"], cwd=folder)
            head = _git(["rev-parse", "HEAD"], cwd=folder)
            upstream = _git(["rev-parse", "@{upstream}"], cwd=folder)
        except InstallError as exc:
            return f"cannot check: {exc}"
        return "latest" if head == upstream else "behind"

    def backup_config(self) -> Path | None:
        """Copy config.json to config_states/ (A1111's "Backup (pre-update)")."""
        config = self.data_dir / "config.json"
        if not config.is_file():
            return None
        folder = self.data_dir / "config_states"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"config-{time.strftime('%Y%m%d-%H%M%S')}-pre-update.json"
        shutil.copy2(config, target)
        return target

    def update(self, folder: Path) -> str:
        """Fetch and move to the upstream commit, after a config backup; dependencies again if they changed."""
        self._check_access()
        backup = self.backup_config()
        before_req = (folder / "requirements.txt").read_bytes() if (folder / "requirements.txt").is_file() else b""
        old = _git(["rev-parse", "HEAD"], cwd=folder)
        _git(["fetch", "--quiet", "origin"], cwd=folder)
        _git(["reset", "--hard", "@{upstream}"], cwd=folder)
        new = _git(["rev-parse", "HEAD"], cwd=folder)
        after_req = (folder / "requirements.txt").read_bytes() if (folder / "requirements.txt").is_file() else b""
        note = self._dependencies(folder) if (after_req != before_req or (folder / "install.py").is_file()) \
            and old != new else ""
        saved = f" config.json backed up to {backup}." if backup else ""
        return f"{folder.name}: {old[:8]} -> {new[:8]}.{saved} {note}".strip()
