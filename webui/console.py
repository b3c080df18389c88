"""Keep the console to what the user needs: the device line, the model line, the URL, job progress.

Two library warnings print at every start and swap and ask the user for nothing they can act on:
transformers suggesting torchvision (an image-processor backend this app never uses) and diffusers'
"should be kept in float32: []" (an empty list: no module is affected). Both are dropped where they
are logged; the same warnings with content (a non-empty list) still print.
"""
from __future__ import annotations

import logging
import re

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
