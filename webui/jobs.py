"""The job queue: FIFO dispatch to an executor, shared by the UI, the API and extensions.

Every entry point submits here, so UI and API jobs interleave in arrival order. Where a job
runs is the executor's business (the seam): the default `InProcessExecutor` runs one job at a
time on this machine's device; `webui.scale` runs up to N at once on Ray Serve replicas. The
queue itself only keeps order, state, progress and history.
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
from typing import Any, Callable, Protocol

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
    worker: str = ""  # where it ran: "local", or the Ray Serve replica (set by the executor)
    attempts: int = 0  # runs started; 2 when a scale-out replica died and the job ran again elsewhere
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


class Executor(Protocol):
    """Where jobs run. The queue calls `prepare` in arrival order, then `execute` on a slot thread."""

    slots: int  # jobs that may run at once; the queue runs one worker thread per slot

    def make_progress(self) -> Progress:
        """The Progress object a new job gets (an executor may forward interrupt/skip from it)."""

    def prepare(self, job: Job) -> None:
        """Bind what must follow arrival order (e.g. the checkpoint a job runs on); cheap, may raise."""

    def execute(self, job: Job) -> Any:
        """Run the job to its end and return its result; raise to fail it."""

    def close(self) -> None:
        """Release what the executor holds (connections, remote replicas)."""


class InProcessExecutor:
    """The default: run each job in this process, one at a time (one device, one worker thread)."""

    slots = 1

    def __init__(self, runner: Callable[[Job], Any], make_progress: Callable[[], Progress] = Progress):
        self._runner = runner
        self.make_progress = make_progress

    def prepare(self, job: Job) -> None:
        job.worker = "local"

    def execute(self, job: Job) -> Any:
        return self._runner(job)

    def close(self) -> None:
        pass


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def out_of_memory_message(first_line: str) -> str:
    """The user-facing text for an out-of-memory failure (also used for remote replicas)."""
    return "Out of memory: " + first_line + " (try a smaller size or batch, or --medvram / --lowvram)"


class JobQueue:
    """FIFO queue; `executor.slots` worker threads take jobs in arrival order and execute them.

    `JobQueue(runner)` is the in-process queue of one worker; `JobQueue(executor=...)` plugs
    another executor in (see `webui.scale`).
    """

    def __init__(self, runner: Callable[[Job], Any] | None = None, make_progress: Callable[[], Progress] = Progress,
                 *, executor: Executor | None = None):
        if (runner is None) == (executor is None):
            raise ValueError("give either a runner or an executor")
        self.executor: Executor = executor or InProcessExecutor(runner, make_progress)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._take = threading.Lock()  # one worker at a time takes + prepares: dispatch keeps arrival order
        self._seq = itertools.count(1)
        self._waiting: list[Job] = []
        self._running: list[Job] = []  # in dispatch order
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._workers: list[threading.Thread] = []
        self.completed_order: list[str] = []  # ids in the order jobs finished
        self.dispatched_order: list[str] = []  # ids in the order workers took them (arrival order)

    def start(self) -> "JobQueue":
        if not self._workers:
            for n in range(max(1, self.executor.slots)):
                worker = threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
                worker.start()
                self._workers.append(worker)
        return self

    def stop(self, timeout: float = 10) -> None:
        """Finish the running jobs, drop nothing already queued, then end the workers and the executor."""
        if self._workers:
            for _ in self._workers:
                self._queue.put(None)
            deadline = time.monotonic() + timeout
            for worker in self._workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            self._workers = []
        self.executor.close()

    def submit(self, payload: Any, kind: str = "txt2img", source: str = "ui") -> Job:
        """Queue a job and return it at once; `job.wait()` blocks for the result."""
        with self._lock:
            seq = next(self._seq)
            job = Job(id=f"job-{seq:06d}", seq=seq, kind=kind, payload=payload, source=source,
                      progress=self.executor.make_progress())
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
            return self._waiting.index(job) + len(self._running) if job in self._waiting else 0

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting) + len(self._running)

    def current(self) -> Job | None:
        """The running job (the oldest one when several run at once), or None."""
        with self._lock:
            return self._running[0] if self._running else None

    def running(self) -> list[Job]:
        """Every running job, oldest first."""
        with self._lock:
            return list(self._running)

    def _target(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return self.current()
        job = self.get(job_id)
        return job if job is not None and not job.done else None

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt a job (by default the current one, whoever submitted it); False when there is none."""
        job = self._target(job_id)
        if job:
            job.progress.interrupt()
        return job is not None

    def skip(self, job_id: str | None = None) -> bool:
        """Skip the current batch of a job (by default the current one); False when there is none."""
        job = self._target(job_id)
        if job:
            job.progress.skip()
        return job is not None

    def _work(self) -> None:
        while True:
            with self._take:  # take and prepare under one lock, so dispatch follows arrival order
                job = self._queue.get()
                if job is None:
                    return
                with self._lock:
                    self._waiting.remove(job)
                    self._running.append(job)
                    self.dispatched_order.append(job.id)
                    del self.dispatched_order[:-HISTORY]
                job.state, job.started_at = "running", time.time()
                try:
                    self.executor.prepare(job)
                    refused = None
                except Exception as exc:
                    refused = exc
            self._execute(job, refused)

    def _execute(self, job: Job, refused: Exception | None) -> None:
        try:
            if refused is not None:
                raise refused
            job.result = self.executor.execute(job)
            job.state = "done"
        except Exception as exc:  # one bad job must never stop the worker
            job.state = "failed"
            if _is_out_of_memory(exc):
                _free_device_memory()
                job.error = out_of_memory_message((str(exc).splitlines() or [""])[0])
                log.error("job %s: %s", job.id, job.error)
            else:
                job.error = str(exc) or type(exc).__name__
                log.exception("job %s (%s from %s) failed", job.id, job.kind, job.source)
        finally:
            job.finished_at = time.time()
            with self._lock:
                self._running.remove(job)
                self.completed_order.append(job.id)
                del self.completed_order[:-HISTORY]
            job._done.set()
