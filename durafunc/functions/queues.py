"""Storage queue triggers and queue output bindings, as the Functions host and the Python worker do them.

The pure part turns queue messages into what a function sees (`func.QueueMessage` built by the SDK's own
converter from the trigger metadata the host sends, or the text for a `str`/`bytes` parameter) and output values
into message bodies (the SDK's `QueueMessageOutConverter`), with the host.json `messageEncoding`. `QueueListener`
polls one queue for one function (batches, concurrency, back-off, visibility renewal, poison queue);
`QueueBindings` owns the listeners of an app, the storage clients, and writes queue output bindings.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import re
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter

from ..settings import QueuesOptions, SettingsError, _ci_get, _expand_app_settings, expand_connection_string
from .model import Binding, FunctionInfo, LoadedApp

log = logging.getLogger("durafunc.queues")

POISON_SUFFIX = "-poison"
DEFAULT_CONNECTION = "AzureWebJobsStorage"
CONNECTION_PREFIX = "AzureWebJobs"
# A received message stays hidden this long while its function runs, renewed every third of it (Azure: 10 min;
# shorter here so that the messages of a killed host come back soon).
RECEIVE_VISIBILITY = 30.0
MIN_POLL = 0.1                       # seconds: the first wait after an empty poll (Azure's minimum)
QUEUE_NAME_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class QueueBindingError(Exception):
    """A queue binding that cannot work (missing connection setting, bad queue name); str() is one line."""


class MessageDecodeError(ValueError):
    """A message that is not what `messageEncoding` says (not base64)."""


# -- pure: names and connections ----------------------------------------------------------------------

def resolve_queue_name(raw: Any, env: Mapping[str, str], where: str) -> str:
    """`queueName` with `%AppSetting%` expanded, lower-cased and checked as the Queues extension does."""
    if not isinstance(raw, str) or not raw:
        raise QueueBindingError(f"{where}: 'queueName' is required")
    try:
        name = _expand_app_settings(raw, env, where)
    except SettingsError as e:
        raise QueueBindingError(str(e)) from None
    name = name.lower()
    if not QUEUE_NAME_RE.match(name):
        raise QueueBindingError(f"{where}: invalid queue name '{name}': 3-63 lower-case letters, digits and "
                                "single hyphens, starting and ending with a letter or digit")
    return name


def _setting(env: Mapping[str, str], name: str) -> str | None:
    """An app setting by name, case-insensitively (as IConfiguration reads them); empty counts as missing."""
    return _ci_get(env, name) or None


def resolve_connection(connection: Any, env: Mapping[str, str]) -> tuple[str, str]:
    """The binding's `connection` -> (setting name used, connection string), as the WebJobs SDK resolves it:
    `AzureWebJobs<name>` first, then `<name>`; empty or absent means `AzureWebJobsStorage`."""
    name = str(connection or "").strip()
    candidates = [DEFAULT_CONNECTION] if not name else [CONNECTION_PREFIX + name, name]
    for candidate in candidates:
        value = _setting(env, candidate)
        if value:
            return candidate, expand_connection_string(value)
    raise QueueBindingError(f"Storage account connection string '{candidates[0]}' does not exist. Make sure that "
                            "it is a defined App Setting.")


# -- pure: message bodies --------------------------------------------------------------------------------

def decode_body(text: str, encoding: str) -> bytes:
    """The bytes of a received message: base64-decoded (whitespace ignored, as .NET does), or the UTF-8 of the
    text for `none`. Raises MessageDecodeError when a base64 queue holds something else."""
    if encoding == "none":
        return text.encode("utf-8")
    compact = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise MessageDecodeError("the message is not valid base64 (messageEncoding is base64)") from None


def encode_body(body: bytes | str, encoding: str) -> str:
    """The text to send for a message body: base64 of its bytes, or the text itself for `none`."""
    if encoding == "none":
        if isinstance(body, (bytes, bytearray)):
            try:
                return bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("a bytes queue message must be UTF-8 text when messageEncoding is none") from None
        return body
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return base64.b64encode(raw).decode("ascii")


def trigger_data(body: bytes, binding: Binding | None = None) -> meta.Datum:
    """The trigger value the host sends: the body as text (`string`), or `bytes` when the binding's dataType is
    binary or the body is not UTF-8 text."""
    if binding is not None and str(binding.raw.get("dataType", "")).lower() == "binary":
        return meta.Datum(body, "bytes")
    try:
        return meta.Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        return meta.Datum(body, "bytes")


def _time(value: datetime | None) -> meta.Datum | None:
    # the host sends DateTimeOffset metadata as JSON strings ("2024-05-01T10:00:00+00:00")
    return meta.Datum(json.dumps(value.isoformat()), "json") if value is not None else None


def trigger_metadata(message: Any, data: meta.Datum) -> dict[str, meta.Datum]:
    """The queue trigger's metadata (Id, DequeueCount, ExpirationTime, InsertionTime, NextVisibleTime,
    PopReceipt, QueueTrigger) for a received message (azure.storage.queue's QueueMessage or alike)."""
    md = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(int(message.dequeue_count or 0), "int"),
        "ExpirationTime": _time(message.expires_on),
        "InsertionTime": _time(message.inserted_on),
        "NextVisibleTime": _time(message.next_visible_on),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
        "QueueTrigger": meta.Datum(data.value if data.type == "string" else
                                   data.value.decode("utf-8", errors="replace"), "string"),
    }
    return {k: v for k, v in md.items() if v is not None}


