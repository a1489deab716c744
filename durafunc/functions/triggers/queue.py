"""Storage queue triggers: one QueueListener per queue-triggered function, as the Queues extension listens.

`QueueListener` is also the engine of the blob trigger's shared queue (`azure-webjobs-blobtrigger-<host id>`):
the message handling (batches, visibility renewal, retries, poison queue) is the same there, only the function
call differs. Each run is logged by the host (`Executing 'Functions.f' (Reason='New queue message detected on 'q'.',
Id=...)`, `Trigger Details: MessageId: ..., DequeueCount: N, InsertedOn: ...`, `Executed ...`); the listener logs
what happens to the message (a poison move, a message that does not decode, storage trouble)."""
from __future__ import annotations

import asyncio
import logging
import json
import math
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta

from ...settings import QueuesOptions
from ..clients import StorageClients
from ..errors import BindingError
from ..expressions import json_properties
from ..model import Binding, FunctionInfo
from ..queues import (POISON_SUFFIX, MessageDecodeError, decode_body, resolve_queue_name, send_text, trigger_data,
                      trigger_metadata, trigger_value)
from .backoff import Backoff
from .base import ListenerError, Run, TriggerEvent, details_time

log = logging.getLogger("durafunc.queues")

# A received message stays hidden this long while its function runs, renewed every third of it (Azure: 10 min;
# shorter here so that the messages of a killed host come back soon).
RECEIVE_VISIBILITY = 30.0

Invoke = Callable[[str, meta.Datum, dict], Awaitable[None]]   # (function, body datum, trigger metadata)


@dataclass
class _Lease:
    """A received message's id and current pop receipt; renewals and the final delete/update take the lock."""
    id: str
    pop_receipt: str
    lock: asyncio.Lock
    done: bool = False


