"""Errors of the model manager room, shared by registry, probe, loader and manager."""
from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A checkpoint could not be found, identified or loaded; the message is meant for the user.

    The manager raises it after restoring the previous model, so the UI and API can show the
    message and keep serving.
    """
