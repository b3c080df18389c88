"""Helpers shared by the scale-out tests."""
import threading


def one_thread(fn, *args):
    """fn(*args) on a fresh thread running torch on one thread, as a replica does (it reserves 1 CPU).

    CPU kernels sum in another order with another thread count, which moves a few pixels by one
    level. torch keeps the count per OS thread once a thread has run torch, so a fresh thread sets
    its own; the process-wide default is put back for threads started later.
    """
    import torch

    previous = torch.get_num_threads()
    out = {}

    def work():
        torch.set_num_threads(1)
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc
        finally:
            torch.set_num_threads(previous)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
