"""Keep the console to what the user needs: the device line, the model line, the URL, job progress.

Two library warnings print at every start and swap and ask the user for nothing they can act on:
transformers suggesting torchvision (an image-processor backend this app never uses) and diffusers'
"should be kept in float32: []" (an empty list: no module is affected). Both are dropped where they
are logged; the same warnings with content (a non-empty list) still print.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

from tqdm import tqdm

from webui.generation.progress import Progress

_EMPTY_FP32 = re.compile(r"should be kept in float32: \[\]")
_TORCHVISION_HINT = "requires torchvision (not installed)"


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (_EMPTY_FP32.search(message) or _TORCHVISION_HINT in message)


def quiet_library_noise() -> None:
    """Install the filters on the loggers that emit the two warnings (idempotent)."""
    for name in ("diffusers.models.modeling_utils", "transformers.utils.import_utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


class ConsoleProgress(Progress):
    """A job's Progress that also draws a console bar over all its steps, as A1111 prints one per job.

    The server's queue makes these (``build_context(..., load_in_background=True)``); library code and
    tests keep the silent Progress. The bar closes when the last step of the last batch is done, or
    with the next job's bar (an interrupted job never reaches its total).
    """

    def __init__(self, *args, stream: TextIO | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._stream = stream
        self._bar = None
        self._done_before = 0  # steps of earlier batches (and passes) of this job

    def begin_batch(self, job_no: int, job_count: int, steps: int) -> None:
        super().begin_batch(job_no, job_count, steps)
        if self._bar is None:
            self._bar = tqdm(total=steps * job_count, desc="Total progress", file=self._stream or sys.stderr,
                             dynamic_ncols=True, leave=True)
        else:
            self._done_before = self._bar.n
            left = steps * (job_count - job_no)
            if self._bar.n + left > self._bar.total:  # a second pass (hires) adds steps
                self._bar.total = self._bar.n + left

    def step(self, step: int, latents: Any = None) -> None:
        super().step(step, latents)
        bar = self._bar
        if bar is not None and not bar.disable:
            bar.update(max(0, self._done_before + step - bar.n))
            if bar.n >= bar.total:
                bar.close()
