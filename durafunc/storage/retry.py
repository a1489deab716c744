"""Bounded exponential back-off for the raw storage calls, like the storage SDKs' retry policy.

A transient failure (a refused or reset connection, a timeout, 408/429/500/502/503/504) is tried again up to
`ATTEMPTS` times in all, waiting 0.2 s, 0.4 s, 0.8 s (±20 %) in between; anything else is raised at once. The
last failure is raised as it is, so callers see what went wrong. A retried call may have been carried out the
first time (its answer lost): callers treat the answer of the retry accordingly (an insert answered 409, a
delete answered 404); a retried queue send may leave two copies of a message, as with the SDKs.
"""
from __future__ import annotations

import asyncio
import random
from typing import Awaitable, Callable, TypeVar

import aiohttp

T = TypeVar("T")

ATTEMPTS = 4
BASE_DELAY = 0.2
MAX_DELAY = 2.0
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# one raw call may take this long before it counts as failed (a stalled connection must not hang the engine)
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError,
                          asyncio.TimeoutError)):
        return True
    return getattr(error, "status_code", None) in TRANSIENT_STATUS


async def retrying(call: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS) -> T:
    """`await call()`, again after a transient failure (at most `attempts` tries in all)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as e:  # noqa: BLE001 - re-raised below unless transient
            if attempt >= attempts or not is_transient(e):
                raise
        delay = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
    raise AssertionError("unreachable")
