"""The executor seam of the job queue, without Ray: several slots, arrival-order dispatch, per-job control."""
import threading
import time

import pytest

from webui.generation.progress import Progress
from webui.jobs import InProcessExecutor, JobFailed, JobQueue


class TwoSlots:
    """A fake scale-out executor: two jobs at once, records the order prepare() saw them in."""

    slots = 2

    def __init__(self):
        self.prepared: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        self.closed = False

    def make_progress(self) -> Progress:
        return Progress()

    def prepare(self, job):
        if job.payload == "refuse":
            raise ValueError("no such checkpoint")
        self.prepared.append(job.seq)
        job.worker = f"fake-{job.seq % 2}"

    def execute(self, job):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            deadline = time.monotonic() + (1.0 if job.payload == "long" else 0.02)
            while time.monotonic() < deadline:
                if job.progress.interrupted:
                    return "interrupted"
                time.sleep(0.005)
            return job.payload
        finally:
            with self.lock:
                self.running -= 1

    def close(self):
        self.closed = True


def test_two_slots_dispatch_in_arrival_order_and_run_two_at_once():
    executor = TwoSlots()
    q = JobQueue(executor=executor).start()
    jobs = []
    lock = threading.Lock()

    def client(n):
        for i in range(5):
            with lock:  # the arrival order is the submit order; record it with the submit
                jobs.append(q.submit(f"c{n}-{i}", source=f"client{n}"))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert [j.wait(10) for j in jobs] == [j.payload for j in jobs]
    assert q.dispatched_order == [j.id for j in sorted(jobs, key=lambda j: j.seq)]
    assert executor.prepared == sorted(executor.prepared) and len(executor.prepared) == 20
    assert executor.most_at_once == 2
    q.stop()
    assert executor.closed


def test_current_is_the_oldest_running_and_interrupt_reaches_the_job_asked_for():
    q = JobQueue(executor=TwoSlots()).start()
    first, second = q.submit("long"), q.submit("long")
    deadline = time.monotonic() + 5
    while len(q.running()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.current() is first and q.running() == [first, second] and q.pending() == 2
    assert q.interrupt(second.id)
    assert second.wait(5) == "interrupted"
    assert first.wait(5) == "long", "interrupting one job leaves the other running"
    assert not q.interrupt(first.id) and not q.interrupt("job-999999")
    q.stop()


def test_a_job_refused_by_prepare_fails_with_its_message_and_the_queue_goes_on():
    q = JobQueue(executor=TwoSlots()).start()
    bad, good = q.submit("refuse"), q.submit("fine")
    with pytest.raises(JobFailed, match="no such checkpoint"):
        bad.wait(5)
    assert good.wait(5) == "fine"
    q.stop()


def test_in_process_executor_is_the_default_and_marks_jobs_local():
    q = JobQueue(lambda job: job.payload + 1).start()
    job = q.submit(1)
    assert job.wait(5) == 2 and job.worker == "local" and isinstance(q.executor, InProcessExecutor)
    q.stop()
    with pytest.raises(ValueError):
        JobQueue()
