"""The History table: one partition per instance, one row per event, a sentinel row guarding checkpoints (§2)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from .account import StorageAccount
from .errors import SplitBrainError, guard
from .rows import (blob_columns, estimated_size, event_to_row, odata_literal, offload_large_properties, plain,
                   row_to_event, TIMESTAMP_COLUMN)
from .largemessages import LargeMessages
from .rawbatch import BatchFailed
from .names import SENTINEL_ROW_KEY, escape_key, history_row_key
from .schema import parse_time, utcnow

MAX_EVENTS_PER_BATCH = 99                  # + the sentinel = Azure's 100 operations per transaction
MAX_BATCH_BYTES = 3 * 1024 * 1024          # DTFx's estimated-size flush point (Azure's limit is 4 MB)
_DELETE_BATCH = 100
_DELETE_CONCURRENCY = 10
_CONFLICT = frozenset({404, 409, 412})
_READ_BACK_ATTEMPTS = 4                    # reads of a conflicting commit's last row (storage trouble)


_SCHEDULING_NAMES = frozenset({"TaskScheduled", "SubOrchestrationInstanceCreated", "TimerCreated", "EventSent"})


@dataclass
class TaskRecord:
    """`HistoryTable.task_record`: what an execution's history says about one task id."""
    current_execution: str | None = None
    scheduled: list[tuple[str, datetime | None]] = field(default_factory=list)
    answered: bool = False
    ended: bool = False


@dataclass
class HistorySnapshot:
    events: list[dict] = field(default_factory=list)
    execution_id: str | None = None
    etag: str | None = None
    last_checkpoint_time: datetime | None = None
    row_count: int | None = None      # event rows in the partition, every execution's (None: not all were read)


