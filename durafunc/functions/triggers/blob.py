"""Blob triggers, as the Storage extension runs them (container scan, receipts, a shared queue), polled locally:

1. One scanner per watched container lists it, from the last-modified time of its previous sweep (kept in
   `blobscaninfo`), with the shared back-off (at most `MAX_POLL`, about a second). For each new or changed blob
   that matches a function's path it takes the blob's receipt (created `Incomplete`, then leased), enqueues a
   BlobTriggerMessage on `azure-webjobs-blobtrigger-<host id>` and completes the receipt. A completed receipt
   means: this ETag is handled for this function, by every host with this host id, now and after restarts.
2. The shared queue is read by a QueueListener (every host reads it; batches, retries, visibility as for queue
   triggers): a message whose blob still has its ETag runs the function with the blob's content; after
   `maxDequeueCount` failed attempts the message goes to `webjobs-blobtrigger-poison`. The host logs each run
   with the extension's reason (`New blob detected(LogsAndContainerScan): container/name`) and trigger details
   (the message's id, dequeue count and insertion time, the blob's creation and last-modified times).

`source: EventGrid` is accepted and polled the same way (there is no Event Grid offline).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.functions import meta

from ...settings import QueuesOptions
from .. import blobs
from ..clients import StorageClients
from ..errors import BindingError
from ..expressions import BlobPattern, blob_pattern, expand_settings
from ..model import Binding, FunctionInfo
from ..queues import decode_body, encode_body, send_text
from .backoff import Backoff
from .base import ListenerError, Run, TriggerEvent, details_time
from .queue import RECEIVE_VISIBILITY, QueueListener, message_details
from .receipts import (HOSTS_CONTAINER, POISON_QUEUE, Receipts, before, function_id, parse_trigger_message,
                       receipt_name, scan_info_name, trigger_message, trigger_queue)

log = logging.getLogger("durafunc.blobs")

MAX_POLL = 1.0                 # seconds: the longest wait between two scans of a container (locally)
SOURCES = {"logsandcontainerscan": "LogsAndContainerScan", "eventgrid": "EventGrid"}
SHARED_LISTENER = "SharedBlobQueueListener"

SKIP, RETRY, ENQUEUED = "skip", "retry", "enqueued"


@dataclass
class Registration:
    """One blob-triggered function: its id in receipts and messages, its path, the account of its blobs."""
    function: str
    fid: str
    pattern: BlobPattern
    conn: str
    binding: Binding
    source: str


def registration(fn: FunctionInfo, clients: StorageClients, env) -> Registration:
    """The registration of a blob-triggered function; ListenerError (one line) when it cannot listen."""
    b = fn.trigger
    try:
        path = expand_settings(str(b.raw.get("path") or ""), env)
        if not path:
            raise BindingError("'path' is required")
        pattern = blob_pattern(path)
        blobs.data_type(b)
        conn = clients.resolve(b.raw.get("connection"))
        raw_source = str(b.raw.get("source") or "LogsAndContainerScan")
        source = SOURCES.get(raw_source.lower())
        if source is None:
            raise BindingError(f"source must be 'LogsAndContainerScan' or 'EventGrid', got '{raw_source}'")
    except BindingError as e:
        raise ListenerError(f"function '{fn.name}': {e} (the function does not listen)") from None
    return Registration(fn.name, function_id(fn.name), pattern, conn, b, source)


def blob_event(reg: Registration, container: str, name: str, uri: str, content: bytes, props: Any,
               message: dict[str, meta.Datum] | None = None) -> TriggerEvent:
    """What the host sends for one triggering blob; `message`: the trigger metadata of its BlobTriggerMessage
    (for the trigger details)."""
    path_data = reg.pattern.match(container, name) or {}
    properties = blobs.properties_json(props)
    metadata = dict(getattr(props, "metadata", None) or {})
    details = (f"{message_details(message)}, " if message else "") + \
        (f"BlobCreated: {details_time(getattr(props, 'creation_time', None))}, "
         f"BlobLastModified: {details_time(getattr(props, 'last_modified', None))}")
    return TriggerEvent(blobs.content_datum(content, reg.binding),
                        blobs.trigger_metadata(container, name, uri, properties, metadata, path_data),
                        blobs.binding_data(container, name, uri, properties, metadata, path_data),
                        decode=blobs.trigger_value, reason=f"New blob detected({reg.source}): {container}/{name}",
                        details=details)


class BlobQueueListener(QueueListener):
    """The shared blob trigger queue: runs the function a BlobTriggerMessage names (the host logs the run under
    that function) and poisons into the `webjobs-blobtrigger-poison` queue of the blob's account."""

    def __init__(self, owner: "BlobTriggerListener", queue: str, client, poison_client, options: QueuesOptions,
                 visibility: float):
        super().__init__(SHARED_LISTENER, None, queue, client, poison_client, options, self._handle,
                         visibility=visibility, poison_name=POISON_QUEUE)
        self.owner = owner

    async def _handle(self, _name: str, data: meta.Datum, metadata: dict) -> None:
        message_id = metadata["Id"].value
        try:
            msg = parse_trigger_message(data.value)
            reg = self.owner.registrations.get(msg["FunctionId"])
            if reg is None:
                log.debug("Blob trigger message %s is for '%s', which this host does not run; ignored.", message_id,
                          msg["FunctionId"])
                return
            container, name = msg["ContainerName"], msg["BlobName"]
            service = self.owner.clients.account(reg.conn).blobs
            found = await blobs.read(service, container, name)
        except Exception as e:  # noqa: BLE001 - no function ran: say why the message fails (it is retried)
            log.warning("Blob trigger message %s on queue '%s' failed: %s: %s", message_id, self.queue,
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            raise
        if found is None:
            log.debug("Blob '%s/%s' no longer exists; message %s ignored.", container, name, message_id)
            return
        content, props = found
        if blobs.quoted_etag(props.etag) != msg.get("ETag"):
            # a newer version of the blob has its own message
            log.debug("Blob '%s/%s' changed since message %s; the newer version is triggered on its own.",
                      container, name, message_id)
            return
        uri = service.get_blob_client(container, name).url
        await self.owner.run(reg.function, blob_event(reg, container, name, uri, content, props, metadata))

    def poison_target(self, text: str):
        try:
            msg = parse_trigger_message(decode_body(text, self.opt.message_encoding))
            reg = self.owner.registrations.get(msg["FunctionId"])
        except ValueError:
            reg = None
        if reg is None:
            return self.poison_client
        return self.owner.clients.queue(reg.conn, POISON_QUEUE)


class ContainerScanner:
    """Scans one container for the blob-triggered functions watching it (the SDK's container scan strategy)."""

    def __init__(self, owner: "BlobTriggerListener", conn: str, container: str, regs: list[Registration]):
        self.owner, self.conn, self.container, self.regs = owner, conn, container, regs
        self.backoff = Backoff(owner.max_poll)
        self.cursor: datetime | None = None          # the latest last-modified time of the previous sweep
        self.done: dict[tuple[str, str, str], datetime] = {}
        self.stats = {"enqueued": 0, "scans": 0}
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_error: str | None = None
        self._scan_name: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"blobscan:{self.container}")

    def wake(self) -> None:
        self.backoff.wake()

    async def stop(self) -> None:
        self._stopping = True
        self.backoff.wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stopping anyway
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def _report(self, e: Exception) -> None:
        text = f"{type(e).__name__}: {e}".splitlines()[0]
        if text != self._last_error:
            log.warning("Blob trigger scan of container '%s': %s", self.container, text)
        self._last_error = text

    async def _run(self) -> None:
        account = self.owner.clients.account(self.conn)
        self._scan_name = scan_info_name(self.owner.host_id, account.account_name, self.container)
        while not self._stopping:
            try:
                self.cursor = await self.owner.receipts.load_scan(self._scan_name)
                break
            except Exception as e:  # noqa: BLE001 - storage not reachable yet
                self._report(e)
                await self.backoff.wait()
        while not self._stopping:
            self.backoff.clear()
            try:
                worked = await self.poll()
                self._last_error = None
            except Exception as e:  # noqa: BLE001 - storage hiccup: back off and scan again
                self._report(e)
                worked = False
            if worked:
                self.backoff.reset()
            else:
                await self.backoff.wait()

    async def poll(self) -> bool:
        """One sweep: notify the registrations of every blob modified since the previous sweep; True when a
        blob was enqueued (scan again at once)."""
        self.stats["scans"] += 1
        container = self.owner.clients.account(self.conn).blobs.get_container_client(self.container)
        items = []
        try:
            async for item in container.list_blobs():
                items.append(item)
        except ResourceNotFoundError:
            return False                               # the container does not exist (yet)
        latest = self.cursor
        failed: list[datetime] = []
        worked = False
        for item in items:
            modified = item.last_modified
            if latest is None or modified > latest:
                latest = modified
            if self.cursor is not None and modified < self.cursor:
                continue
            etag = blobs.quoted_etag(item.etag)
            for reg in self.regs:
                key = (reg.fid, item.name, etag)
                if key in self.done or self._stopping:
                    continue
                try:
                    outcome = await self.owner.notify(reg, self.container, item.name, etag,
                                                      blobs.blob_type_name(item.blob_type))
                except Exception as e:  # noqa: BLE001 - try this blob again next sweep
                    self._report(e)
                    outcome = RETRY
                if outcome == RETRY:
                    failed.append(modified)
                    continue
                self.done[key] = modified
                if outcome == ENQUEUED:
                    worked = True
                    self.stats["enqueued"] += 1
        if latest is not None and latest != self.cursor:
            keep = min(failed) if failed else latest      # blobs to try again stay in the next sweeps
            if self.cursor is None or keep > self.cursor:
                self.cursor = keep
                await self.owner.receipts.save_scan(self._scan_name, before(keep))
        if self.cursor is not None:
            self.done = {k: v for k, v in self.done.items() if v >= self.cursor}
        return worked


