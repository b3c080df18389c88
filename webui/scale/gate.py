"""At most N jobs in flight to the replicas, let through in the order they were reserved."""
from __future__ import annotations

import threading
from collections import deque


class OrderedGate:
    """`reserve` in arrival order (under the queue's take lock), then `enter` blocks until it is this
    key's turn and fewer than `limit` are inside; `leave` lets the next one in."""

    def __init__(self, limit: int):
        self._cond = threading.Condition()
        self._order: deque[str] = deque()
        self._inside = 0
        self.limit = max(1, limit)

    def reserve(self, key: str) -> None:
        with self._cond:
            self._order.append(key)

    def enter(self, key: str) -> None:
        with self._cond:
            if key not in self._order:
                self._order.append(key)
            while self._order[0] != key or self._inside >= self.limit:
                self._cond.wait()
            self._order.popleft()
            self._inside += 1
            self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1
            self._cond.notify_all()

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = max(1, limit)
            self._cond.notify_all()

    @property
    def inside(self) -> int:
        with self._cond:
            return self._inside
