"""Interrupt and skip for jobs running on replicas: a tiny async Ray actor owned by the front.

The front signals a job's token; the replica running that job keeps one long-poll call
(`wait_change`) outstanding and checks it without blocking at every step, so a signal costs one
message each way and an idle job costs nothing.
"""
from __future__ import annotations

import asyncio

State = tuple[bool, int]  # (interrupted, how many skips were asked for)
_POLL_S = 30.0  # a long poll returns at least this often, so a forgotten waiter never lingers


class JobControl:
    """Per-token interrupt/skip state; run as `ray.remote(JobControl)` with num_cpus=0."""

    def __init__(self):
        self._state: dict[str, State] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def _event(self, token: str) -> asyncio.Event:
        return self._changed.setdefault(token, asyncio.Event())

    async def signal(self, token: str, what: str) -> State:
        interrupted, skips = self._state.get(token, (False, 0))
        if what == "interrupt":
            interrupted = True
        elif what == "skip":
            skips += 1
        else:
            raise ValueError(f"unknown signal {what!r}")
        self._state[token] = (interrupted, skips)
        self._event(token).set()
        self._changed[token] = asyncio.Event()  # later waiters wait for the next change
        return self._state[token]

    async def state(self, token: str) -> State:
        return self._state.get(token, (False, 0))

    async def wait_change(self, token: str, seen: State) -> State:
        """Return the token's state once it differs from `seen` (or after a while, unchanged)."""
        seen = tuple(seen)
        if self._state.get(token, (False, 0)) == seen:
            try:
                await asyncio.wait_for(self._event(token).wait(), _POLL_S)
            except asyncio.TimeoutError:
                pass
        return self._state.get(token, (False, 0))

    async def forget(self, token: str) -> None:
        """The job ended: drop its state and wake anyone still waiting on it."""
        self._state.pop(token, None)
        event = self._changed.pop(token, None)
        if event is not None:
            event.set()
