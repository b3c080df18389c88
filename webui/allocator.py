"""Process-wide C allocator policy, applied first thing at start-up (before any thread exists).

Why: the job worker is a thread, and on glibc every new thread that allocates gets its own
malloc arena. A thread arena lives in 64 MB mmap'd sub-heaps that glibc unmaps or shrinks as
soon as they empty, and it never benefits from the main arena's dynamic mmap/trim thresholds
(which the model load raises). So the large temporaries of every UNet call (oneDNN's
weight-sized buffers, activations) were mapped afresh on each call from the worker: measured
on the real SD 1.5 architecture on CPU, ~465,000 minor page faults (about 1.8 GB of zeroed
pages) per UNet call in the worker against ~100 in the main thread, and 2x the time per image.
Limiting glibc to one arena (what ``MALLOC_ARENA_MAX=1`` does, but set by the app itself so it
holds however the app is started) makes the worker and torch's OpenMP threads share the main
arena, so a job on the worker costs what the same call costs on the main thread.

Other platforms are left alone: macOS' and musl's allocators have no per-thread arenas of
this kind, and CUDA tensors do not go through malloc. Python's small objects use pymalloc,
so sharing one arena costs the other threads (HTTP server, UI) nothing measurable.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def _glibc():
    """The loaded glibc, or None when this process does not run on glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None  # musl or another libc: nothing to tune
    return libc


def configure_allocator() -> str:
    """Apply the allocator policy; returns a short description for the start-up log.

    Call it before threads start: a thread that already allocated keeps the arena it has.
    Idempotent; a no-op off glibc.
    """
    libc = _glibc()
    if libc is None:
        return "allocator: platform default"
    if libc.mallopt(M_ARENA_MAX, 1) != 1:
        log.warning("mallopt(M_ARENA_MAX, 1) was refused; generation on the job worker may run slower")
        return "allocator: glibc default (mallopt refused)"
    return "allocator: glibc, one malloc arena (the job worker reuses the main heap)"


def arena_count() -> int | None:
    """How many malloc arenas glibc has created so far (None off glibc). For tests and diagnostics."""
    libc = _glibc()
    if libc is None:
        return None
    import os
    import tempfile

    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryFile() as handle:
        stream = libc.fdopen(os.dup(handle.fileno()), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        handle.seek(0)
        return handle.read().count(b"<heap nr=")
