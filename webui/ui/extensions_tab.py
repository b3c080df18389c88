"""The Extensions tab: the load table, enable/disable + restart, updates, install from a git URL.

Element ids and labels are A1111's where it has them (``install_url``, ``install_branch``,
``install_dirname``, ``install_button``, ``extension_install_result``). Installing and updating
are refused under --listen / --server-name unless --enable-insecure-extension-access (A1111's
lock); enabling and disabling installed extensions is not (it runs no new code).
"""
from __future__ import annotations

import html
import logging
import os
import sys
import threading
import time

import gradio as gr

from webui.extensions.install import InstallError, Installer, access_refusal, commit_date

log = logging.getLogger(__name__)
STATE_LABELS = {"loaded": "loaded", "failed": "failed", "needs-port": "needs a native port", "disabled": "disabled",
                "off": "off", "refused": "refused", "error": "error", "auto-disabled": "switched off"}


def _date(folder) -> str:
    stamp = commit_date(folder)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else ""


def table_html(host, update_states: dict[str, str] | None = None) -> str:
    """The load table: one row per extension found, with why it is not loaded when it is not."""
    head = ("<tr><th>Extension</th><th>URL</th><th>Branch</th><th>Version</th><th>Date</th><th>Update</th>"
            "<th>State</th><th>Load time</th><th>Notes</th></tr>")
    rows = []
    for r in host.records:
        git = r.git
        version = r.version or git.short
        note = r.error or "; ".join(r.warnings)
        css = "ext-ok" if r.state == "loaded" and not note else ("ext-warn" if r.state == "loaded" else "ext-bad")
        rows.append(
            f'<tr class="{css}" data-extension="{html.escape(r.name)}">'
            f"<td>{html.escape(r.name)}{' <small>(built-in)</small>' if r.builtin else ''}</td>"
            f"<td>{html.escape(git.remote)}</td><td>{html.escape(git.branch)}</td><td>{html.escape(version)}</td>"
            f"<td>{html.escape(_date(r.path) if git.commit else '')}</td>"
            f"<td>{html.escape((update_states or {}).get(r.name, ''))}</td>"
            f"<td>{html.escape(STATE_LABELS.get(r.state, r.state))}</td>"
            f"<td>{f'{r.load_ms:.0f} ms' if r.state == 'loaded' else ''}</td>"
            f"<td><pre class='ext-note'>{html.escape(note)}</pre></td></tr>")
    return f'<table id="extensions_table_inner" class="extensions-table">{head}{"".join(rows)}</table>'


def restart_soon(ctx, delay: float = 1.0) -> None:
    """Re-run this process with the same command line once the queue is idle (A1111's restart)."""

    def go():
        time.sleep(delay)
        for _ in range(600):  # wait up to 10 minutes for the running and queued jobs
            if ctx.queue.pending() == 0:
                break
            time.sleep(1)
        log.warning("restarting to apply extension changes")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))

    threading.Thread(target=go, name="restart", daemon=True).start()


