"""Slow down repeated failed logins per client (UI login form and HTTP Basic alike).

A client may fail `FREE_FAILURES` times; after that it is locked out for 1 s, then 2, 4, ...
up to `MAX_LOCK_S` per further failure. While locked out, every attempt is refused without
checking the password, so guessing fast gains nothing and even the right password must wait.
A success clears the client's record; records of clients that stopped failing expire.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

FREE_FAILURES = 5
MAX_LOCK_S = 300.0
FORGET_AFTER_S = 900.0  # a client that has not failed for this long starts afresh
MAX_CLIENTS = 10_000  # bound the table when many addresses fail once


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Per-client failure counts; thread-safe (the Basic check runs in worker threads too)."""

    free_failures: int = FREE_FAILURES
    max_lock_s: float = MAX_LOCK_S
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, _Record] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> float:
        """Seconds the client must still wait before its next attempt is even checked (0: go ahead)."""
        with self._lock:
            record = self._records.get(client)
            if record is None:
                return 0.0
            return max(0.0, record.locked_until - self.clock())

    def failed(self, client: str, user: str = "") -> float:
        """Record a failed attempt; returns the lock-out it starts (0 while still within the free tries)."""
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            record = self._records.setdefault(client, _Record())
            if now - record.last_failure > FORGET_AFTER_S:
                record.failures = 0
            record.failures += 1
            record.last_failure = now
            over = record.failures - self.free_failures
            lock = 0.0 if over <= 0 else min(self.max_lock_s, 2.0 ** (over - 1))
            record.locked_until = now + lock
            failures = record.failures
        if lock:
            log.warning("failed login %d from %s (user %r): further attempts refused for %.0f s",
                        failures, client, user[:64], lock)
        else:
            log.warning("failed login %d from %s (user %r)", failures, client, user[:64])
        return lock

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._records.pop(client, None)

    def _forget_old(self, now: float) -> None:
        if len(self._records) < MAX_CLIENTS:
            return
        for client in [c for c, r in self._records.items() if now - r.last_failure > FORGET_AFTER_S]:
            del self._records[client]
        if len(self._records) >= MAX_CLIENTS:  # all recent: drop the oldest half rather than grow forever
            for client, _ in sorted(self._records.items(), key=lambda item: item[1].last_failure)[:MAX_CLIENTS // 2]:
                del self._records[client]
