"""RayExecutor: the JobQueue's executor when the app scales out to Ray Serve replicas.

The queue still takes jobs in arrival order; `prepare` binds each generation to the checkpoint
selected at that point (a swap applies to the jobs submitted after it, as on one machine), and
`execute` streams the job through a replica: `Started`, `Update`s mirrored into the job's
progress, then the unsaved result, which the front saves (it alone writes outputs/). A replica
that dies mid-job costs one re-run elsewhere; a second loss fails the job with a clear message.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable

from webui.generation.outpaint import OutpaintJob
from webui.generation.request import GenerationRequest, GenerationResult
from webui.jobs import Job
from webui.models.errors import ModelLoadError
from webui.scale.gate import OrderedGate
from webui.scale.messages import Failed, Finished, Started, Ticket, Update
from webui.scale.options import APP_NAME, DEPLOYMENT_NAME, ScalePlan
from webui.scale.progress import MirrorProgress

log = logging.getLogger(__name__)
ATTACHED_MAX_SLOTS = 64  # worker threads when the replica count is the cluster's business (attach mode)
WAIT_NOTE_AFTER_S = 0.5  # a dispatched job not started by then gets a "waiting because ..." text
FRONT_STATE_KINDS = ("startup", "vae")  # front jobs whose outcome the jobs after them read (checkpoint, sd_vae)
REMOTE_PAYLOADS = (GenerationRequest, OutpaintJob)  # what runs on replicas; every other kind runs on the front


class ReplicaLost(RuntimeError):
    """The replica running a job stopped (process or node died) before the job finished."""


class _NotStarted(RuntimeError):
    """No replica took the job (the app is being redeployed, or the chosen replica died first)."""


def _lost_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rx
    from ray.serve import exceptions as sx

    return (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.LocalRayletDiedError,
            rx.ObjectLostError, sx.ReplicaUnavailableError, ReplicaLost)


def connect(plan: ScalePlan) -> bool:
    """Join the cluster (or start Ray here); True when this call started the connection (close ends it)."""
    import ray

    if ray.is_initialized():  # a test or an embedding program connected already
        return False
    if plan.address:
        ray.init(address=plan.address, configure_logging=False)
    else:
        ray.init(include_dashboard=False, configure_logging=False)
    return True


class RayExecutor:
    """Dispatch generation jobs to the Serve app; run other kinds (checkpoint swaps) with `local_runner`."""

    def __init__(self, plan: ScalePlan, *, models, settings, styles, core, flags: dict[str, Any],
                 local_runner: Callable[[Job], Any]):
        import ray
        from ray import serve

        from webui.scale.control import JobControl

        self._ray, self._serve = ray, serve
        self.plan = plan
        self._models, self._settings, self._styles, self._core = models, settings, styles, core
        self._local = local_runner
        self._lost = _lost_errors()
        self._unavailable = (serve.exceptions.DeploymentUnavailableError,)
        self._owns_connection = connect(plan)
        self._control = ray.remote(JobControl).options(num_cpus=0).remote()
        current = models.current()
        self._selected = current.info if current else None
        self._lock = threading.Lock()
        self._local_lock = threading.Lock()
        self._bound: dict[str, Any] = {}  # job id -> CheckpointInfo, bound in arrival order
        self._swaps: dict[str, Any] = {}  # checkpoint job id -> (new, previous) selection
        self._waiting: dict[str, tuple[Job, float]] = {}  # dispatched, not yet started on a replica
        self._front_state: threading.Event | None = None  # set when the last startup load / VAE change ended
        self._front_events: dict[str, threading.Event] = {}  # that job's id -> its event
        self._handle = None
        if plan.deploy:
            self.slots = plan.slots
            self._handle = self._deploy(flags)
        else:
            self.slots = ATTACHED_MAX_SLOTS
        self._gate = OrderedGate(plan.slots if plan.deploy else self._attached_replicas() or 1)
        self._closing = threading.Event()
        self._status_text, self._status_at, self._limit_at = "", 0.0, 0.0
        self._watcher = threading.Thread(target=self._watch_waiting, name="ray-dispatch-watch", daemon=True)
        self._watcher.start()
        log.info(plan.describe())

    # -- setup -------------------------------------------------------------------------------------

    def _deploy(self, flags: dict[str, Any]):
        from webui.scale.serve_app import build_app

        gpus = 1.0 if self._ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        cpus = self.plan.cpus_per_replica
        total_cpus = self._ray.cluster_resources().get("CPU", 0)
        wanted = self.plan.replicas or self.plan.min_replicas or 0
        if not gpus and wanted * cpus > total_cpus:
            log.warning("%d replica(s) x %g CPU is more than the cluster's %g CPUs: some replicas will wait "
                        "for CPUs (add nodes or lower --ray-cpus-per-replica)", wanted, cpus, total_cpus)
        options = dict(replicas=self.plan.replicas, min_replicas=self.plan.min_replicas,
                       max_replicas=self.plan.max_replicas, cpus=cpus, gpus=gpus,
                       models_per_replica=int(self._settings.get("sd_checkpoints_limit")))
        self._serve.start(proxy_location="Disabled")  # the front is the only ingress; no Serve HTTP proxy
        app = build_app(options, flags, self._settings.as_dict(), self._selected.name if self._selected else None)
        # Not blocking: the UI comes up while replicas start; jobs wait meanwhile and say so.
        return self._serve._run(app, _blocking=False, name=APP_NAME, route_prefix=None)

    def _attached_replicas(self) -> int | None:
        """The most replicas the app deployed by someone else may run (None while it is not deployed)."""
        try:
            from ray.serve.context import _get_global_client

            details = _get_global_client().get_serve_details()
            config = details["applications"][APP_NAME]["deployments"][DEPLOYMENT_NAME]["deployment_config"]
            auto = config.get("autoscaling_config") or {}
            return int(auto.get("max_replicas") or config.get("num_replicas") or 1)
        except Exception:
            return None

    def _handle_for(self, job: Job):
        """The app's handle; attached to an app not deployed yet, wait for it (the job says so)."""
        while self._handle is None:
            try:
                self._handle = self._serve.get_app_handle(APP_NAME)
            except Exception:
                job.progress.set_text(f"Waiting for the Ray Serve app {APP_NAME!r} to be deployed on the cluster")
                if self._closing.wait(2):
                    raise RuntimeError("the app is shutting down")
        return self._handle

    # -- the Executor protocol ---------------------------------------------------------------------

    def make_progress(self) -> MirrorProgress:
        return MirrorProgress(self._signal)

    def _signal(self, token: str, what: str) -> None:
        self._control.signal.remote(token, what)  # fire and forget: the replica's long poll picks it up

    def prepare(self, job: Job) -> None:
        """In arrival order: bind a generation to its checkpoint; a swap changes what later jobs bind.

        A startup load or sd_vae change queued before this job ends first (later jobs read what it
        selected, as on one machine: the one worker ran it before them).
        """
        pending = self._front_state
        if pending is not None:
            pending.wait()
        if job.kind in FRONT_STATE_KINDS:
            self._front_state = job_state = threading.Event()
            with self._lock:
                self._front_events[job.id] = job_state
        if isinstance(job.payload, REMOTE_PAYLOADS):
            info = self._checkpoint_for(job.payload)
            with self._lock:
                self._bound[job.id] = info
            self._gate.reserve(job.id)
            job.worker = "waiting for a replica"
        elif job.kind == "checkpoint":
            info = self._models.find(job.payload)
            if info is None:
                raise ModelLoadError(f"no checkpoint matches {str(job.payload)!r}")
            with self._lock:
                self._swaps[job.id] = (info, self._selected)
                self._selected = info
            job.worker = "front"
        else:
            job.worker = "front"

    def execute(self, job: Job) -> Any:
        with self._lock:
            info = self._bound.pop(job.id, None)
            swap = self._swaps.pop(job.id, None)
        if info is not None:
            if self._gate.inside >= self._gate.limit:
                job.progress.set_text("Waiting for a free replica")
            self._gate.enter(job.id)
            try:
                return self._run_remote(job, info)
            finally:
                self._gate.leave()
        try:  # a checkpoint swap (the front loads it too: header, token counter, /options), extras, ...
            with self._local_lock:  # front-side jobs run one at a time, as on the in-process worker
                result = self._local(job)
            if job.kind == "startup":  # the checkpoint the front picked is the one later jobs run on
                current = self._models.current()
                with self._lock:
                    self._selected = current.info if current else self._selected
            return result
        except Exception:
            if swap is not None:
                with self._lock:
                    if self._selected is swap[0]:  # nothing swapped since: later jobs use the old one again
                        self._selected = swap[1]
            raise
        finally:
            with self._lock:
                ended = self._front_events.pop(job.id, None)
            if ended is not None:
                ended.set()

    def limit_in_flight(self, jobs: int) -> None:
        """Let at most `jobs` jobs run on replicas at once (bench/scale_out.py measures 1 of 2 replicas so)."""
        self._gate.set_limit(jobs)

    def close(self) -> None:
        self._closing.set()
        try:
            if self.plan.deploy:
                self._serve.delete(APP_NAME)  # frees the replicas' GPUs for others on a shared cluster
            self._ray.kill(self._control)
        except Exception as exc:
            log.warning("scale-out shutdown: %s", exc)
        if self._owns_connection:
            self._ray.shutdown()

    # -- one remote job ----------------------------------------------------------------------------

    def _checkpoint_for(self, request: GenerationRequest | OutpaintJob):
        if isinstance(request, OutpaintJob):
            request = request.request
        wanted = (request.override_settings or {}).get("sd_model_checkpoint")
        if wanted:
            info = self._models.find(wanted)
            if info is None:
                raise ModelLoadError(f"no checkpoint matches {str(wanted)!r}")
            return info
        with self._lock:
            info = self._selected
        if info is None:
            raise ModelLoadError("No checkpoint is selected. Put a .safetensors checkpoint in "
                                 f"{self._models.paths.ckpt_dir} (on the front and every worker) and select it.")
        return info

    def _ticket(self, job: Job, info) -> Ticket:
        request = job.payload.request if isinstance(job.payload, OutpaintJob) else job.payload
        styles = [s for s in (self._styles.get(name) for name in request.styles) if s is not None]
        return Ticket(job_id=job.id, request=job.payload, checkpoint=info.name, checkpoint_path=str(info.filename),
                      settings=self._settings.as_dict(), styles=styles, control=self._control,
                      control_token=job.progress.token)

    def _run_remote(self, job: Job, info) -> GenerationResult:
        ticket = self._ticket(job, info)
        try:
            while True:
                try:
                    result = self._stream(job, ticket, info)
                    break
                except _NotStarted as exc:  # no replica took it (app redeployed, replica gone first): wait
                    log.info("job %s not taken by a replica yet (%s); trying again", job.id, exc)
                    if self._closing.wait(1.0):
                        raise RuntimeError("the app is shutting down") from None
                except self._lost as exc:
                    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                    if job.attempts >= 2:
                        raise RuntimeError(f"the replica running this job stopped, and so did the one it was "
                                           f"re-run on ({reason}); check the Ray cluster's nodes") from None
                    log.warning("job %s: replica %s stopped (%s); running the job again on another replica",
                                job.id, job.worker, reason)
                    job.progress.set_text("A replica stopped during this job; running it again on another one")
        finally:
            self._control.forget.remote(job.progress.token)
        return self._save(job, info, result)

    def _stream(self, job: Job, ticket: Ticket, info) -> GenerationResult:
        """One run on a replica. Raises _NotStarted when no replica took it, a lost error when one died."""
        handle = self._handle_for(job).options(stream=True, multiplexed_model_id=info.name)
        started = False
        with self._lock:
            self._waiting[job.id] = (job, time.monotonic())
        try:
            for message in handle.run.remote(ticket):
                if isinstance(message, Update):
                    job.progress.apply(message)
                elif isinstance(message, Started):
                    started = True
                    with self._lock:
                        self._waiting.pop(job.id, None)
                    job.worker = message.replica
                    job.attempts += 1
                    ticket.attempt = job.attempts
                elif isinstance(message, Finished):
                    return message.result
                elif isinstance(message, Failed):  # the job's own error: running it again would fail again
                    raise RuntimeError(message.message if not message.out_of_memory or
                                       "out of memory" in message.message.lower()
                                       else f"out of memory: {message.message}")
            raise ReplicaLost("the replica ended the job's stream without a result")
        except self._unavailable as exc:
            raise _NotStarted(str(exc)) from None
        except self._lost as exc:
            if not started:
                raise _NotStarted(str(exc)) from None
            raise
        finally:
            with self._lock:
                self._waiting.pop(job.id, None)

    def _save(self, job: Job, info, result: GenerationResult) -> GenerationResult:
        """Save on the front, as the in-process core would have (the caller's save_images is put back)."""
        from webui.scale.saving import save_result

        asked = job.payload.request if isinstance(job.payload, OutpaintJob) else job.payload
        result.request = dataclasses.replace(result.request, save_images=asked.save_images)
        result.paths = save_result(self._core, result, info.model_name)
        return result

    # -- jobs that wait ----------------------------------------------------------------------------

    def _watch_waiting(self) -> None:
        """Tell jobs dispatched but not started why they wait (no replica running, all busy, not deployed)."""
        while not self._closing.wait(WAIT_NOTE_AFTER_S):
            now = time.monotonic()
            with self._lock:
                late = [job for job, since in self._waiting.values() if now - since >= WAIT_NOTE_AFTER_S]
            if not self.plan.deploy and now - self._limit_at > 5:  # the cluster may rescale its app
                self._limit_at = now
                limit = self._attached_replicas()
                if limit:
                    self._gate.set_limit(limit)
            if not late:
                continue
            text = self._why_waiting(now)
            for job in late:
                job.progress.set_text(text)

    def _why_waiting(self, now: float) -> str:
        if now - self._status_at < 2 and self._status_text:
            return self._status_text
        try:
            app = self._serve.status().applications.get(APP_NAME)
            deployment = app.deployments.get(DEPLOYMENT_NAME) if app else None
            if deployment is None:
                text = f"Waiting: the Ray Serve app {APP_NAME!r} is not deployed on the cluster"
            else:
                states = {str(getattr(k, "value", k)): n for k, n in deployment.replica_states.items()}
                running = states.get("RUNNING", 0)
                if running:
                    text = f"Waiting for a free replica ({running} running, all busy)"
                else:
                    others = ", ".join(f"{n} {state.lower()}" for state, n in states.items() if n) or "none started"
                    text = f"Waiting for a replica: none is running ({others})"
                    if deployment.message:
                        text += f": {deployment.message}"
        except Exception as exc:
            text = f"Waiting: the Ray cluster does not answer ({type(exc).__name__}: {exc})"
        self._status_text, self._status_at = text, now
        return text
