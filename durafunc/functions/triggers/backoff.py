"""The one poll back-off of every listener that polls storage (queue receives, blob container scans): a
randomized exponential delay between empty polls, as the WebJobs SDK's RandomizedExponentialBackoffStrategy."""
from __future__ import annotations

import asyncio
import random
from contextlib import suppress
from typing import Callable

MIN_POLL = 0.1                       # seconds: the first wait after an empty poll (Azure's minimum)


def next_delay(previous: float | None, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """The wait after an empty poll: ~100 ms, doubling (±20 %), at most `maximum`."""
    base = MIN_POLL if previous is None else min(maximum, previous * 2)
    return min(maximum, max(MIN_POLL, base * (0.8 + 0.4 * rand())))


class Backoff:
    """Waits between polls: none after a poll that found work, growing after empty ones, and cut short by
    `wake()` (this host just wrote something the listener should see) or by the listener stopping."""

    def __init__(self, maximum: float, rand: Callable[[], float] = random.random):
        self.maximum = maximum
        self.rand = rand
        self.delay: float | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def reset(self) -> None:
        """A poll found work: the next one comes at once."""
        self.delay = None

    async def wait(self) -> None:
        """After an empty poll (or an error): wait the next delay, or less when woken."""
        self.delay = next_delay(self.delay, self.maximum, self.rand)
        self._wake.clear()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.delay)

    def clear(self) -> None:
        """Forget a wake-up that came before a poll started (that poll sees what it was about)."""
        self._wake.clear()
