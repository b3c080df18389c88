"""Entry point: flags -> device policy -> settings -> models -> UI + API -> launch."""
from __future__ import annotations

import logging
import os
import sys

# Nothing here may reach a model hub: set before diffusers/transformers are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Before torch is imported and before any thread exists: the job worker must share the main malloc
# arena, or every UNet call it makes maps and page-faults its buffers afresh (webui/allocator.py).
from webui.allocator import configure_allocator  # noqa: E402

ALLOCATOR = configure_allocator()

from webui import cli, devices  # noqa: E402
from webui.paths import Paths  # noqa: E402
from webui.settings import Settings  # noqa: E402

log = logging.getLogger("webui")


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    paths = Paths.from_args(args)
    paths.ensure()
    try:
        policy = devices.choose_policy(devices.detect(args.device_id), devices.PolicyFlags.from_args(args))
    except devices.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(policy.describe(), flush=True)
    log.debug(ALLOCATOR)
    settings = Settings.load(paths.config_file)
    for warning in settings.warnings:
        log.warning(warning)
    # Progress is shown in the UI and API; the libraries' console bars only clutter the log.
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    if args.exit:
        print("Setup complete (--exit given): not starting the server.")
        return 0
    from webui.server import serve  # imported late: it pulls in gradio and the model stack

    return serve(args, paths, policy, settings)


if __name__ == "__main__":
    sys.exit(main())
