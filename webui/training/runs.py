"""Live state of one training run, written by the trainer thread and read by the UI and API."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SampleImage:
    step: int
    path: Path
    prompt: str


@dataclass
class RunState:
    """What a run has done so far. Lists only grow; readers take ``snapshot()`` copies."""

    kind: str  # "lora" | "embedding"
    name: str
    run_dir: Path
    output: Path
    state: str = "queued"  # queued | preparing | training | done | interrupted | failed
    step: int = 0
    max_steps: int = 0
    start_step: int = 0  # > 0 when resumed
    losses: list[tuple[int, float]] = field(default_factory=list)
    samples: list[SampleImage] = field(default_factory=list)
    saves: list[tuple[int, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def record_loss(self, step: int, loss: float) -> None:
        with self._lock:
            self.step = step
            self.losses.append((step, loss))

    def eta_seconds(self) -> float | None:
        """Remaining time from the steps done in this session (resumed steps excluded)."""
        if self.started_at is None or self.step <= self.start_step or self.state != "training":
            return None
        rate = (time.time() - self.started_at) / (self.step - self.start_step)
        return rate * (self.max_steps - self.step)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy for the API and UI."""
        with self._lock:
            return {
                "kind": self.kind, "name": self.name, "state": self.state, "step": self.step,
                "max_steps": self.max_steps, "output": str(self.output), "run_dir": str(self.run_dir),
                "loss": self.losses[-1][1] if self.losses else None,
                "losses": [list(x) for x in self.losses],
                "samples": [{"step": s.step, "path": str(s.path), "prompt": s.prompt} for s in self.samples],
                "saves": [{"step": st, "path": str(p)} for st, p in self.saves],
                "notes": list(self.notes), "error": self.error, "eta_seconds": self.eta_seconds(),
            }
