"""Guard for issue 14's 2x slowdown: the job worker must not get a malloc arena of its own.

On glibc a thread's own arena maps the large per-call buffers of a UNet afresh on every call
(hundreds of thousands of page faults per call on SD 1.5); webui/allocator.py limits glibc to one
arena at start-up. These tests check the mechanism, not timings: after the real JobQueue's worker
has allocated, glibc has created one arena when the process started as app.py starts, and more
than one when it did not (so the check can tell the two apart on this platform).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.kit import REPO_ROOT
from webui.allocator import arena_count

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    if {as_app}:
        import app  # noqa: F401  (start-up applies the allocator policy at import)
    import torch
    from webui.allocator import arena_count
    from webui.jobs import JobQueue

    def runner(job):
        for _ in range(4):  # what a UNet call does on the worker: large temporaries, freed again
            buffers = [torch.ones(4 << 20) for _ in range(4)]
            del buffers
        return "ok"

    queue = JobQueue(runner).start()
    assert queue.run("payload", kind="probe", timeout=60) == "ok"
    queue.stop()
    print("ARENAS", arena_count())
""")

pytestmark = pytest.mark.skipif(arena_count() is None, reason="per-thread malloc arenas are a glibc mechanism; "
                                                                 "other C libraries have nothing to configure")


def _arenas_after_a_job(as_app: bool) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(REPO_ROOT), as_app=as_app)],
                         capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [row for row in out.stdout.splitlines() if row.startswith("ARENAS ")][-1]
    return int(line.split()[1])


def test_worker_shares_the_main_arena_when_started_like_the_app():
    assert _arenas_after_a_job(as_app=True) == 1


def test_without_the_policy_the_worker_gets_its_own_arena():
    # The control: shows this platform has the mechanism, so the test above can fail.
    assert _arenas_after_a_job(as_app=False) >= 2
