"""The console drops two library warnings that ask nothing of the user; real warnings still print."""
import logging

import diffusers.models.modeling_utils  # noqa: F401  (its logger setup first, as in the app)

from webui.console import quiet_library_noise


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_noise_dropped_real_warnings_kept():
    quiet_library_noise()
    quiet_library_noise()  # idempotent: one filter each
    diffusers = logging.getLogger("diffusers.models.modeling_utils")
    transformers = logging.getLogger("transformers.utils.import_utils")
    ours = [f for logger in (diffusers, transformers) for f in logger.filters if type(f).__name__ == "_DropNoise"]
    assert len(ours) == 2
    keep = _Keep()
    for logger in (diffusers, transformers):
        logger.addHandler(keep)  # the libraries stop propagation at their root logger
    try:
        diffusers.warning("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting")
        transformers.warning("`SiglipImageProcessor` requires torchvision (not installed); falling back")
        diffusers.warning("There are modules in AutoencoderKL that should be kept in float32: ['norm']. Casting")
        transformers.warning("something else")
    finally:
        for logger in (diffusers, transformers):
            logger.removeHandler(keep)
    assert keep.messages == ["There are modules in AutoencoderKL that should be kept in float32: ['norm']. Casting",
                             "something else"]


def test_console_bar_per_job_counts_every_step():
    import io

    from webui.console import ConsoleProgress

    out = io.StringIO()
    progress = ConsoleProgress(stream=out)
    for batch in range(2):
        progress.begin_batch(batch, 2, 3)
        for step in range(1, 4):
            progress.step(step)
    text = out.getvalue()
    assert "Total progress" in text and "6/6" in text
    assert progress.snapshot().sampling_step == 3  # the Progress the UI reads is unchanged
