"""Wiring for the front when a --ray-* flag is given (called from webui.context; imports Ray lazily)."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from webui.jobs import Job, JobQueue
from webui.scale.options import ScalePlan


def front_policy(args: argparse.Namespace):
    """The front never generates; the checkpoint it loads serves the UI (token counter, sizes) from the CPU,
    so it takes no GPU memory from a replica on the same machine."""
    from webui import devices

    flags = dataclasses.replace(devices.PolicyFlags.from_args(args), use_cpu=True)
    return devices.choose_policy(devices.detect(None), flags)


def scaled_queue(args: argparse.Namespace, paths, settings, models, styles, core,
                 local_runner: Callable[[Job], Any]) -> JobQueue:
    """A started JobQueue whose generations run on Ray Serve replicas."""
    from webui.scale.executor import RayExecutor
    from webui.scale.replica import replica_flags

    executor = RayExecutor(ScalePlan.from_args(args), models=models, settings=settings, styles=styles, core=core,
                           flags=replica_flags(args, paths), local_runner=local_runner)
    return JobQueue(executor=executor).start()
