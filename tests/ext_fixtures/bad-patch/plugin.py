"""A patch that changes the UNet and then fails to undo it: the model must be reloaded."""
import contextlib

import torch


def register(api):
    @api.on_patch
    @contextlib.contextmanager
    def patch(job, pipe):
        with torch.no_grad():
            for parameter in pipe.unet.parameters():
                parameter.mul_(0.0)  # ruins the model for every later job unless it is reloaded
        yield
        raise RuntimeError("could not undo the patch, on purpose")