def _batches(rows: list[dict]) -> list[list[dict]]:
    """Split rows at 99 per batch or the 3 MB estimate; always at least one (possibly empty) batch."""
    batches: list[list[dict]] = [[]]
    size = 0
    for row in rows:
        row_size = estimated_size(row)
        if batches[-1] and (len(batches[-1]) >= MAX_EVENTS_PER_BATCH or size + row_size > MAX_BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(row)
        size += row_size
    return batches


def _row_count(rows: list[Any]) -> int:
    """One past the highest event RowKey (16 hex digits) among `rows`."""
    count = 0
    for row in rows:
        try:
            count = max(count, int(row["RowKey"], 16) + 1)
        except ValueError:
            continue
    return count


class HistoryTable:
    def __init__(self, account: StorageAccount, table_name: str, large_messages: LargeMessages):
        self.account = account
        self.table_name = table_name
        self.large_messages = large_messages
        self._client = None
        self._raw = None          # RawTableBatch, or False when the connection has no shared key

    @property
    def client(self):
        if self._client is None:
            self._client = self.account.table_service.get_table_client(self.table_name)
        return self._client

    async def _partition(self, instance_id: str, extra: str = "", select: list[str] | None = None) -> list[Any]:
        """All rows of the instance's partition (optionally filtered further), in RowKey order."""
        flt = f"PartitionKey eq {odata_literal(escape_key(instance_id))}" + extra
        return [e async for e in self.client.query_entities(flt, select=select)]

    @guard
    async def load(self, instance_id: str, execution_id: str | None = None) -> HistorySnapshot:
        """The current execution's events in RowKey order (large properties resolved).

        With `execution_id`, rows of other executions are not read; if the sentinel names another execution the
        snapshot has no events, that other execution_id and no etag (so an append would conflict)."""
        extra = ""
        if execution_id:
            extra = f" and (RowKey eq '{SENTINEL_ROW_KEY}' or ExecutionId eq {odata_literal(execution_id)})"
        rows = await self._partition(instance_id, extra)
        sentinel = rows.pop() if rows and rows[-1]["RowKey"] == SENTINEL_ROW_KEY else None
        current = (sentinel or (rows[0] if rows else {})).get("ExecutionId")
        snapshot = HistorySnapshot(execution_id=current, row_count=None if execution_id else _row_count(rows))
        if sentinel is not None:
            snapshot.etag = sentinel.metadata["etag"]
            snapshot.last_checkpoint_time = sentinel.get("CheckpointCompletedTimestamp")
        if execution_id and current and current.lower() != execution_id.lower():
            snapshot.etag = None
            return snapshot
        mine = []
        for row in rows:
            if row.get("ExecutionId") != current:
                break  # stale rows of an older execution follow
            mine.append(row)
        await self._restore_large_properties(mine)
        snapshot.events = [row_to_event(r) for r in mine]
        return snapshot

    async def _restore_large_properties(self, rows: list[Any]) -> None:
        jobs = [(row, prop, name) for row in rows for prop, name in blob_columns(row)]
        if not jobs:
            return
        texts = await asyncio.gather(*(self.large_messages.download(name) for _, _, name in jobs))
        for (row, prop, _), text in zip(jobs, texts):
            row[prop] = text

    @guard
    async def append(self, instance_id: str, execution_id: str, new_events: list[dict], start_index: int,
                     etag: str | None, *, final: bool = True, known_rows: int | None = None) -> str:
        """Write `new_events` as rows start_index.. plus the sentinel; returns the new sentinel ETag.

        The sentinel is inserted when `etag` is None, else merged If-Match `etag`; a conflict (another writer got
        there first) raises SplitBrainError. Rows are upserted as DTFx does, except those at or after
        `known_rows` (the partition's row count, when the caller knows it): those cannot exist yet and are
        inserted, which Azurite does several times faster; one that does exist fails the batch as a conflict."""
        pk = escape_key(instance_id)
        rows = [event_to_row(e, pk, history_row_key(start_index + i), execution_id) for i, e in enumerate(new_events)]
        insert_from = None if known_rows is None else history_row_key(max(known_rows, start_index))

        def new(row: dict) -> bool:   # fixed-width hex row keys sort like their numbers
            return insert_from is not None and row["RowKey"] >= insert_from
        uploads = [u for row in rows for u in offload_large_properties(row)]
        if uploads:
            await asyncio.gather(*(self.large_messages.upload(name, text) for name, text in uploads))
        batches = _batches(rows)
        for n, batch in enumerate(batches):
            done = final and n == len(batches) - 1
            sentinel = {"PartitionKey": pk, "RowKey": SENTINEL_ROW_KEY, "ExecutionId": execution_id,
                        "IsCheckpointComplete": done}
            if done:
                sentinel["CheckpointCompletedTimestamp"] = utcnow()
            if self._raw is None:
                self._raw = self.account.raw_batch(self.table_name) or False
            if self._raw:
                raw_ops = [("insert" if new(row) else "upsert", row, None) for row in batch]
                raw_ops.append(("insert", sentinel, None) if etag is None else ("merge", sentinel, etag))
                try:
                    etag = (await self._raw.submit(raw_ops))[-1]
                except BatchFailed as e:
                    if e.status_code in _CONFLICT:
                        raise await self._conflict(instance_id, e.status_code, batch[-1] if done else None) from e
                    raise
                continue
            ops: list[tuple] = [("create", row) if new(row) else ("upsert", row, {"mode": UpdateMode.REPLACE})
                                for row in batch]
            if etag is None:
                ops.append(("create", sentinel))
            else:
                ops.append(("update", sentinel, {"mode": UpdateMode.MERGE, "etag": etag,
                                                 "match_condition": MatchConditions.IfNotModified}))
            try:
                result = await self.client.submit_transaction(ops)
            except (TableTransactionError, HttpResponseError) as e:
                if e.status_code in _CONFLICT:
                    raise await self._conflict(instance_id, e.status_code, batch[-1] if done else None) from e
                raise
            etag = result[-1]["etag"]
        return etag

    async def _conflict(self, instance_id: str, status: int, last_row: dict | None) -> SplitBrainError:
        """A commit's batch conflicted. Usually another writer got there first; but a batch retried after a
        connection failure conflicts with its own first attempt when that one was applied. `committed` tells:
        True, the checkpoint's last row is in storage exactly as written (then its outbound messages stand);
        False, it is not; None, that row could not be read (storage trouble): nobody can tell."""
        err = SplitBrainError(f"history of '{instance_id}' was changed by another writer ({status})")
        err.committed = False
        if last_row is None:
            return err
        for attempt in range(_READ_BACK_ATTEMPTS):
            try:
                stored = await self.client.get_entity(last_row["PartitionKey"], last_row["RowKey"])
            except ResourceNotFoundError:
                return err
            except Exception:  # noqa: BLE001 - the connection trouble that made the batch retry: ask again
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            err.committed = (stored.get("ExecutionId") == last_row.get("ExecutionId")
                             and stored.get("EventType") == last_row.get("EventType")
                             and _time(stored.get(TIMESTAMP_COLUMN)) == _time(last_row.get(TIMESTAMP_COLUMN)))
            return err
        err.committed = None
        return err

    @guard
    async def task_record(self, instance_id: str, execution_id: str | None, task_id: int) -> "TaskRecord":
        """What the history holds about task `task_id` of an execution, in one query: the scheduling rows with
        that id (type and timestamp), whether a TaskCompleted/TaskFailed answers it, whether the execution ended,
        and the instance's current execution (the sentinel's)."""
        n = int(task_id)
        scope = f" and ExecutionId eq {odata_literal(execution_id)}" if execution_id else ""
        extra = (f" and (RowKey eq '{SENTINEL_ROW_KEY}' or ((EventId eq {n} or TaskScheduledId eq {n} or "
                 f"EventType eq 'ExecutionCompleted' or EventType eq 'ExecutionTerminated'){scope}))")
        rows = await self._partition(instance_id, extra, select=["RowKey", "EventType", "EventId",
                                                                 "TaskScheduledId", "ExecutionId",
                                                                 TIMESTAMP_COLUMN])
        record = TaskRecord()
        for row in rows:
            kind = row.get("EventType")
            if row["RowKey"] == SENTINEL_ROW_KEY:
                record.current_execution = row.get("ExecutionId")
            elif kind in ("TaskCompleted", "TaskFailed") and row.get("TaskScheduledId") == n:
                record.answered = True
            elif kind in ("ExecutionCompleted", "ExecutionTerminated"):
                record.ended = True
            elif row.get("EventId") == n and kind in _SCHEDULING_NAMES:
                record.scheduled.append((kind, parse_time(plain(row.get(TIMESTAMP_COLUMN)))))
        if record.current_execution is None and rows:
            record.current_execution = rows[0].get("ExecutionId")
        return record

    @guard
    async def sentinel_etag(self, instance_id: str) -> str | None:
        """The ETag of the instance's sentinel row (changes with every checkpoint); None when it has no history."""
        try:
            entity = await self.client.get_entity(escape_key(instance_id), SENTINEL_ROW_KEY,
                                                  select=["PartitionKey", "RowKey"])
        except ResourceNotFoundError:
            return None
        return entity.metadata["etag"]

    @guard
    async def delete_instance(self, instance_id: str) -> int:
        """Delete every row of the instance (all executions and the sentinel); returns the number deleted."""
        rows = await self._partition(instance_id, select=["PartitionKey", "RowKey"])
        keys = [{"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]} for r in rows]
        sem = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def delete_batch(batch: list[dict]) -> int:
            async with sem:
                try:
                    await self.client.submit_transaction([("delete", k) for k in batch])
                    return len(batch)
                except (TableTransactionError, ResourceNotFoundError) as e:
                    if e.status_code != 404:
                        raise
                return sum([await self._delete_one(k) for k in batch])
        batches = [keys[i:i + _DELETE_BATCH] for i in range(0, len(keys), _DELETE_BATCH)]
        return sum(await asyncio.gather(*(delete_batch(b) for b in batches)))

    async def _delete_one(self, key: dict) -> int:
        status: list[int] = []
        await self.client.delete_entity(key["PartitionKey"], key["RowKey"],
                                        raw_response_hook=lambda r: status.append(r.http_response.status_code))
        return 1 if status and status[-1] < 300 else 0

    @guard
    async def load_all_executions_raw(self, instance_id: str) -> list[dict]:
        """Every row of the instance as stored (all executions, sentinel last), values unwrapped."""
        rows = await self._partition(instance_id)
        return [{k: plain(v) for k, v in row.items()} for row in rows]


def _time(value):
    """A row's time as written (text, EdmType) or as read (datetime) -> datetime (None when absent)."""
    return parse_time(value[0] if isinstance(value, tuple) else value)
