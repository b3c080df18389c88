"""Reload UI (A1111's Settings button): build the page again in this process and serve it instead.

Why in-process and not a restart (the Extensions tab's ``restart_soon``): what Reload UI must pick
up (quicksettings_list, ui-config.json defaults, extension UI) is all read while the page is built,
so a rebuild is enough; the loaded model, the job queue, the API and every open connection stay
up, and nothing saved (config.json, ui-config.json, outputs) is touched. The new Blocks is put
in place of the running one (``swap_blocks``: Gradio's queue and launch settings carried over) after
the jobs queued now have finished. The page that pressed the button polls ``config`` until the
new build answers, then reloads itself; other open pages keep working on the page they have
until they are reloaded.
"""
from __future__ import annotations

import html
import logging
import threading
import time
import uuid
from typing import Callable

log = logging.getLogger(__name__)

# What Blocks.launch() gave the running Blocks (the server, its queue, limits, theme, page CSS/JS):
# the new Blocks is never launched, so it takes them over.
LAUNCH_STATE = ("_queue", "max_file_size", "allowed_paths", "blocked_paths", "pending_streams",
                "pending_diff_streams", "_stream_run_ids", "theme", "css", "css_paths", "js", "head", "head_paths",
                "server", "auth", "auth_message", "show_error", "height", "width", "favicon_path", "ssl_verify",
                "state_session_capacity", "root_path", "run_history", "footer_links", "pwa", "max_threads",
                "ssr_mode", "server_name", "server_port", "local_url", "share", "share_url", "app", "server_app",
                "mcp_server", "mcp_error", "enable_monitoring", "protocol", "custom_mount_path", "is_colab",
                "_node_is_proxy", "node_server_name", "node_port", "node_path")
IDLE_WAIT_S = 600  # the longest a reload waits for queued jobs, as the Extensions tab's restart does


def new_build_id() -> str:
    return uuid.uuid4().hex[:16]


def swap_blocks(app, new) -> None:
    """Serve ``new`` from Gradio's running ``app``: new page loads get it, open pages keep theirs.

    Gradio looks an event's function up in the page session's own copy of the config, so a page
    opened before the swap keeps working against the Blocks it was built from (its Generate, its
    timers) until it is reloaded; only sessions started afterwards see ``new``. Unlike Gradio's
    hot reload, existing sessions and queued events are therefore left alone.
    """
    old = app.get_blocks()
    for name in LAUNCH_STATE:
        if hasattr(old, name):
            setattr(new, name, getattr(old, name))
    new.has_launched = True
    new.is_running = True
    new._set_html_css_theme_variables()
    new.transpile_to_js(quiet=True)
    new.config = new.get_config_file()
    app.state_holder.set_blocks(new)
    app.blocks = new


class UiReloader:
    """Builds the page with ``build(reloader)`` and swaps it into the running server. One per process."""

    def __init__(self, ctx, build: Callable[["UiReloader"], object]):
        self.ctx = ctx
        self.build = build
        self._busy = threading.Lock()

    def reload(self, running) -> tuple[bool, str]:
        """(started, message for the user). Builds first, so a build error is reported, not served."""
        app = getattr(running, "server_app", None)
        if app is None:
            return False, "Reload UI needs the running server (this page is not served by app.py)."
        if not self._busy.acquire(blocking=False):
            return False, "A reload is already under way."
        built: dict = {}

        def build():  # a thread of its own: Gradio builds nothing inside an event handler's context
            started = time.monotonic()
            try:
                built["demo"] = self.build(self)
            except Exception as exc:  # noqa: BLE001 - the old page keeps serving; the user is told why
                log.exception("Reload UI: building the page failed")
                built["error"] = exc
            built["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=build, name="reload-ui-build")
        worker.start()
        worker.join()
        if "demo" not in built:
            self._busy.release()
            return False, f"Reload UI failed, the current page stays: {built['error']}"
        threading.Thread(target=self._swap_when_idle, args=(app, built["demo"]), name="reload-ui-swap",
                         daemon=True).start()
        log.info("Reload UI: page rebuilt in %.1f s", built["seconds"])
        waiting = self.ctx.queue.pending()
        if waiting:
            return True, f"Reloading the UI once the {waiting} job(s) in the queue have finished..."
        return True, "Reloading the UI..."

    def _swap_when_idle(self, app, demo) -> None:
        try:
            time.sleep(0.3)  # let the button's own answer reach the page first
            deadline = time.monotonic() + IDLE_WAIT_S
            while self.ctx.queue.pending() and time.monotonic() < deadline:
                time.sleep(0.5)
            swap_blocks(app, demo)
            log.info("Reload UI: the new page is served")
        except Exception:  # noqa: BLE001
            log.exception("Reload UI: could not put the new page in place; the old one keeps serving")
        finally:
            self._busy.release()


def reload_note(build_id: str) -> str:
    """The line under the button; ``data-build`` lets the page tell its build from the next one."""
    return (f'<p class="reload-ui-note" data-build="{html.escape(build_id)}">Rebuilds the page so that a changed '
            "quicksettings list and new Defaults take effect; settings, outputs and the loaded model stay.</p>")
