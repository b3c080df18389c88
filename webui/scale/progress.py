"""The two ends of one remote job's progress.

Replica side, `ReplicaProgress`: the generation core writes it exactly as it writes a local
Progress; changes go to the front as `Update` messages (at most every `every_s`, so a fast model
is not slowed by messages), and interrupt/skip signalled at the front arrive through a
`ControlWatch`. Front side, `MirrorProgress`: what the UI and /sdapi/v1/progress read; it
mirrors the updates and forwards interrupt/skip to the control actor.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable

from webui.generation.progress import Progress
from webui.scale.messages import Update

log = logging.getLogger(__name__)


class ControlWatch:
    """Replica side of JobControl: one long-poll call outstanding, checked without blocking."""

    def __init__(self, control: Any, token: str):
        import ray

        self._ray = ray
        self._control, self._token = control, token
        self._seen = (False, 0)
        self._ref = control.wait_change.remote(token, self._seen) if control is not None else None

    def poll(self) -> tuple[bool, int] | None:
        """The new (interrupted, skips) state when it changed since the last poll, else None."""
        if self._ref is None:
            return None
        ready, _ = self._ray.wait([self._ref], timeout=0)
        if not ready:
            return None
        try:
            state = tuple(self._ray.get(self._ref))
        except Exception as exc:  # the control actor is gone (front restarted): the job just runs on
            log.warning("job control unreachable, interrupt/skip will not arrive: %s", exc)
            self._ref = None
            return None
        self._ref = self._control.wait_change.remote(self._token, state)
        if state == self._seen:
            return None
        self._seen = state
        return state


class ReplicaProgress(Progress):
    """A Progress whose changes stream to the front and whose interrupt/skip come from the front."""

    def __init__(self, emit: Callable[[Update], None], watch: ControlWatch | None = None, every_s: float = 0.25):
        super().__init__()
        self._emit = emit
        self._watch = watch
        self.every_s = every_s
        self._sent_at = 0.0
        self._sent_preview_step = 0
        self._skips = 0

    def _poll(self) -> None:
        state = self._watch.poll() if self._watch is not None else None
        if state is None:
            return
        interrupted, skips = state
        if interrupted and not self.interrupted:
            self.interrupt()
        if skips > self._skips:
            self._skips = skips
            self.skip()

    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        super().begin_batch(job_no, job_count, steps)
        self._poll()
        self.send(force=True)

    def step(self, step: int, latents: Any = None) -> None:
        super().step(step, latents)
        self._poll()
        self.send()

    def set_text(self, text: str) -> None:
        super().set_text(text)
        self.send(force=True)

    def send(self, force: bool = False) -> None:
        """Emit the current state when forced or when `every_s` has passed since the last message."""
        now = time.monotonic()
        if not force and now - self._sent_at < self.every_s:
            return
        snap = self.snapshot()
        fresh = snap.preview is not None and snap.preview_step != self._sent_preview_step
        self._sent_at = now
        if fresh:
            self._sent_preview_step = snap.preview_step
        self._emit(Update(snap.job_no, snap.job_count, snap.sampling_step, snap.sampling_steps, snap.textinfo,
                          snap.preview if fresh else None, snap.preview_step))


class MirrorProgress(Progress):
    """The front's copy of a remote job's progress; interrupt/skip are also sent to the replica."""

    def __init__(self, signal: Callable[[str, str], None]):
        super().__init__(preview_every=1, make_preview=lambda image: image)  # previews arrive as images
        self.token = uuid.uuid4().hex
        self._signal = signal
        self._batch = (0, 1, 0)

    def interrupt(self) -> None:
        super().interrupt()
        self._signal(self.token, "interrupt")

    def skip(self) -> None:
        super().skip()
        self._signal(self.token, "skip")

    def apply(self, update: Update) -> None:
        """Take a replica's update (batch, step, text, preview) as this job's state."""
        batch = (update.job_no, update.job_count, update.steps)
        if batch != self._batch:
            self._batch = batch
            Progress.begin_batch(self, *batch)
        if update.preview is not None:
            Progress.step(self, update.preview_step, update.preview)
        Progress.step(self, update.step)
        self.set_text(update.text)
