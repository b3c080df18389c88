"""Progress of one running job, and its interrupt/skip flags, shared by the core, queue, UI and API."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ProgressSnapshot:
    """A consistent copy of the progress for readers (UI poll, /sdapi/v1/progress)."""

    job_no: int  # image-batch index within the job (A1111's job_no), 0-based
    job_count: int
    sampling_step: int
    sampling_steps: int
    fraction: float
    eta_seconds: float | None
    elapsed_seconds: float
    interrupted: bool
    skipped: bool
    preview: Any  # PIL image or None
    preview_step: int
    textinfo: str


class Progress:
    """Written by the generation core, read by everyone else; all methods are thread-safe."""

    def __init__(self, preview_every: int = 0, make_preview: Callable[[Any], Any] | None = None):
        self._lock = threading.Lock()
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self.preview_every = preview_every
        self.make_preview = make_preview
        self._started = time.monotonic()
        self._job_no = 0
        self._job_count = 1
        self._step = 0
        self._steps = 0
        self._preview = None
        self._preview_step = 0
        self._textinfo = "Waiting..."
        self.prefix = ""  # a job of several generations (outpainting tiles) names the current one here

    # --- control, from UI/API threads
    def interrupt(self) -> None:
        """Stop after the current step; the core keeps the images finished so far."""
        self._interrupt.set()

    def skip(self) -> None:
        """Abandon the current batch and go on with the next one."""
        self._skip.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    @property
    def skipped(self) -> bool:
        return self._skip.is_set()

    def should_stop(self) -> bool:
        """True when the sampling loop must end after this step."""
        return self._interrupt.is_set() or self._skip.is_set()

    # --- updates, from the worker thread
    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        with self._lock:
            self._job_no, self._job_count, self._step, self._steps = job_no, job_count, 0, steps
            self._textinfo = f"{self.prefix}Batch {job_no + 1} of {job_count}"
        self._skip.clear()

    def step(self, step: int, latents: Any = None) -> None:
        """Record a finished sampling step (1-based); make a preview when one is due."""
        preview = None
        if (latents is not None and self.make_preview is not None and self.preview_every > 0
                and (step % self.preview_every == 0)):
            preview = self.make_preview(latents)
        with self._lock:
            self._step = step
            if preview is not None:
                self._preview, self._preview_step = preview, step

    def set_text(self, text: str) -> None:
        with self._lock:
            self._textinfo = text

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            total = max(self._job_count * self._steps, 1)
            done = self._job_no * self._steps + self._step
            fraction = min(done / total, 1.0)
            elapsed = time.monotonic() - self._started
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            return ProgressSnapshot(self._job_no, self._job_count, self._step, self._steps, fraction, eta,
                                    elapsed, self.interrupted, self.skipped, self._preview, self._preview_step,
                                    self._textinfo)
