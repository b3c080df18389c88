"""The --ray-* flags, checked once and turned into a plan the executor follows (imports no Ray)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

APP_NAME = "sd-webui"  # the Ray Serve application name; a KubeRay RayService deploys the same name
DEPLOYMENT_NAME = "GenerationReplica"


def scale_requested(args: argparse.Namespace) -> bool:
    """True when any --ray-* flag was given: the app dispatches to Ray Serve instead of running locally."""
    return any(getattr(args, name, None) is not None
               for name in ("ray_address", "ray_replicas", "ray_min_replicas", "ray_max_replicas"))


def check_flags(args: argparse.Namespace) -> str | None:
    """The first problem with the --ray-* flags in words, or None when they make sense together."""
    replicas, low, high = args.ray_replicas, args.ray_min_replicas, args.ray_max_replicas
    if replicas is not None and (low is not None or high is not None):
        return "--ray-replicas is a fixed count; give it or --ray-min-replicas/--ray-max-replicas, not both"
    if replicas is not None and replicas < 1:
        return f"--ray-replicas must be at least 1, got {replicas}"
    if low is not None and high is None:
        return "--ray-min-replicas needs --ray-max-replicas (the most replicas autoscaling may start)"
    if high is not None and high < 1:
        return f"--ray-max-replicas must be at least 1, got {high}"
    if low is not None and low < 0:
        return f"--ray-min-replicas must be 0 or more, got {low}"
    if low is not None and high is not None and low > high:
        return f"--ray-min-replicas ({low}) is more than --ray-max-replicas ({high})"
    if args.ray_cpus_per_replica is not None and args.ray_cpus_per_replica <= 0:
        return f"--ray-cpus-per-replica must be more than 0, got {args.ray_cpus_per_replica}"
    return None


def missing_ray(args: argparse.Namespace) -> str | None:
    """A message when a --ray-* flag is given but Ray is not installed (found without importing it)."""
    import importlib.util

    if scale_requested(args) and importlib.util.find_spec("ray") is None:
        return ("--ray-* flags need Ray Serve, which is not installed: ./launch.sh installs it when given one, "
                "or run .venv/bin/pip install -r requirements-scale.txt -c requirements.txt")
    return None


@dataclass(frozen=True)
class ScalePlan:
    """What the front does with Ray: where to connect, whether it deploys the replicas, how many run."""

    address: str | None  # None: start a Ray instance inside this process (one machine)
    deploy: bool  # False: attach to an sd-webui app someone else deployed (KubeRay RayService)
    replicas: int | None  # fixed count, or None with autoscaling
    min_replicas: int | None
    max_replicas: int | None
    cpus_per_replica: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ScalePlan":
        problem = check_flags(args)
        if problem:
            raise ValueError(problem)
        autoscale = args.ray_max_replicas is not None
        replicas = args.ray_replicas
        if replicas is None and not autoscale and args.ray_address is None:
            replicas = 1
        return cls(address=args.ray_address, deploy=replicas is not None or autoscale, replicas=replicas,
                   min_replicas=(args.ray_min_replicas if args.ray_min_replicas is not None else 1) if autoscale
                   else None,
                   max_replicas=args.ray_max_replicas, cpus_per_replica=args.ray_cpus_per_replica or 1.0)

    @property
    def slots(self) -> int:
        """Jobs the front keeps in flight: one per replica that may exist (dispatch stays in arrival order)."""
        return self.replicas or self.max_replicas or ATTACH_SLOTS

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "a Ray instance started on this machine"
        if not self.deploy:
            return f"Scale-out: attached to the Ray Serve app {APP_NAME!r} on {where}, up to {self.slots} jobs at once"
        count = (f"{self.replicas} replica(s)" if self.replicas is not None
                 else f"{self.min_replicas} to {self.max_replicas} replicas (autoscaling)")
        return f"Scale-out: {count} on {where}, {self.cpus_per_replica:g} CPU each (1 GPU each where there are GPUs)"


# Attached to an app deployed elsewhere we cannot know its replica count in advance; the executor
# reads it from Serve once connected and uses this only until then.
ATTACH_SLOTS = 1
