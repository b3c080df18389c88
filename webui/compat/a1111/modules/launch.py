"""A1111's ``launch`` module as scripts use it at run time: checks only, no installs.

Packages are installed when an extension is installed or updated (Extensions tab), from its
requirements.txt with our pins as constraints; installing from a running app is refused.
"""
from __future__ import annotations

import importlib.util
import sys

python = sys.executable
index_url = ""
dir_repos = "repositories"


def is_installed(package: str) -> bool:
    return importlib.util.find_spec(package.split("[")[0].replace("-", "_")) is not None


def run_pip(command: str, desc: str | None = None, live: bool = False):
    raise RuntimeError(f"installing packages at run time is not allowed ({command!r}); list them in the "
                       "extension's requirements.txt and install or update it from the Extensions tab")


def run(command, desc=None, errdesc=None, custom_env=None, live=False):
    raise RuntimeError("running commands from an extension at run time is not allowed here")


def git_clone(*args, **kwargs):
    raise RuntimeError("cloning repositories at run time is not allowed here")