class QueueListener:
    """Runs one function for the messages of one queue, as the Queues extension's listener does: up to
    `batchSize` messages per receive, a new receive when `newBatchThreshold` or fewer still run, back-off between
    empty polls up to `maxPollingInterval`, delete on success, retry after `visibilityTimeout` on failure, the
    poison queue (`<queue>-poison`) after `maxDequeueCount` dequeues (or at once for a message that does not
    decode)."""

    def __init__(self, function: str, binding: Binding | None, queue: str, client, poison_client,
                 options: QueuesOptions, invoke: Invoke, *, visibility: float = RECEIVE_VISIBILITY,
                 conn: str = "", poison_name: str | None = None):
        self.function, self.binding, self.queue, self.conn = function, binding, queue, conn
        self.client, self.poison_client = client, poison_client
        self.poison_name = poison_name or queue + POISON_SUFFIX
        self.opt = options
        self.invoke = invoke
        self.visibility = visibility
        self.inflight: set[asyncio.Task] = set()
        self.stats = {"succeeded": 0, "failed": 0, "poisoned": 0}
        self.backoff = Backoff(options.max_polling_interval)
        self._slot = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"queue:{self.function}")

    def wake(self) -> None:
        """Poll now (a message was just written to this queue by this host)."""
        self.backoff.wake()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop receiving; let running invocations finish for up to `grace` seconds, then cancel them (their
        messages are made visible again)."""
        self._stopping = True
        self.backoff.wake()
        self._slot.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stopping anyway
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self.inflight:
            _, pending = await asyncio.wait(set(self.inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # -- what a subclass may change --------------------------------------------------------------------------
    def poison_target(self, text: str):
        """The queue client a message that failed too often is copied to."""
        return self.poison_client

    # -- polling -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        await self._ensure_queue()
        while not self._stopping:
            while len(self.inflight) > self.opt.batch_threshold and not self._stopping:
                self._slot.clear()
                await self._slot.wait()
            if self._stopping:
                break
            self.backoff.clear()
            messages = await self._receive()
            if messages:
                self.backoff.reset()
                for m in messages:
                    task = asyncio.get_running_loop().create_task(self._process(m))
                    self.inflight.add(task)
                    task.add_done_callback(self._done)
                continue                        # a message was seen: poll again at once
            await self.backoff.wait()

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:     # a bug here, not in user code
            log.error("Queue '%s': processing a message failed", self.queue, exc_info=task.exception())

    async def _ensure_queue(self) -> None:
        backoff = Backoff(max(self.opt.max_polling_interval, 1.0))
        while not self._stopping:
            try:
                with suppress(ResourceExistsError):
                    await self.client.create_queue()
                return
            except Exception as e:  # noqa: BLE001 - storage not reachable yet: keep trying
                self._report(e)
                self.backoff.clear()
                await backoff.wait()

    async def _receive(self) -> list:
        try:
            pages = self.client.receive_messages(messages_per_page=self.opt.batch_size,
                                                 visibility_timeout=max(1, math.ceil(self.visibility)))
            try:
                page = await pages.by_page().__anext__()
            except StopAsyncIteration:
                return []
            messages = [m async for m in page]
        except ResourceNotFoundError:
            await self._ensure_queue()             # the queue was deleted under us: Azure's listener recreates it
            return []
        except Exception as e:  # noqa: BLE001 - storage hiccup: back off and poll again
            self._report(e)
            return []
        self._last_error = None
        return messages

    def _report(self, e: Exception) -> None:
        text = f"{type(e).__name__}: {e}".splitlines()[0]
        if text != self._last_error:
            log.warning("Queue listener of function '%s' on queue '%s': %s", self.function, self.queue, text)
        self._last_error = text

    # -- one message -----------------------------------------------------------------------------------------
    async def _process(self, m) -> None:
        lease = _Lease(m.id, m.pop_receipt, asyncio.Lock())
        text = m.content or ""
        count = int(m.dequeue_count or 0)
        try:
            body = decode_body(text, self.opt.message_encoding)
        except MessageDecodeError:
            log.warning("Message decoding has failed! Check MessageEncoding settings (%s). MessageId=%s.",
                        self.opt.message_encoding, m.id)
            await self._poison(lease, text, decoded=False)
            return
        if count > self.opt.max_dequeue_count:      # came back after a host stopped during its last attempt
            await self._poison(lease, text)
            return
        data = trigger_data(body, self.binding)
        renew = asyncio.get_running_loop().create_task(self._keep_hidden(lease))
        error: BaseException | None = None
        try:
            await self.invoke(self.function, data, trigger_metadata(m, data))
        except asyncio.CancelledError:
            await self._finish(lease, renew)
            with suppress(Exception):
                await asyncio.wait_for(self._release(lease, 0), 2)
            raise
        except Exception as e:  # noqa: BLE001 - user code (or its output bindings) failed: the host logged it
            error = e
        await self._finish(lease, renew)
        if error is None:
            self.stats["succeeded"] += 1
            await self._storage("delete", self.client.delete_message(lease.id, lease.pop_receipt))
            return
        self.stats["failed"] += 1
        if count >= self.opt.max_dequeue_count:
            await self._poison(lease, text)
        else:
            await self._release(lease, self.opt.visibility_timeout)

    async def _keep_hidden(self, lease: _Lease) -> None:
        """Renew the visibility of a message whose function runs long, so that no one else receives it."""
        period = max(1.0, self.visibility / 3)
        while True:
            await asyncio.sleep(period)
            async with lease.lock:
                if lease.done:
                    return
                try:
                    updated = await self.client.update_message(lease.id, lease.pop_receipt,
                                                               visibility_timeout=max(1, math.ceil(self.visibility)))
                    lease.pop_receipt = updated.pop_receipt
                except Exception as e:  # noqa: BLE001 - try again next period
                    log.debug("could not renew message %s of queue %s: %s", lease.id, self.queue, e)

    @staticmethod
    async def _finish(lease: _Lease, renew: asyncio.Task) -> None:
        async with lease.lock:
            lease.done = True
        renew.cancel()
        await asyncio.gather(renew, return_exceptions=True)

    async def _release(self, lease: _Lease, seconds: float) -> None:
        """Make the message visible again after `seconds` (host.json visibilityTimeout) for its next attempt."""
        await self._storage("update", self.client.update_message(lease.id, lease.pop_receipt,
                                                                 visibility_timeout=math.ceil(seconds)))

    async def _poison(self, lease: _Lease, text: str, decoded: bool = True) -> None:
        """Copy the message's text as it is to the poison queue (created if missing), then delete it."""
        reason = f"Message has reached MaxDequeueCount of {self.opt.max_dequeue_count}. " if decoded else ""
        log.warning("%sMoving message to queue '%s'.", reason, self.poison_name)
        self.stats["poisoned"] += 1
        if await self._storage("copy to poison queue", send_text(self.poison_target(text), text)):
            await self._storage("delete", self.client.delete_message(lease.id, lease.pop_receipt))

    async def _storage(self, what: str, call: Awaitable) -> bool:
        try:
            await call
            return True
        except ResourceNotFoundError:
            return True                            # already gone (deleted, or its pop receipt changed)
        except Exception as e:  # noqa: BLE001 - the message comes back after its visibility timeout
            log.warning("Queue '%s': could not %s a message: %s: %s", self.queue, what, type(e).__name__, e)
            return False


