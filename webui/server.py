"""Start the web server: Gradio UI, optional A1111 API on the same FastAPI app, optional MCP.

Everything is served through the security gate (webui/security/gate.py, docs/security.md):
Host / Origin checks, size limits, and credentials on every door when an auth flag is given.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from webui.context import build_context
from webui.devices import DevicePolicy
from webui.images import remove_partial_files
from webui.paths import Paths
from webui.security.policy import bind_address
from webui.settings import Settings

log = logging.getLogger(__name__)


def host_for(args: argparse.Namespace) -> str:
    return bind_address(args)


def private_gradio_temp_dir() -> Path | None:
    """Give Gradio a temp folder of our own (uploads, gallery files), removed at exit.

    Gradio's default, /tmp/gradio, is shared by every Gradio app on the machine, and its file
    route serves whatever is in it. Must run before gradio is imported (it reads the variable
    at import). A GRADIO_TEMP_DIR the user set is respected.
    """
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="sdstudio-gradio-"))  # mode 0700: only this user
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def output_roots(paths: Paths, settings: Settings) -> list[Path]:
    """Folders where PNGs are written: outputs/ and every output-folder setting."""
    roots = [paths.outputs_dir]
    for option in settings.options.values():
        if option.is_output_folder:
            value = Path(str(settings.get(option.key)))
            roots.append(value if value.is_absolute() else paths.data_dir / value)
    return roots


def serve(args: argparse.Namespace, paths: Paths, policy: DevicePolicy, settings: Settings) -> int:
    """Build everything, serve until interrupted; returns the process exit code."""
    private_gradio_temp_dir()
    for partial in remove_partial_files(output_roots(paths, settings)):
        log.warning("removed %s, a PNG a previous run was killed while saving", partial)
    from webui.ui.app import build_ui, launch_kwargs
    from webui.ui.guarded_app import guarded_app

    ctx = build_context(args, paths, policy, settings, load_in_background=True)  # the page does not wait
    security = ctx.security
    for line in security.exposure_warnings():
        log.warning(line)
    if security.auth_required:
        log.info("credentials required on every door: web UI (login), API, MCP and Gradio's endpoints (docs/security.md)")
    demo = build_ui(ctx)
    app, local_url, _ = demo.launch(server_name=host_for(args), server_port=args.port,
                                    auth=list(security.ui_accounts) or None, prevent_thread_lock=True,
                                    inbrowser=args.autolaunch, mcp_server=args.mcp, show_error=True,
                                    quiet=True,  # the URL is printed once below, when the API is mounted too
                                    max_file_size=security.max_upload_bytes, _app=guarded_app(security),
                                    **launch_kwargs())
    if args.api:
        from webui.api.routes import mount_api

        mount_api(app, ctx)
        log.info("A1111 API at %ssdapi/v1 (docs at %sdocs)", local_url, local_url)
    if ctx.extensions is not None:  # extension routes, assets and app_started hooks; ends safe-mode watch
        for warning in ctx.extensions.app_started(app, demo):
            log.warning(warning)
    print(f"Running on {local_url}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        ctx.queue.stop()
    return 0