class BlobTriggerListener:
    """All blob triggers of an app: the scanners of their containers and the shared queue listener."""

    function = "blob triggers"

    def __init__(self, registrations: list[Registration], clients: StorageClients, host_conn: str, host_id: str,
                 options: QueuesOptions, run: Run, *, max_poll: float = MAX_POLL,
                 visibility: float = RECEIVE_VISIBILITY):
        self.registrations = {r.fid: r for r in registrations}
        self.clients, self.host_conn, self.host_id = clients, host_conn, host_id
        self.opt, self.run, self.max_poll, self.visibility = options, run, max_poll, visibility
        self.receipts = Receipts(clients.account(host_conn).blobs.get_container_client(HOSTS_CONTAINER))
        self.queue_name = trigger_queue(host_id)
        self.queue_client = clients.queue(host_conn, self.queue_name)
        self.queue_listener = BlobQueueListener(self, self.queue_name, self.queue_client,
                                                clients.queue(host_conn, POISON_QUEUE), options, visibility)
        groups: dict[tuple[str, str], list[Registration]] = {}
        for r in registrations:
            groups.setdefault((r.conn, r.pattern.container), []).append(r)
        self.scanners = {key: ContainerScanner(self, key[0], key[1], regs) for key, regs in groups.items()}

    def start(self) -> None:
        self.queue_listener.start()
        for scanner in self.scanners.values():
            scanner.start()

    def wake(self, conn: str, container: str) -> None:
        """A blob was just written to `container` by this host: scan it now."""
        scanner = self.scanners.get((conn, container))
        if scanner is not None:
            scanner.wake()

    async def stop(self, grace: float = 10.0) -> None:
        await asyncio.gather(*(s.stop() for s in self.scanners.values()))
        await self.queue_listener.stop(grace)

    async def notify(self, reg: Registration, container: str, name: str, etag: str, blob_type: str) -> str:
        """The BlobTriggerExecutor: ENQUEUED when this call enqueued the blob's message, SKIP when it does not
        match or its receipt is completed, RETRY when another host holds the receipt (try next sweep)."""
        if reg.pattern.match(container, name) is None:
            return SKIP
        receipt = receipt_name(self.host_id, reg.fid, etag, container, name)
        state = await self.receipts.read(receipt)
        if state is True:
            return SKIP
        if state is None and not await self.receipts.create(receipt):
            return RETRY                                 # someone else just created it
        lease = await self.receipts.acquire(receipt)
        if lease is None:
            return RETRY
        try:
            if await self.receipts.read(receipt) is True:
                return SKIP
            text = trigger_message(reg.fid, blob_type, container, name, etag)
            await send_text(self.queue_client, encode_body(text, self.opt.message_encoding))
            self.queue_listener.wake()
            await self.receipts.complete(receipt, lease)
            log.debug("Blob '%s/%s' (%s) enqueued for function '%s' on queue '%s'.", container, name, etag,
                      reg.function, self.queue_name)
            return ENQUEUED
        finally:
            await self.receipts.release(lease)


class BlobTriggers:
    """The blob trigger side of a host: one BlobTriggerListener for all the blob-triggered functions."""

    kind = "blob"

    def __init__(self, clients: StorageClients, options: QueuesOptions, env, host_id: str, *,
                 max_poll: float = MAX_POLL, visibility: float = RECEIVE_VISIBILITY):
        self.clients, self.opt, self.env, self.host_id = clients, options, env, host_id
        self.max_poll, self.visibility = max_poll, visibility

    def build_all(self, functions: list[FunctionInfo], run: Run) -> tuple[list, dict[str, str]]:
        regs, errors = [], {}
        for fn in functions:
            try:
                regs.append(registration(fn, self.clients, self.env))
            except ListenerError as e:
                errors[fn.name] = str(e)
        if not regs:
            return [], errors
        host_conn = self.clients.resolve("")
        return [BlobTriggerListener(regs, self.clients, host_conn, self.host_id, self.opt, run,
                                    max_poll=self.max_poll, visibility=self.visibility)], errors
