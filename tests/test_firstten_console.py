"""The console drops two library warnings that ask nothing of the user; real warnings still print."""
import logging

from webui.console import quiet_library_noise


def test_noise_dropped_real_warnings_kept(caplog):
    quiet_library_noise()
    quiet_library_noise()  # idempotent: one filter each
    diffusers = logging.getLogger("diffusers.models.modeling_utils")
    transformers = logging.getLogger("transformers.utils.import_utils")
    assert len(diffusers.filters) == 1 and len(transformers.filters) == 1
    with caplog.at_level(logging.WARNING):
        diffusers.warning("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting")
        transformers.warning("`SiglipImageProcessor` requires torchvision (not installed); falling back")
        diffusers.warning("There are modules in AutoencoderKL that should be kept in float32: ['norm']. Casting")
        transformers.warning("something else")
    assert [r.getMessage()[-30:] for r in caplog.records] == [
        "d be kept in float32: ['norm']. Casting"[-30:], "something else"]
