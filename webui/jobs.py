"""The job queue: one worker per device, FIFO, shared by the UI, the API and extensions.

Every entry point submits here, so UI and API jobs interleave in arrival order and only
one generation touches the device at a time.
"""
from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from webui.generation.progress import Progress

log = logging.getLogger(__name__)
HISTORY = 200  # finished jobs kept for lookup by id


class JobFailed(RuntimeError):
    """The job raised; the message is the one to show the user."""


@dataclass
class Job:
    """One submitted unit of work and everything a reader may ask about it."""

    id: str
    seq: int
    kind: str
    payload: Any
    source: str
    progress: Progress
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    state: str = "queued"  # queued | running | done | failed
    result: Any = None
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result or raise JobFailed with its message."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state} after {timeout}s")
        if self.state == "failed":
            raise JobFailed(self.error or "failed")
        return self.result

    @property
    def done(self) -> bool:
        return self._done.is_set()


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class JobQueue:
    """FIFO queue with a single worker thread that runs `runner(job)` for each job."""

    def __init__(self, runner: Callable[[Job], Any], make_progress: Callable[[], Progress] = Progress):
        self._runner = runner
        self._make_progress = make_progress
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiting: list[Job] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._current: Job | None = None
        self._worker: threading.Thread | None = None
        self.completed_order: list[str] = []  # ids in the order the worker finished them

    def start(self) -> "JobQueue":
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="job-worker", daemon=True)
            self._worker.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        """Finish the running job, drop nothing already queued, then end the worker."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            self._worker = None

    def submit(self, payload: Any, kind: str = "txt2img", source: str = "ui") -> Job:
        """Queue a job and return it at once; `job.wait()` blocks for the result."""
        with self._lock:
            seq = next(self._seq)
            job = Job(id=f"job-{seq:06d}", seq=seq, kind=kind, payload=payload, source=source,
                      progress=self._make_progress())
            self._waiting.append(job)
            self._jobs[job.id] = job
            while len(self._jobs) > HISTORY and next(iter(self._jobs.values())).done:
                self._jobs.popitem(last=False)
        self._queue.put(job)
        return job

    def run(self, payload: Any, kind: str = "txt2img", source: str = "ui", timeout: float | None = None) -> Any:
        """Submit and wait: the common case for the UI and API handlers."""
        return self.submit(payload, kind, source).wait(timeout)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while running or done; otherwise how many jobs run before it."""
        with self._lock:
            return self._waiting.index(job) + (1 if self._current else 0) if job in self._waiting else 0

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting) + (1 if self._current else 0)

    def current(self) -> Job | None:
        with self._lock:
            return self._current

    def interrupt(self) -> bool:
        """Interrupt the running job (whoever submitted it); False when idle."""
        job = self.current()
        if job:
            job.progress.interrupt()
        return job is not None

    def skip(self) -> bool:
        job = self.current()
        if job:
            job.progress.skip()
        return job is not None

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting.remove(job)
                self._current = job
            job.state, job.started_at = "running", time.time()
            try:
                job.result = self._runner(job)
                job.state = "done"
            except Exception as exc:  # one bad job must never stop the worker
                job.state = "failed"
                if _is_out_of_memory(exc):
                    _free_device_memory()
                    job.error = ("Out of memory: " + (str(exc).splitlines() or [""])[0] +
                                 " (try a smaller size or batch, or --medvram / --lowvram)")
                    log.error("job %s: %s", job.id, job.error)
                else:
                    job.error = str(exc) or type(exc).__name__
                    log.exception("job %s (%s from %s) failed", job.id, job.kind, job.source)
            finally:
                job.finished_at = time.time()
                with self._lock:
                    self._current = None
                    self.completed_order.append(job.id)
                    del self.completed_order[:-HISTORY]
                job._done.set()
