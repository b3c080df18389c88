"""``modules.errors``: report exceptions to the log, as A1111's helpers do."""
from __future__ import annotations

import logging
import traceback

log = logging.getLogger("ext.a1111")


def report(message: str, *, exc_info: bool = False) -> None:
    log.error("%s%s", message, ("\n" + traceback.format_exc()) if exc_info else "")


def display(e: Exception, task, *, full_traceback=False) -> None:
    log.error("%s: %s: %s", task, type(e).__name__, e)


def print_error_explanation(message: str) -> None:
    log.error("%s", message)


def run(code, task) -> None:
    try:
        code()
    except Exception as e:
        display(e, task)
