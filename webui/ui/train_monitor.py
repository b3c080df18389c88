"""Live view of a training run (progress + ETA, loss plot, samples, notes), shared by the LoRA and
embedding sub-tabs. A timer polls the run's state while it is queued or running, and stops itself
when the run ends; on page load it re-attaches to a run still going."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd
from PIL import Image

from webui.training.service import wait_text

MAX_PLOT_POINTS = 1500


def loss_frame(losses: list) -> pd.DataFrame:
    """The loss curve for the plot; long runs are thinned to a fixed number of points (the shape stays)."""
    rows = [(int(s), float(v)) for s, v in losses]
    if len(rows) > MAX_PLOT_POINTS:
        stride = len(rows) / MAX_PLOT_POINTS
        rows = [rows[int(i * stride)] for i in range(MAX_PLOT_POINTS)] + [rows[-1]]
    return pd.DataFrame(rows or [(0, float("nan"))], columns=["step", "loss"])


def progress_html(snap: dict, wait: str = "", elem_id: str = "train_progress") -> str:
    """A1111-style bar: state, step/max, loss, ETA; or why the job waits."""
    if wait and snap["state"] == "queued":
        return f'<div class="progress-wrap" id="{elem_id}"><span>{html.escape(wait)}</span></div>'
    total = max(1, snap["max_steps"])
    pct = int(100 * snap["step"] / total) if snap["max_steps"] else 0
    parts = [f"{snap['state']}", f"step {snap['step']}/{snap['max_steps'] or '?'}"]
    if snap["loss"] is not None:
        parts.append(f"loss {snap['loss']:.4f}")
    if snap["eta_seconds"] is not None:
        parts.append(f"ETA {format_seconds(snap['eta_seconds'])}")
    text = html.escape(f"{snap['kind'].capitalize()} {snap['name']}: " + ", ".join(parts))
    return (f'<div class="progress-wrap" id="{elem_id}"><div class="progress-bar" style="width:{pct}%"></div>'
            f'<span>{pct}% — {text}</span></div>')


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def status_markdown(snap: dict) -> str:
    """Notes, saves and errors of a run, for the status box under the plot."""
    lines = []
    if snap["error"]:
        lines.append(f"**Failed:** {html.escape(snap['error'])}")
    elif snap["state"] == "interrupted":
        lines.append(f"**Interrupted** at step {snap['step']}; the last save is loadable and "
                     f"*Resume* continues from it.")
    elif snap["state"] == "done":
        lines.append(f"**Done:** {html.escape(snap['output'])}")
    if snap["saves"]:
        last = snap["saves"][-1]
        lines.append(f"Saved step {last['step']} to `{html.escape(last['path'])}`")
    lines += [f"- {html.escape(n)}" for n in snap["notes"]]
    return "\n\n".join(lines)


def sample_items(snap: dict, limit: int = 12) -> list[tuple]:
    """Newest samples first, captioned with their step and prompt (loaded here: the run folder is not
    one Gradio serves files from)."""
    items = []
    for s in reversed(snap["samples"][-limit:]):
        try:
            with Image.open(s["path"]) as im:
                items.append((im.convert("RGB"), f"step {s['step']}: {s['prompt']}"))
        except OSError:
            continue
    return items


def error_html(message: str, elem_id: str) -> str:
    return f'<div class="error-box" id="{elem_id}">{html.escape(message)}</div>'



@dataclass
class Monitor:
    """The components that show one kind of run."""

    kind: str  # "lora" | "embedding"
    progress: gr.HTML
    plot: gr.LinePlot
    gallery: gr.Gallery
    status: gr.Markdown
    timer: gr.Timer
    seen: gr.State  # (job id, samples shown, losses shown): unchanged parts are not resent

    @property
    def outputs(self) -> list:
        return [self.progress, self.plot, self.gallery, self.status, self.timer, self.seen]


def latest(ctx, kind: str):
    """(job, RunState) of the newest run of ``kind``, or (None, None)."""
    runs = [(job_id, st) for job_id, st in ctx.training.items() if st.kind == kind]
    if not runs:
        return None, None
    job_id, state = runs[-1]
    return ctx.queue.get(job_id), state


def view(ctx, kind: str, prefix: str, seen=None) -> list:
    """Updates for a Monitor's outputs from the newest run; the timer stays on while it is live."""
    job, state = latest(ctx, kind)
    if state is None:
        return [gr.update(), gr.update(), gr.update(), gr.update(), gr.Timer(active=False), seen]
    snap = state.snapshot()
    if job is not None and job.state == "failed":
        snap["state"] = "failed"
        snap["error"] = snap["error"] or job.error
    live = job is not None and not job.done
    wait = wait_text(ctx.queue, job) if live else ""
    job_id = job.id if job is not None else None
    old_id, old_samples, old_losses = seen or (None, -1, -1)
    now = (job_id, len(snap["samples"]), len(snap["losses"]))
    plot = loss_frame(snap["losses"]) if (job_id, now[2]) != (old_id, old_losses) else gr.update()
    gallery = sample_items(snap) if (job_id, now[1]) != (old_id, old_samples) else gr.update()
    return [progress_html(snap, wait, f"{prefix}_progress"), plot, gallery, status_markdown(snap),
            gr.Timer(active=live), now]


def build_monitor(ctx, kind: str, prefix: str) -> Monitor:
    """Progress, loss plot, samples and status for ``kind`` runs; call inside a Column."""
    progress = gr.HTML("", elem_id=f"{prefix}_progress_html")
    plot = gr.LinePlot(loss_frame([]), x="step", y="loss", title="Loss", height=260, elem_id=f"{prefix}_loss",
                       label="Loss")
    gallery = gr.Gallery(label="Samples", columns=3, height=300, object_fit="contain", interactive=False,
                         elem_id=f"{prefix}_samples")
    status = gr.Markdown("", elem_id=f"{prefix}_status")
    timer = gr.Timer(1.0, active=False)
    monitor = Monitor(kind, progress, plot, gallery, status, timer, gr.State(None))
    timer.tick(lambda seen: view(ctx, kind, prefix, seen), monitor.seen, monitor.outputs, show_progress="hidden",
               api_visibility="private")
    # On page load: show the newest run and follow it if it is still going.
    gr.on(None, lambda: view(ctx, kind, prefix), None, monitor.outputs, show_progress="hidden",
          api_visibility="private")
    return monitor