def build_extensions_tab(ctx) -> None:
    """Lay out the tab (call inside its gr.Tab)."""
    host = ctx.extensions
    installer = Installer(ctx.paths.data_dir, host.user_dir, ctx.args)
    refusal = access_refusal(ctx.args)
    if host.safe_mode:
        gr.HTML(f'<div class="error-box" id="extensions_safe_mode">Safe mode: {html.escape(host.safe_mode)}</div>')
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="extensions_installed_tab", elem_id="extensions_installed_tab"):
            with gr.Row():
                apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply")
                check = gr.Button("Check for updates", elem_id="extensions_check")
            names = [r.name for r in host.records]
            disabled = set(host.settings.get("disabled_extensions"))
            enabled = gr.CheckboxGroup(names, value=[n for n in names if n not in disabled],
                                       label="Enabled extensions", elem_id="extensions_enabled",
                                       elem_classes=["notranslate"])
            disable_all = gr.Radio(["none", "extra", "all"], value=host.settings.get("disable_all_extensions"),
                                   label="Disable all extensions", elem_id="extensions_disable_all")
            result = gr.HTML("", elem_id="extensions_result")
            table = gr.HTML(table_html(host), elem_id="extensions_table")
            with gr.Row():
                to_update = gr.CheckboxGroup([], label="Extensions with updates", elem_id="extensions_update_list")
                update = gr.Button("Update selected", elem_id="extensions_update")
        with gr.Tab("Install from URL", id="extensions_install_tab", elem_id="extensions_install_tab"):
            if refusal:
                gr.HTML(f'<div class="error-box" id="extensions_access_refused">{html.escape(refusal)}</div>')
            url = gr.Textbox(label="URL for extension's git repository", elem_id="install_url",
                             placeholder="https://github.com/<user>/<extension>.git")
            branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for default main branch",
                                elem_id="install_branch")
            dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                 elem_id="install_dirname")
            preview_button = gr.Button("Preview", elem_id="install_preview")
            preview_text = gr.Textbox(label="What will be installed", lines=8, interactive=False,
                                      elem_id="install_preview_text")
            install = gr.Button("Install", variant="primary", interactive=False, elem_id="install_button")
            install_result = gr.HTML("", elem_id="extension_install_result")
            pending = gr.State(None)

    def box(message: str, ok: bool) -> str:
        return f'<div class="{"info-box" if ok else "error-box"}">{html.escape(message)}</div>'

    def do_apply(chosen, mode):
        off = [n for n in names if n not in (chosen or [])]
        try:
            host.settings.update({"disabled_extensions": off, "disable_all_extensions": mode})
        except Exception as exc:
            return box(f"Not saved: {exc}", False)
        restart_soon(ctx)
        return box(f"Saved ({len(off)} disabled, disable all: {mode}). Restarting: reload this page in a few "
                   "seconds.", True)

    apply.click(do_apply, [enabled, disable_all], result, show_progress="hidden", api_visibility="private")

    def do_check():
        states = {}
        for r in host.records:
            if not r.builtin and r.git.remote:
                states[r.name] = installer.check_update(r.path)
        behind = [n for n, s in states.items() if s == "behind"]
        message = f"{len(behind)} extension(s) can be updated." if states else "No extension installed from git."
        return table_html(host, states), gr.update(choices=behind, value=behind), box(message, True)

    check.click(do_check, None, [table, to_update, result], show_progress="full", api_visibility="private")

    def do_update(selected):
        lines = []
        for name in selected or []:
            record = host.record(name)
            try:
                lines.append(installer.update(record.path))
            except (InstallError, AttributeError) as exc:
                lines.append(f"{name}: {exc}")
        if not lines:
            return box("Nothing selected.", False)
        return box(" ".join(lines) + " Apply and restart to load the new code.", not refusal)

    update.click(do_update, to_update, result, show_progress="full", api_visibility="private")

    def do_preview(url_, branch_, dirname_, previous):
        if previous is not None:
            installer.discard(previous)
        try:
            found = installer.preview(url_, branch_, dirname_)
        except InstallError as exc:
            return None, "", gr.update(interactive=False), box(str(exc), False)
        return found, found.describe(), gr.update(interactive=True), box(
            "Nothing has run yet. Read the above, then press Install.", True)

    preview_button.click(do_preview, [url, branch, dirname, pending],
                         [pending, preview_text, install, install_result], show_progress="full",
                         api_visibility="private")

    def do_install(previewed):
        if previewed is None:
            return None, gr.update(interactive=False), box("Preview the URL first.", False)
        try:
            message = installer.install(previewed)
        except InstallError as exc:
            return None, gr.update(interactive=False), box(str(exc), False)
        return None, gr.update(interactive=False), box(message + " Apply and restart to load it.", True)

    install.click(do_install, pending, [pending, install, install_result], show_progress="full",
                  api_visibility="private")
