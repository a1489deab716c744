"""Instance-row writes of the engine: at once when an instance reaches a final state; coalesced while it runs.

History is the durable record; the Instances row is the view of it that status queries read (DTFx writes it
after each history commit). A running instance's row changes are held for `delay` seconds and merged into one
write, so a short orchestration writes its row once (Completed) instead of twice (Running, then Completed).
A row left stale by a crash is no worse than one left by a crash between the history commit and the row write:
the host that takes the partition over finds the instance by its Pending/Running row and repairs it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from ..storage.errors import StorageUnavailableError

log = logging.getLogger("durafunc.engine")
_MAX_TRACKED = 10000


class RowWriter:
    def __init__(self, merge: Callable[[str, dict], Awaitable[None]], *, delay: float, refresh: float,
                 still_mine: Callable[[str], bool] = lambda iid: True):
        self._merge = merge              # async (instance id, fields) -> None
        self.delay = delay               # how long a running instance's changes may wait
        self.refresh = refresh           # min seconds between writes that would change only the times
        self._still_mine = still_mine    # a held write is dropped if another host took the instance
        self._pending: dict[str, dict] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, tuple[float, tuple]] = {}
        self._tasks: set[asyncio.Task] = set()

    async def write(self, instance_id: str, fields: dict, *, final: bool) -> None:
        """Merge `fields` into the instance's row: now if `final`, else within `delay` seconds."""
        self._pending[instance_id] = {**self._pending.get(instance_id, {}), **fields}
        if not (final or self.delay <= 0):
            self._hold(instance_id, self.delay)
            return
        try:
            await self._flush(instance_id)
        except StorageUnavailableError:
            self._hold(instance_id, max(self.delay, 1.0))    # written once storage is back
            raise

    def _hold(self, instance_id: str, delay: float) -> None:
        if instance_id not in self._timers:
            self._timers[instance_id] = asyncio.get_running_loop().call_later(delay, self._spawn_flush, instance_id)

    def _spawn_flush(self, instance_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._flush_held(instance_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_held(self, instance_id: str) -> None:
        self._timers.pop(instance_id, None)
        if not self._still_mine(instance_id):
            self._pending.pop(instance_id, None)
            return
        try:
            await self._flush(instance_id)
        except StorageUnavailableError:
            self._hold(instance_id, max(self.delay, 1.0))
        except Exception:  # noqa: BLE001 - the next change or a takeover writes the row again
            log.exception("could not write the row of instance %s", instance_id)

    async def _flush(self, instance_id: str) -> None:
        timer = self._timers.pop(instance_id, None)
        if timer is not None:
            timer.cancel()
        lock = self._locks.setdefault(instance_id, asyncio.Lock())
        async with lock:      # one write per instance at a time, in order: a final state is never overwritten
            fields = self._pending.pop(instance_id, None)
            if fields is None:
                return
            try:
                await self._write_now(instance_id, fields)
            except BaseException:
                self._pending[instance_id] = {**fields, **self._pending.get(instance_id, {})}
                raise
        if len(self._locks) > _MAX_TRACKED:
            for iid in [i for i, lk in self._locks.items() if not lk.locked()]:
                del self._locks[iid]

    async def _write_now(self, instance_id: str, fields: dict) -> None:
        """Merge, unless only the times would change and the row was written just now."""
        key = tuple(sorted((k, str(v)) for k, v in fields.items() if k != "LastUpdatedTime"))
        now = time.monotonic()
        last = self._written.get(instance_id)
        if last is not None and last[1] == key and now - last[0] < self.refresh:
            return
        await self._merge(instance_id, fields)
        self._written[instance_id] = (now, key)
        if len(self._written) > _MAX_TRACKED:
            self._written.clear()

    def forget(self, instance_ids) -> None:
        """Drop held changes of instances this host no longer runs (their new owner writes the row)."""
        for iid in instance_ids:
            self._pending.pop(iid, None)
            timer = self._timers.pop(iid, None)
            if timer is not None:
                timer.cancel()

    async def flush_all(self, timeout: float = 5.0) -> None:
        """Write every held change now (on shutdown, before the leases go)."""
        ids = list(self._pending)
        if not ids:
            return
        results = await asyncio.wait_for(asyncio.gather(*(self._flush(i) for i in ids), return_exceptions=True),
                                         timeout)
        failed = [i for i, r in zip(ids, results) if isinstance(r, BaseException)]
        if failed:
            log.warning("could not write the rows of %d instances on shutdown (a takeover repairs them)",
                        len(failed))
