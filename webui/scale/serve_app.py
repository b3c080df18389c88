"""The Ray Serve application: the GenerationReplica deployment, with Serve's model multiplexing.

`build_app` is what the front deploys; `app_builder` is the same application for a cluster that
deploys it itself (a KubeRay RayService's serveConfigV2: import_path webui.scale.serve_app:app_builder).
"""
from __future__ import annotations

from typing import Any

from ray import serve

from webui.scale.options import DEPLOYMENT_NAME
from webui.scale.replica import GenerationReplica


def build_deployment(*, replicas: int | None, min_replicas: int | None = None, max_replicas: int | None = None,
                     cpus: float = 1.0, gpus: float = 0.0, models_per_replica: int = 1):
    """The deployment: one job at a time per replica, each replica on its own GPU (or `cpus` CPUs)."""

    class Replica(GenerationReplica):
        # Serve's router sends a job for checkpoint X to a replica that reported X (waiting about a
        # second for one to free up) before it falls back to any idle replica, which then loads X.
        @serve.multiplexed(max_num_models_per_replica=max(1, models_per_replica))
        async def load_checkpoint(self, model_id: str) -> str:
            return await GenerationReplica.load_checkpoint(self, model_id)

    options: dict[str, Any] = dict(
        name=DEPLOYMENT_NAME,
        max_ongoing_requests=1,  # a replica runs one generation at a time, as one A1111 process does
        # MALLOC_ARENA_MAX=1 from the process start: generation runs on a thread, which on glibc would
        # otherwise get its own malloc arena and run at half speed (see webui/allocator.py).
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus,
                           "runtime_env": {"env_vars": {"MALLOC_ARENA_MAX": "1", "HF_HUB_OFFLINE": "1"}}},
        logging_config={"enable_access_log": False},  # one log line per job on every replica is noise
        graceful_shutdown_timeout_s=60,  # a scale-down lets the running generation finish
    )
    if replicas is not None:
        options["num_replicas"] = replicas
    else:
        options["autoscaling_config"] = {"min_replicas": min_replicas or 0, "max_replicas": max_replicas,
                                         "target_ongoing_requests": 1, "upscale_delay_s": 2,
                                         "downscale_delay_s": 300}
    return serve.deployment(Replica, **options)


def build_app(deployment_options: dict[str, Any], flags: dict[str, Any], settings: dict[str, Any],
              warm: str | None = None):
    """The bound application the front passes to serve.run."""
    return build_deployment(**deployment_options).bind(flags, settings, warm)


def app_builder(args: dict[str, Any]):
    """Serve application builder for `serve deploy` / a KubeRay RayService (see docs/scale-out.md).

    args: flags (the replica flags: data_dir, ckpt_dir, ...), replicas or min_replicas/max_replicas,
    cpus_per_replica, gpus_per_replica, checkpoints_per_replica, warm (a checkpoint name to preload).
    """
    options = dict(replicas=args.get("replicas"), min_replicas=args.get("min_replicas"),
                   max_replicas=args.get("max_replicas"), cpus=float(args.get("cpus_per_replica", 1)),
                   gpus=float(args.get("gpus_per_replica", 1)),
                   models_per_replica=int(args.get("checkpoints_per_replica", 1)))
    if options["replicas"] is None and options["max_replicas"] is None:
        options["replicas"] = 1
    return build_app(options, dict(args.get("flags", {})), {}, args.get("warm"))
