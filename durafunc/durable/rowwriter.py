"""Instance-row writes of the engine, and the deletes of the messages they make safe.

History is the durable record of an orchestration; its Instances row is the view status queries read. A
checkpoint's messages are deleted only after its row is written: a crash before that leaves them in their queue,
and the host that gets them again finds them in history and repairs the row (see `episode.row_repair`).

A running instance's row changes are held up to `delay` seconds and merged into one write (so a short
orchestration writes its row once); the message deletes wait with them. Final states are written at once.

Writes are conditional (If-Match the row's ETag, or an insert for a row that does not exist), so two hosts can
never put a row behind its history: on a conflict the writer checks that the history sentinel is still the one
its checkpoint wrote; if it is, it writes again over the fresh row, and if it is not, a newer checkpoint (of
another host) owns the row and this write is dropped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..storage.errors import StorageUnavailableError

log = logging.getLogger("durafunc.engine")
_MAX_TRACKED = 10000
UNKNOWN = object()       # the row's ETag is not known here: read it before writing
MISSING = None           # the row does not exist: insert it

WriteFn = Callable[[str, dict, "str | None"], Awaitable["str | None"]]   # (iid, fields, etag) -> new etag | None
ReadEtagFn = Callable[[str], Awaitable["str | None"]]                     # iid -> row etag | None (no row)
SentinelFn = Callable[[str], Awaitable["str | None"]]                     # iid -> history sentinel etag | None
DoneFn = Callable[[list], Awaitable[None]]                                # called with the `after` items


@dataclass
class _Pending:
    fields: dict = field(default_factory=dict)
    after: list = field(default_factory=list)
    history_etag: Any = UNKNOWN       # the sentinel ETag the newest merged checkpoint wrote (None: no history)


class RowWriter:
    def __init__(self, write: WriteFn, read_etag: ReadEtagFn, sentinel: SentinelFn, done: DoneFn, *,
                 delay: float, refresh: float):
        self._write = write
        self._read_etag = read_etag
        self._sentinel = sentinel
        self._done = done                # deletes the messages a write made safe
        self.delay = delay               # how long a running instance's changes may wait
        self.refresh = refresh           # min seconds between writes that would change only the times
        self._pending: dict[str, _Pending] = {}
        self._etags: dict[str, Any] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, tuple[float, tuple]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.conflicts = 0               # writes dropped because a newer checkpoint owns the row

    def know(self, instance_id: str, etag: str | None) -> None:
        """The row's current ETag (None: there is no row), as just read or written by this host."""
        self._etags[instance_id] = etag
        if len(self._etags) > _MAX_TRACKED:
            for iid in [i for i in self._etags if i not in self._pending][: _MAX_TRACKED // 2]:
                del self._etags[iid]

    def etag(self, instance_id: str):
        return self._etags.get(instance_id, UNKNOWN)

    def holds(self, instance_id: str) -> bool:
        return instance_id in self._pending

    def writing(self, instance_id: str) -> bool:
        lock = self._locks.get(instance_id)
        return lock is not None and lock.locked()

    async def write(self, instance_id: str, fields: dict, *, final: bool, history_etag: Any = UNKNOWN,
                    after: list | None = None) -> None:
        """Merge `fields` into the instance's row (now if `final`, else within `delay`), then hand `after`
        to the done callback. `history_etag`: the sentinel ETag of the checkpoint these fields describe."""
        p = self._pending.setdefault(instance_id, _Pending())
        p.fields.update(fields)
        p.after.extend(after or [])
        if history_etag is not UNKNOWN:
            p.history_etag = history_etag
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
        self._timers.pop(instance_id, None)
        task = asyncio.get_running_loop().create_task(self._flush_held(instance_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_held(self, instance_id: str) -> None:
        try:
            await self._flush(instance_id)
        except StorageUnavailableError:
            self._hold(instance_id, max(self.delay, 1.0))
        except Exception:  # noqa: BLE001 - kept: the next change or a shutdown writes it again
            log.exception("could not write the row of instance %s", instance_id)
            self._hold(instance_id, max(self.delay, 1.0))

    async def _flush(self, instance_id: str) -> None:
        timer = self._timers.pop(instance_id, None)
        if timer is not None:
            timer.cancel()
        lock = self._locks.setdefault(instance_id, asyncio.Lock())
        async with lock:      # one write per instance at a time, in order: a final state is never overwritten
            p = self._pending.pop(instance_id, None)
            if p is None:
                return
            try:
                await self._write_now(instance_id, p)
            except BaseException:
                back = self._pending.setdefault(instance_id, _Pending())
                back.fields = {**p.fields, **back.fields}
                back.after = p.after + back.after
                if back.history_etag is UNKNOWN:
                    back.history_etag = p.history_etag
                raise
        if p.after:
            await self._done(p.after)
        if len(self._locks) > _MAX_TRACKED:
            for iid in [i for i, lk in self._locks.items() if not lk.locked()]:
                del self._locks[iid]

    async def _write_now(self, instance_id: str, p: _Pending) -> None:
        """Write, unless only the times would change and the row was written just now."""
        key = tuple(sorted((k, str(v)) for k, v in p.fields.items() if k != "LastUpdatedTime"))
        now = time.monotonic()
        last = self._written.get(instance_id)
        if last is not None and last[1] == key and now - last[0] < self.refresh:
            return
        etag = self._etags.get(instance_id, UNKNOWN)
        for _ in range(4):
            if etag is UNKNOWN:
                etag = await self._read_etag(instance_id)
            new = await self._write(instance_id, p.fields, etag)
            if new is not None:
                self._etags[instance_id] = new
                self._written[instance_id] = (now, key)
                if len(self._written) > _MAX_TRACKED:
                    self._written.clear()
                return
            # the row changed (a client, or another host) or does not exist as thought: is our checkpoint
            # still the newest?
            if p.history_etag is not UNKNOWN and p.history_etag is not None:
                if await self._sentinel(instance_id) != p.history_etag:
                    self.conflicts += 1
                    self._etags.pop(instance_id, None)
                    log.info("instance %s: its row is left to a newer checkpoint (another host)", instance_id)
                    return
            etag = UNKNOWN
        raise StorageUnavailableError(f"the row of instance {instance_id} kept changing while it was written")

    async def settle(self, instance_id: str) -> None:
        """Write this host's held change of the instance now and wait for a write in flight: before its row is
        read to be checked against its history (else the held write could land after a repair and put the row
        behind the history again). Raises StorageUnavailableError when the write cannot be made."""
        if instance_id in self._pending:
            await self._flush(instance_id)
        lock = self._locks.get(instance_id)
        if lock is not None and lock.locked():
            async with lock:
                pass
        if instance_id in self._pending:      # a write that failed meanwhile: kept, not done
            raise StorageUnavailableError(f"the row of instance {instance_id} could not be written yet")

    async def flush(self, instance_ids) -> None:
        """Write the held changes of these instances now (their partition is being given up)."""
        ids = [i for i in instance_ids if i in self._pending]
        if ids:
            await asyncio.gather(*(self._flush_held(i) for i in ids))

    async def flush_all(self, timeout: float = 5.0) -> list[str]:
        """Write every held change now (on shutdown, before the leases go); the instances not written."""
        ids = list(self._pending)
        if not ids:
            return []
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self._flush(i) for i in ids), return_exceptions=True), timeout)
        except asyncio.TimeoutError:
            results = [None if i not in self._pending else TimeoutError() for i in ids]
        failed = [i for i, r in zip(ids, results) if isinstance(r, BaseException)]
        if failed:
            log.warning("could not write the rows of %d instances on shutdown (their messages stay in their "
                        "queues; the next host repairs the rows)", len(failed))
        return failed

    def pending_after(self, instance_ids=None) -> list:
        """Items waiting for a write that has not happened (to release them when the write is given up)."""
        ids = self._pending if instance_ids is None else [i for i in instance_ids if i in self._pending]
        return [item for i in ids for item in self._pending[i].after]

    def drop(self, instance_ids) -> None:
        for iid in list(instance_ids):
            self._pending.pop(iid, None)
            timer = self._timers.pop(iid, None)
            if timer is not None:
                timer.cancel()
