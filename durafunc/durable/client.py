"""Client operations on a task hub: start, raise, terminate, suspend, resume, rewind, query, purge.

Storage-level: these work with or without a running engine. When an engine runs in this process it is
used to hand messages over at once; otherwise the messages wait in the queues for whichever host owns them.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from ..storage.errors import StorageUnavailableError
from ..storage.instances import InstanceRow
from ..storage.schema import ACTIVE_STATUSES, EventType, OrchestrationStatus, TERMINAL_STATUSES, format_time, utcnow
from ..storage.taskhub import TaskHub
from . import events as ev

Status = OrchestrationStatus
INVALID_ID_CHARS = set("/\\#?")
MAX_INSTANCE_ID_LENGTH = 100
HIDDEN_UNTIL_ROW = 10.0     # a start message sent before its row shows up after this if nobody says so sooner


class ClientError(Exception):
    """A request that cannot be done; `status` is the HTTP status the webhook API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(ClientError):
    def __init__(self, instance_id: str):
        super().__init__(f"No instance with ID '{instance_id}' found.", 404)


class Gone(ClientError):
    def __init__(self, message: str):
        super().__init__(message, 410)


def validate_instance_id(instance_id: str) -> None:
    """Durable Functions' rules for instance ids (same texts)."""
    if not instance_id or not instance_id.strip():
        raise ClientError("Instance ID must not be empty.")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise ClientError(f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters.")
    if instance_id.startswith("@"):
        raise ClientError("Orchestration instance ids must not start with @.")
    if any(c in INVALID_ID_CHARS or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in instance_id):
        raise ClientError(f"Instance ID '{instance_id}' contains invalid characters. Instance IDs must not "
                          "contain /, \\, #, ?, or control characters.")


def new_instance_id() -> str:
    return uuid.uuid4().hex


@dataclass
class PurgeResult:
    instances_deleted: int
    rows_deleted: int


class DurableClient:
    def __init__(self, hub: TaskHub, engine=None):
        self.hub = hub
        self.engine = engine

    async def _send(self, instance_id: str, message: dict) -> None:
        """Send a message to an instance; the engine of this process hands it over at once when it runs it."""
        if self.engine is not None and self.engine.running:
            sent = await self.engine.outbox.to_instance(instance_id, message)
            self.engine.outbox.release([sent])
        else:
            await self.hub.control_queue_for(instance_id).send(message)

    async def _status(self, instance_id: str) -> Status:
        """The instance's runtime status: from the engine's memory when it runs the instance here."""
        if self.engine is not None:
            cached = self.engine.cached_status(instance_id)
            if cached is not None:
                return cached
        return (await self.require(instance_id)).runtime_status

    async def get(self, instance_id: str) -> InstanceRow | None:
        return await self.hub.instances.get(instance_id)

    async def require(self, instance_id: str) -> InstanceRow:
        row = await self.get(instance_id)
        if row is None:
            raise NotFound(instance_id)
        return row

    async def start_new(self, name: str, instance_id: str | None = None, input_value=None, *,
                        has_input: bool | None = None, scheduled_start: datetime | None = None) -> str:
        """Start orchestrator `name`. `input_value` is the decoded HTTP body, as the Durable extension takes
        it: the Python SDK client sends its input as JSON text, so a str here is JSON text (None: no input)."""
        generated = instance_id is None
        instance_id = instance_id or new_instance_id()
        validate_instance_id(instance_id)
        existing = None if generated else await self.get(instance_id)
        if existing is not None and existing.runtime_status in ACTIVE_STATUSES | {Status.ContinuedAsNew}:
            raise ClientError(f"An Orchestration instance with the status {existing.runtime_status.name} already "
                              f"exists.", 409)
        has_input = input_value is not None if has_input is None else has_input
        stored = json.dumps(input_value) if has_input else None
        now = utcnow()
        execution_id = uuid.uuid4().hex
        generation = (existing.generation or 0) + 1 if existing is not None else 0
        started = ev.execution_started(now, instance_id=instance_id, execution_id=execution_id, name=name,
                                       input=stored, generation=generation, scheduled_start=scheduled_start)
        message = ev.task_message(started, instance_id, execution_id)
        row = InstanceRow(instance_id=instance_id, name=name, version="", input=stored, output=None,
                          custom_status="null", runtime_status=Status.Pending, created_time=now,
                          last_updated_time=now, completed_time=None, execution_id=execution_id,
                          generation=generation, scheduled_start_time=scheduled_start, tags=None, worker=None,
                          etag=existing.etag if existing is not None else None)
        # 1. the start message (DTFx's order: a crash before the row is written leaves a message the engine
        #    discards once it sees no row names it; never a row without its message)
        delay = max(0.0, (scheduled_start - now).total_seconds()) if scheduled_start is not None else 0.0
        engine = self.engine if self.engine is not None and self.engine.running else None
        queue = self.hub.control_queue_for(instance_id)
        if engine is not None:
            sent = await engine.outbox.to_instance(instance_id, message, delay=delay, hold=True)
            queued = sent.item
        else:
            sent = None
            queued = await queue.send(message, visibility_timeout=min(delay or HIDDEN_UNTIL_ROW, 6 * 86400))
        # 2. the row, inserted (or the previous generation's replaced If-Match): whoever writes it first wins
        if not await self.hub.instances.insert(row):
            current = await self.get(instance_id)
            if current is None or current.execution_id != execution_id:
                try:
                    await queue.delete(queued)
                except StorageUnavailableError:
                    pass      # the engine drops it: no row names its execution
                status = current.runtime_status.name if current is not None and current.runtime_status else "Pending"
                raise ClientError(f"An Orchestration instance with the status {status} already exists.", 409)
            row.etag = current.etag        # our insert went through (its answer was lost and retried)
        # 3. let it be seen: handed over to this host's engine if it runs the instance, else shown in its queue
        if sent is not None:
            sent.item.row_checked, sent.item.row, sent.item.fresh = True, row, generated
            engine.outbox.release([sent])
        elif not delay:
            try:
                await queue.set_visibility(queued, 0)
            except StorageUnavailableError:
                pass      # it shows up by itself in HIDDEN_UNTIL_ROW seconds
        return instance_id

    async def raise_event(self, instance_id: str, event_name: str, value=None) -> None:
        if not event_name:
            raise ClientError("Event name must not be empty.")
        if await self._status(instance_id) in TERMINAL_STATUSES:
            raise Gone(f"Instance with ID {instance_id} is gone: either completed or failed")
        e = ev.event_raised(utcnow(), event_name, json.dumps(value))
        await self._send(instance_id, ev.task_message(e, instance_id, None))

    async def terminate(self, instance_id: str, reason: str | None = None) -> InstanceRow:
        row = await self.require(instance_id)
        if row.runtime_status in TERMINAL_STATUSES:
            raise Gone(f"Instance with ID {instance_id} is gone: it is {row.runtime_status.name}.")
        await self._send(instance_id, ev.task_message(ev.execution_terminated(utcnow(), reason), instance_id, None))
        return row

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        """As the Durable extension: a finished instance is gone (410); only a Running, Pending or ContinuedAsNew
        one can be suspended, else InvalidOperationException (500) and the host's warning line."""
        await self._switch(instance_id, "suspend", {Status.Running, Status.Pending, Status.ContinuedAsNew},
                           ev.execution_suspended(utcnow(), reason))

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        """Only a Suspended instance can be resumed (else 410 when finished, 500 and the host's warning line
        otherwise, as the Durable extension). Its status output becomes the resume reason (the engine writes it),
        as a suspend's is the suspend reason."""
        await self._switch(instance_id, "resume", {Status.Suspended}, ev.execution_resumed(utcnow(), reason))

    async def _switch(self, instance_id: str, verb: str, allowed: set, event: dict) -> None:
        """Suspend or resume: in an allowed state, send `event`; else the Durable extension's answer."""
        import logging
        row = await self.require(instance_id)
        status = await self._status(instance_id)
        if status in TERMINAL_STATUSES:
            raise Gone(f"Instance with ID {instance_id} is gone: it is {status.name}.")
        if status not in allowed:
            logging.getLogger("durafunc.client").warning(
                "Cannot %s orchestration instance in the %s state. InstanceId: %s. Function: %s. HubName: %s.",
                verb, status.name, instance_id, row.name, self.hub.hub_name)
            error = ClientError(f"Cannot {verb} the orchestration instance {instance_id} because instance is in "
                                f"the {status.name} state.", 500)
            error.exc_type = "System.InvalidOperationException"
            raise error
        await self._send(instance_id, ev.task_message(event, instance_id, None))

    async def rewind(self, instance_id: str, reason: str | None = None) -> None:
        """Only a Failed instance can be rewound: a Completed, Terminated or Canceled one is gone (410), a
        running one gets the extension's InvalidOperationException (500)."""
        row = await self.require(instance_id)
        if row.runtime_status != Status.Failed:
            message = "The rewind operation is only supported on failed orchestration instances."
            if row.runtime_status in TERMINAL_STATUSES:
                raise Gone(message)
            error = ClientError(message, 500)
            error.exc_type = "System.InvalidOperationException"
            raise error
        e = {"EventType": int(EventType.ExecutionRewound), "EventId": -1, "IsPlayed": False,
             "Timestamp": format_time(utcnow()), "Reason": reason, "ParentExecutionId": None,
             "InstanceId": None, "ParentTraceContext": None}
        await self._send(instance_id, ev.task_message(e, instance_id, None))
        # Pending until the engine takes it, unless the engine has written the row already (If-Match the Failed row)
        await self.hub.instances.write(instance_id, {"RuntimeStatus": "Pending", "LastUpdatedTime": utcnow()},
                                       row.etag)

    async def signal_entity(self, name: str, key: str, operation: str, input_text: str | None = None) -> None:
        """Send an operation to entity `@name@key` (created on first use). `input_text` is the JSON text of
        the operation's input (what the SDK's client sends), or None."""
        from .entities import REQUEST_EVENT, entity_instance_id, request_message
        if not name or key is None:
            raise ClientError("Entity name and key must not be empty.")
        iid = entity_instance_id(name, key)
        text = input_text
        e = ev.event_raised(utcnow(), REQUEST_EVENT, json.dumps(request_message(operation or "", text, signal=True)))
        await self._send(iid, ev.task_message(e, iid, None))

    async def read_entity(self, name: str, key: str):
        """(exists, state JSON text) of entity `@name@key`."""
        from .entities import EntityState, entity_instance_id
        row = await self.get(entity_instance_id(name, key))
        state = EntityState.from_row_input(row.input if row else None)
        return state.exists, state.state

    async def history(self, instance_id: str) -> list[dict]:
        snap = await self.hub.history.load(instance_id)
        return snap.events

    async def purge(self, instance_id: str, *, force: bool = False) -> PurgeResult:
        row = await self.get(instance_id)
        if row is None:
            return PurgeResult(0, 0)
        if not force and row.runtime_status in ACTIVE_STATUSES:
            raise ClientError(f"Instance '{instance_id}' is {row.runtime_status.name}: terminate it first, then "
                              "purge it.", 409)
        rows = await self.hub.history.delete_instance(instance_id)
        await self.hub.instances.delete(instance_id)
        await self.hub.large_messages.delete_instance_blobs(instance_id)
        return PurgeResult(1, rows + 1)

    async def purge_by(self, *, created_from: datetime | None = None, created_to: datetime | None = None,
                       statuses: list[Status] | None = None, progress=None) -> PurgeResult:
        token, total, rows = None, 0, 0
        while True:
            batch, token = await self.hub.instances.query(created_from=created_from, created_to=created_to,
                                                          statuses=statuses, top=100, continuation=token)
            results = await asyncio.gather(*(self.purge(r.instance_id, force=True) for r in batch))
            for r in results:
                total += r.instances_deleted
                rows += r.rows_deleted
            if progress is not None and batch:
                progress(len(batch))
            if not token:
                return PurgeResult(total, rows)

    async def wait_for(self, instance_id: str, timeout: float, interval: float = 0.05,
                       until=TERMINAL_STATUSES) -> InstanceRow | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await self.get(instance_id)
            if row is not None and row.runtime_status in until:
                return row
            if loop.time() >= deadline:
                return row
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.5)