def trigger_value(data: meta.Datum, metadata: Mapping[str, meta.Datum], pytype: Any) -> Any:
    """What the function's parameter gets, as the Python worker decides: a `str` or `bytes` annotation uses the
    generic binding (the value as sent), anything else the SDK's QueueMessageInConverter (a func.QueueMessage)."""
    if pytype in (str, bytes):
        return data.value
    return QueueMessageInConverter.decode(data, trigger_metadata=dict(metadata))


def output_messages(value: Any, pytype: Any = None) -> list[str | bytes]:
    """The message bodies an output value stands for, converted as the Python worker and the host do: `None`
    writes nothing; a parameter annotated `str`/`bytes` takes the generic binding (str or bytes only); else the
    SDK's QueueMessageOutConverter (str, bytes, func.QueueMessage, or a list of str / func.QueueMessage)."""
    if value is None:
        return []
    if pytype in (str, bytes):
        if isinstance(value, str):
            datum = meta.Datum(value, "string")
        elif isinstance(value, (bytes, bytearray)):
            datum = meta.Datum(bytes(value), "bytes")
        else:
            raise TypeError(f'unable to encode outgoing TypedData: unsupported type "generic" for Python type '
                            f'"{type(value).__name__}"')
    else:
        try:
            datum = QueueMessageOutConverter.encode(value, expected_type=pytype)
        except NotImplementedError:
            raise TypeError(f'unable to encode outgoing TypedData: unsupported type "queue" for Python type '
                            f'"{type(value).__name__}"') from None
    if datum is None or datum.value is None:
        return []
    if datum.type in ("string", "bytes"):
        return [datum.value]
    parsed = json.loads(datum.value)            # 'json': one func.QueueMessage, or a list
    items = parsed if isinstance(parsed, list) else [parsed]
    return [item["body"] if isinstance(item, dict) and "body" in item else
            item if isinstance(item, str) else json.dumps(item) for item in items]


