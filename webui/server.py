"""Start the web server: Gradio UI, optional A1111 API on the same FastAPI app, optional MCP."""
from __future__ import annotations

import argparse
import logging

from webui.context import build_context
from webui.devices import DevicePolicy
from webui.paths import Paths
from webui.settings import Settings

log = logging.getLogger(__name__)


def host_for(args: argparse.Namespace) -> str:
    return args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")


def serve(args: argparse.Namespace, paths: Paths, policy: DevicePolicy, settings: Settings) -> int:
    """Build everything, serve until interrupted; returns the process exit code."""
    from webui.ui.app import build_ui, launch_kwargs

    ctx = build_context(args, paths, policy, settings)
    if args.listen and not (args.gradio_auth or args.api_auth):
        log.warning("--listen without --gradio-auth or --api-auth: anyone on the network can use this server")
    demo = build_ui(ctx)
    app, local_url, _ = demo.launch(server_name=host_for(args), server_port=args.port,
                                    auth=args.gradio_auth, prevent_thread_lock=True, inbrowser=args.autolaunch,
                                    mcp_server=args.mcp, show_error=True, **launch_kwargs())
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
