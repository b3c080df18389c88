"""A1111's ``launch`` module for an extension's install.py (run in a subprocess at install/update).

``run_pip`` installs with the app's pins as constraints (WEBUI_CONSTRAINTS), so install.py
cannot replace torch, diffusers, gradio or numpy; a conflicting request fails instead.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys

python = sys.executable
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"


def is_installed(package: str) -> bool:
    return importlib.util.find_spec(package.split("[")[0].split("=")[0].replace("-", "_")) is not None


def run(command, desc=None, errdesc=None, custom_env=None, live=False):
    if desc:
        print(desc, flush=True)
    args = command if isinstance(command, list) else shlex.split(command)
    done = subprocess.run(args, capture_output=not live, text=True, env=custom_env or os.environ)
    if done.returncode != 0:
        raise RuntimeError(f"{errdesc or 'command failed'}: {command}\n{done.stdout or ''}{done.stderr or ''}")
    return done.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = False):
    """`pip <command>` with the app's constraints on every install."""
    args = shlex.split(command)
    if args and args[0] == "install":
        constraints = os.environ.get("WEBUI_CONSTRAINTS")
        if constraints:
            args = ["install", "--constraint", constraints] + args[1:]
    return run([python, "-m", "pip", *args], desc=f"Installing {desc}" if desc else None,
               errdesc=f"Couldn't install {desc or command}", live=live)


def git_clone(*args, **kwargs):
    raise RuntimeError("install.py may not clone further repositories here")
