"""What travels between the front and a replica: plain dataclasses, pickled by Ray (no Ray import here).

Front -> replica: one `Ticket` per job. Replica -> front, as one stream per job: `Started`, any
number of `Update`s, then `Finished` or `Failed`. A replica that dies sends nothing more; the
front sees the stream break and runs the job again elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webui.generation.request import GenerationRequest, GenerationResult
from webui.generation.styles import Style


@dataclass
class Ticket:
    """One job as a replica needs it: the request, the checkpoint bound in arrival order, the front's settings."""

    job_id: str
    request: GenerationRequest
    checkpoint: str  # the registry name (relative to the checkpoint folder): the same on every machine
    checkpoint_path: str  # the front's path, tried when the name is unknown to the replica (--ckpt FILE)
    settings: dict[str, Any]  # the front's settings when the job was dispatched (replicas keep none of their own)
    styles: list[Style] = field(default_factory=list)  # the front's styles the request names
    control: Any = None  # the JobControl actor handle
    control_token: str = ""
    attempt: int = 1


@dataclass
class Started:
    """The replica took the job."""

    replica: str  # "<replica id> pid <pid> on <node ip>": shown in /queue rows and logs
    pid: int


@dataclass
class Update:
    """Progress of the job on the replica; `preview` is set only when it changed since the last update."""

    job_no: int
    job_count: int
    step: int
    steps: int
    text: str
    preview: Any = None  # PIL image
    preview_step: int = 0


@dataclass
class Finished:
    """The result, unsaved: only the front writes outputs/."""

    result: GenerationResult


@dataclass
class Failed:
    """The job raised on the replica; `message` is the user's message (not retried: it would fail again)."""

    message: str
    out_of_memory: bool = False


class StyleMap:
    """The read-only style lookup the core needs (`get`), built from the styles a ticket carries."""

    def __init__(self, styles: list[Style]):
        self._styles = {style.name: style for style in styles}

    def get(self, name: str) -> Style | None:
        return self._styles.get(name)
