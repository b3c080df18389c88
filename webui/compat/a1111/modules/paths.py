"""``modules.paths`` / ``modules.paths_internal``: A1111's folder names for our folders."""
from __future__ import annotations

from webui.compat.a1111 import active
from webui.paths import REPO_ROOT

script_path = str(REPO_ROOT)
extensions_builtin_dir = str(REPO_ROOT / "extensions-builtin")


def __getattr__(name: str):
    host = active.bridge().host
    data = host.data_dir
    values = {"data_path": str(data), "models_path": str(data / "models"), "extensions_dir": str(host.user_dir),
              "default_output_dir": str(data / "outputs"), "sd_default_config": None, "sd_model_file": None,
              "default_sd_model_file": None, "paths": {}}
    if name in values:
        return values[name]
    raise AttributeError(f"modules.paths.{name} is not available here")
