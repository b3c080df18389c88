"""The one piece of process-wide state in the app: which Bridge the ``modules.*`` views read.

A1111's API is module-level (``modules.shared.opts``), so its imitation needs one pointer to
the running app's objects. It lives here, is set by ``bridge_for`` and read only by the views
in ``webui/compat/a1111/modules``; nothing outside the compat layer looks at it.
"""
from __future__ import annotations

_bridge = None


def set_bridge(bridge) -> None:
    global _bridge
    _bridge = bridge


def bridge():
    """The active Bridge; RuntimeError when no app has loaded an A1111-style extension."""
    if _bridge is None:
        raise RuntimeError("the A1111 compatibility layer is not active (no app has loaded an A1111 extension)")
    return _bridge
