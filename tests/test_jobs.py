import threading
import time

import pytest
import torch

from webui.jobs import JobFailed, JobQueue


def test_fifo_order_and_results():
    q = JobQueue(lambda job: job.payload * 2).start()
    jobs = [q.submit(i, source="api" if i % 2 else "ui") for i in range(20)]
    assert [j.wait(5) for j in jobs] == [i * 2 for i in range(20)]
    assert q.completed_order == [j.id for j in jobs]
    q.stop()


def test_failure_is_reported_and_worker_carries_on():
    def runner(job):
        if job.payload == "boom":
            raise ValueError("bad prompt")
        if job.payload == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "ok"

    q = JobQueue(runner).start()
    bad, oom, good = q.submit("boom"), q.submit("oom"), q.submit("fine")
    with pytest.raises(JobFailed, match="bad prompt"):
        bad.wait(5)
    with pytest.raises(JobFailed, match="Out of memory.*--medvram"):
        oom.wait(5)
    assert good.wait(5) == "ok" and oom.state == "failed"
    q.stop()


def test_position_interrupt_and_current():
    gate = threading.Event()

    def runner(job):
        if job.payload == "long":
            job.progress.begin_batch(0, 1, 100)
            for step in range(1, 101):
                gate.set()
                if job.progress.should_stop():
                    return ("stopped", step)
                job.progress.step(step)
                time.sleep(0.01)
        return ("done", 0)

    q = JobQueue(runner).start()
    first, second = q.submit("long"), q.submit("short")
    assert gate.wait(5)
    assert q.current() is first and q.position(second) == 1 and q.pending() == 2
    assert q.interrupt()
    state, step = first.wait(5)
    assert state == "stopped" and step < 100
    assert second.wait(5) == ("done", 0) and not q.interrupt()
    q.stop()


def test_progress_snapshot_eta():
    q = JobQueue(lambda job: None)
    job = q.submit(None)
    job.progress.begin_batch(1, 2, 10)
    job.progress.step(5)
    snap = job.progress.snapshot()
    assert snap.fraction == pytest.approx(0.75) and snap.sampling_step == 5 and snap.job_count == 2