def next_delay(previous: float | None, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """Randomized exponential back-off between empty polls: ~100 ms, doubling, at most `maximum`."""
    base = MIN_POLL if previous is None else min(maximum, previous * 2)
    return min(maximum, max(MIN_POLL, base * (0.8 + 0.4 * rand())))


# -- storage helpers ---------------------------------------------------------------------------------------

async def _send_text(client, text: str) -> None:
    """Send one message (the service's default time to live); a missing queue is created and the send repeated."""
    try:
        await client.send_message(text)
    except ResourceNotFoundError:
        with suppress(ResourceExistsError):
            await client.create_queue()
        await client.send_message(text)


@dataclass
class _Lease:
    """A received message's id and current pop receipt; renewals and the final delete/update take the lock."""
    id: str
    pop_receipt: str
    lock: asyncio.Lock
    done: bool = False


Invoke = Callable[[str, meta.Datum, dict], Awaitable[None]]


class QueueListener:
    """Runs one queue-triggered function for the messages of one queue, as the Queues extension's listener does:
    up to `batchSize` messages per receive, a new receive when `newBatchThreshold` or fewer still run, back-off
    between empty polls up to `maxPollingInterval`, delete on success, retry after `visibilityTimeout` on failure,
    `<queue>-poison` after `maxDequeueCount` dequeues (or at once for a message that does not decode)."""

    def __init__(self, function: str, binding: Binding | None, queue: str, client, poison_client,
                 options: QueuesOptions, invoke: Invoke, *, visibility: float = RECEIVE_VISIBILITY,
                 conn: str = ""):
        self.function, self.binding, self.queue, self.conn = function, binding, queue, conn
        self.client, self.poison_client = client, poison_client
        self.opt = options
        self.invoke = invoke
        self.visibility = visibility
        self.inflight: set[asyncio.Task] = set()
        self.stats = {"succeeded": 0, "failed": 0, "poisoned": 0}
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"queue:{self.function}")

    def wake(self) -> None:
        """Poll now (a message was just written to this queue by this host)."""
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop receiving; let running invocations finish for up to `grace` seconds, then cancel them (their
        messages are made visible again)."""
        self._stopping = True
        self._wake.set()
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

    # -- polling -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        await self._ensure_queue()
        delay: float | None = None
        while not self._stopping:
            while len(self.inflight) > self.opt.batch_threshold and not self._stopping:
                self._slot.clear()
                await self._slot.wait()
            if self._stopping:
                break
            self._wake.clear()
            messages = await self._receive()
            if messages:
                delay = None
                for m in messages:
                    task = asyncio.get_running_loop().create_task(self._process(m))
                    self.inflight.add(task)
                    task.add_done_callback(self._done)
                continue                        # a message was seen: poll again at once
            delay = next_delay(delay, self.opt.max_polling_interval)
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:     # a bug here, not in user code
            log.error("Queue '%s': processing a message failed", self.queue, exc_info=task.exception())

    async def _ensure_queue(self) -> None:
        delay = None
        while not self._stopping:
            try:
                with suppress(ResourceExistsError):
                    await self.client.create_queue()
                return
            except Exception as e:  # noqa: BLE001 - storage not reachable yet: keep trying
                self._report(e)
                delay = next_delay(delay, max(self.opt.max_polling_interval, 1.0))
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

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
        t0 = time.monotonic()
        error: BaseException | None = None
        try:
            await self.invoke(self.function, data, trigger_metadata(m, data))
        except asyncio.CancelledError:
            await self._finish(lease, renew)
            with suppress(Exception):
                await asyncio.wait_for(self._release(lease, 0), 2)
            raise
        except Exception as e:  # noqa: BLE001 - user code (or its output bindings) failed
            error = e
        await self._finish(lease, renew)
        ms = (time.monotonic() - t0) * 1000
        where = f"queue '{self.queue}', message {m.id}, dequeue count {count}, {ms:.0f} ms"
        if error is None:
            self.stats["succeeded"] += 1
            log.info("Executed 'Functions.%s' (Succeeded, %s)", self.function, where)
            await self._storage("delete", self.client.delete_message(lease.id, lease.pop_receipt))
            return
        self.stats["failed"] += 1
        type_name = getattr(error, "type_name", None) or type(error).__name__
        message = getattr(error, "message", None) or str(error)
        trace = getattr(error, "traceback_text", None) or "".join(traceback.format_exception(error))
        log.error("Executed 'Functions.%s' (Failed, %s): %s: %s\n%s", self.function, where, type_name, message,
                  trace.rstrip("\n"))
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
        """Copy the message's text as it is to `<queue>-poison` (created if missing), then delete it."""
        poison = self.queue + POISON_SUFFIX
        reason = f"Message has reached MaxDequeueCount of {self.opt.max_dequeue_count}. " if decoded else ""
        log.warning("%sMoving message to queue '%s'.", reason, poison)
        self.stats["poisoned"] += 1
        if await self._storage("copy to poison queue", _send_text(self.poison_client, text)):
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


