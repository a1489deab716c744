"""A task hub read whole through the real storage: every Instances row and every History row (all executions).
The dataclasses are pure (the checker's unit tests build them by hand); `read_snapshot` does the reading."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from durafunc.durable.entities import EntityState
from durafunc.storage.instances import InstanceRow, row_from_entity
from durafunc.storage.messages import decode_message
from durafunc.storage.names import SENTINEL_ROW_KEY, unescape_key
from durafunc.storage.queues import POISON_SUFFIX
from durafunc.storage.rows import blob_columns, plain, row_to_event
from durafunc.storage.taskhub import TaskHub

EXECUTION = "ExecutionId"   # the key each event of a snapshot carries: the execution its row belongs to


@dataclass
class InstanceRecord:
    instance_id: str
    row: InstanceRow | None = None
    events: list[dict] = field(default_factory=list)    # wire-form events in row order, each with "ExecutionId"
    rows: list[int] = field(default_factory=list)       # the row index of each event (RowKey as a number)
    sentinel_execution: str | None = None               # the ExecutionId the sentinel row names

    @property
    def current_execution(self) -> str | None:
        if self.sentinel_execution:
            return self.sentinel_execution
        return self.events[0].get(EXECUTION) if self.events else None

    def executions(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for e in self.events:
            out.setdefault(e.get(EXECUTION) or "", []).append(e)
        return out

    def current_events(self) -> list[dict]:
        cur = self.current_execution
        return [e for e in self.events if e.get(EXECUTION) == cur]


@dataclass
class Poisoned:
    """A message found in a `-poison` queue: an event the hub gave up on."""
    queue: str
    instance_id: str | None
    event: dict | None        # the TaskMessage's event (None when the text is not a message at all)
    text: str


@dataclass
class Snapshot:
    instances: dict[str, InstanceRecord] = field(default_factory=dict)   # orchestrations (ids not starting '@')
    entities: dict[str, object] = field(default_factory=dict)             # '@name@key' -> parsed state (or None)
    entity_history: dict[str, InstanceRecord] = field(default_factory=dict)   # entities' rows/history, if any
    poisoned: list[Poisoned] = field(default_factory=list)

    def record(self, instance_id: str) -> InstanceRecord:
        """The record of an id; an entity's ('@...') lives apart: the orchestration rules are not for it."""
        where = self.entity_history if instance_id.startswith("@") else self.instances
        rec = where.get(instance_id)
        if rec is None:
            rec = where[instance_id] = InstanceRecord(instance_id)
        return rec


def entity_state(row: InstanceRow | None):
    """The entity's state as the app set it (None when the entity has no state)."""
    state = EntityState.from_row_input(row.input if row else None)
    if not state.exists or state.state is None:
        return None
    try:
        return json.loads(state.state)
    except ValueError:
        return state.state


async def read_snapshot(hub: TaskHub) -> Snapshot:
    snap = Snapshot()
    history = [e async for e in hub.history.client.list_entities()]
    # large properties live in blobs: restore them as the engine does
    jobs = [(row, prop, name) for row in history for prop, name in blob_columns(row)]
    texts = await asyncio.gather(*(hub.large_messages.download(name) for _, _, name in jobs))
    for (row, prop, _), text in zip(jobs, texts):
        row[prop] = text
    for row in sorted(history, key=lambda r: (r["PartitionKey"], r["RowKey"])):
        rec = snap.record(unescape_key(row["PartitionKey"]))
        if row["RowKey"] == SENTINEL_ROW_KEY:
            rec.sentinel_execution = plain(row.get("ExecutionId"))
            continue
        event = row_to_event(dict(row))
        event[EXECUTION] = plain(row.get("ExecutionId"))
        rec.events.append(event)
        rec.rows.append(int(row["RowKey"], 16))
    snap.poisoned = await read_poison_queues(hub)
    for entity in [e async for e in hub.instances.client.list_entities()]:
        row = row_from_entity(entity)
        if any(hub.large_messages.is_blob_url(v) for v in (row.input, row.output)) or blob_columns(entity):
            row = await hub.instances.get(row.instance_id) or row
        if row.instance_id.startswith("@"):
            snap.entities[row.instance_id] = entity_state(row)
        snap.record(row.instance_id).row = row
    return snap


async def read_poison_queues(hub: TaskHub, limit: int = 32) -> list[Poisoned]:
    """Peek (without taking them) at most `limit` messages of each of the hub's `-poison` queues."""
    service = hub.account.queue_service
    names = [q.name async for q in service.list_queues(name_starts_with=hub.names.hub.lower() + "-")
             if q.name.endswith(POISON_SUFFIX)]
    out = []
    for name in sorted(names):
        for m in await service.get_queue_client(name).peek_messages(max_messages=limit):
            text = m.content if isinstance(m.content, str) else bytes(m.content).decode("utf-8", "replace")
            try:
                data = decode_message(text)
                out.append(Poisoned(name, data.instance_id if data.task_message else None,
                                    data.event if data.task_message else None, text))
            except ValueError:
                out.append(Poisoned(name, None, None, text))
    return out