# -- queue-triggered functions ----------------------------------------------------------------------------------

def message_details(metadata: dict[str, meta.Datum]) -> str:
    """The Queues extension's trigger details of a message: `MessageId: <id>, DequeueCount: N, InsertedOn: <time>`
    (from its trigger metadata)."""
    inserted = metadata.get("InsertionTime")
    when = datetime.fromisoformat(json.loads(inserted.value)) if inserted is not None else None
    count = metadata["DequeueCount"].value if "DequeueCount" in metadata else 0
    return f"MessageId: {metadata['Id'].value}, DequeueCount: {count}, InsertedOn: {details_time(when)}"


def queue_event(data: meta.Datum, metadata: dict[str, meta.Datum], queue: str = "") -> TriggerEvent:
    """The event of one message of `queue`: its trigger metadata, and as binding data the metadata values and
    the properties of a JSON payload (`{queueTrigger}`, `{id}`, `{DequeueCount}`, `{orderId}`)."""
    binding_data: dict[str, Any] = json_properties(data.value)
    binding_data.update({k: v.python_value for k, v in metadata.items()})
    return TriggerEvent(data, metadata, binding_data, decode=trigger_value,
                        reason=f"New queue message detected on '{queue}'.", details=message_details(metadata))


class QueueTriggers:
    """The queue listeners of one app: one per queue-triggered function."""

    kind = "queue"

    def __init__(self, clients: StorageClients, options: QueuesOptions, env, *,
                 visibility: float = RECEIVE_VISIBILITY):
        self.clients, self.opt, self.env, self.visibility = clients, options, env, visibility

    def build_all(self, functions: list[FunctionInfo], run: Run) -> tuple[list, dict[str, str]]:
        listeners, errors = [], {}
        for fn in functions:
            try:
                listeners.append(self.build(fn, run))
            except BindingError as e:
                errors[fn.name] = str(e) if "(the function does not listen)" in str(e) else \
                    f"{e} (the function does not listen)"
        return listeners, errors

    def build(self, fn: FunctionInfo, run: Run) -> QueueListener:
        b = fn.trigger
        queue = resolve_queue_name(b.raw.get("queueName", b.raw.get("queue_name")), self.env,
                                   f"function '{fn.name}'")
        try:
            conn = self.clients.resolve(b.raw.get("connection"))
        except BindingError as e:            # a missing connection setting
            raise ListenerError(f"function '{fn.name}': {e} (the function does not listen)") from None

        async def invoke(name: str, data: meta.Datum, metadata: dict) -> None:
            await run(name, queue_event(data, metadata, queue))

        return QueueListener(fn.name, b, queue, self.clients.queue(conn, queue),
                             self.clients.queue(conn, queue + POISON_SUFFIX), self.opt, invoke,
                             visibility=self.visibility, conn=conn)
