"""Reload UI's order of things: build first (errors reported, nothing swapped), swap only when the queue is idle."""
import threading
from types import SimpleNamespace

from webui.ui import reload_ui
from webui.ui.reload_ui import UiReloader


def _ctx(pending):
    return SimpleNamespace(queue=SimpleNamespace(pending=lambda: pending[0]))


def test_swap_waits_for_queued_jobs_and_one_reload_at_a_time(monkeypatch):
    swapped = []
    done = threading.Event()
    monkeypatch.setattr(reload_ui, "swap_blocks", lambda app, demo: (swapped.append((app, demo)), done.set()))
    pending = [2]
    app = object()
    reloader = UiReloader(_ctx(pending), lambda again: ("new page", again))
    started, message = reloader.reload(SimpleNamespace(server_app=app))
    assert started and "2 job(s)" in message
    assert reloader.reload(SimpleNamespace(server_app=app)) == (False, "A reload is already under way.")
    assert not done.wait(1.0)  # jobs still queued: the running page stays
    pending[0] = 0
    assert done.wait(10)
    assert swapped == [(app, ("new page", reloader))]  # the next build gets the same reloader


def test_failed_build_is_reported_and_nothing_is_swapped(monkeypatch):
    monkeypatch.setattr(reload_ui, "swap_blocks", lambda app, demo: (_ for _ in ()).throw(AssertionError("swapped")))
    reloader = UiReloader(_ctx([0]), lambda again: 1 / 0)
    started, message = reloader.reload(SimpleNamespace(server_app=object()))
    assert not started and "Reload UI failed" in message and "division by zero" in message
    assert "Reload UI failed" in reloader.reload(SimpleNamespace(server_app=object()))[1]  # not left busy
    assert "running server" in reloader.reload(SimpleNamespace(server_app=None))[1]  # a page never launched