class QueueBindings:
    """The queue side of a running app: one listener per queue-triggered function, and the queue output
    bindings of every function. Storage accounts are shared by connection string and closed by `close()`."""

    def __init__(self, options: QueuesOptions, env: Mapping[str, str], *, echo: Callable[[str], Any] = print,
                 visibility: float = RECEIVE_VISIBILITY):
        self.opt = options
        self.env = env
        self.echo = echo
        self.visibility = visibility
        self.listeners: dict[str, QueueListener] = {}
        self._accounts: dict[str, Any] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._retiring: set[asyncio.Task] = set()

    def _client(self, conn: str, queue: str):
        client = self._clients.get((conn, queue))
        if client is None:
            from ..storage.account import StorageAccount
            account = self._accounts.get(conn)
            if account is None:
                account = self._accounts[conn] = StorageAccount(conn)
            client = self._clients[(conn, queue)] = account.queue_service.get_queue_client(queue)
        return client

    def _resolve(self, fn: FunctionInfo, b: Binding) -> tuple[str, str]:
        queue = resolve_queue_name(b.raw.get("queueName", b.raw.get("queue_name")), self.env,
                                   f"function '{fn.name}'")
        try:
            _, conn = resolve_connection(b.raw.get("connection"), self.env)
        except QueueBindingError as e:
            raise QueueBindingError(f"function '{fn.name}': {e}") from None
        return queue, conn

    def start(self, app: LoadedApp, invoke: Invoke) -> None:
        """Listen for the queue-triggered functions of `app` (the listeners of a previous app stop; their running
        invocations finish). A binding that cannot work is reported in one line; the other functions run."""
        for old in self.listeners.values():
            task = asyncio.get_running_loop().create_task(old.stop())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.listeners = {}
        for fn in app.functions.values():
            error = None
            for b in fn.bindings:
                t = b.type.lower()
                if not (t == "queuetrigger" or (t == "queue" and b.direction == "out")):
                    continue
                try:
                    queue, conn = self._resolve(fn, b)
                except QueueBindingError as e:
                    error = error or str(e)
                    if t == "queuetrigger":
                        error = f"{e} (the function does not listen)"
                    continue
                if t == "queuetrigger":
                    listener = QueueListener(fn.name, b, queue, self._client(conn, queue),
                                             self._client(conn, queue + POISON_SUFFIX), self.opt, invoke,
                                             visibility=self.visibility, conn=conn)
                    self.listeners[fn.name] = listener
                    listener.start()
            if error:
                self.echo(f"Error: {error}")      # one line per function; its other bindings still work

    async def write(self, fn: FunctionInfo, b: Binding, value: Any, pytype: Any = None) -> int:
        """Write an output value as messages of the binding's queue (created if missing); returns how many."""
        messages = output_messages(value, pytype)
        if not messages:
            return 0
        queue, conn = self._resolve(fn, b)
        client = self._client(conn, queue)
        for body in messages:
            await _send_text(client, encode_body(body, self.opt.message_encoding))
        for listener in self.listeners.values():   # a listener of this host on that queue polls at once
            if listener.queue == queue and listener.conn == conn:
                listener.wake()
        return len(messages)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every listener; running invocations get `grace` seconds to finish."""
        listeners, self.listeners = list(self.listeners.values()), {}
        await asyncio.gather(*(l.stop(grace) for l in listeners), *list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        for account in self._accounts.values():
            with suppress(Exception):
                await account.close()
        self._accounts.clear()
        self._clients.clear()
