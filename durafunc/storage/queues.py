"""One storage queue carrying DTFx MessageData: send (with large-message offload), receive, delete, poison (§4)."""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from .account import StorageAccount
from .errors import MessageFormatError, guard
from .largemessages import LargeMessages
from .messages import MessageData, decode_message, encode_message, encode_wrapper, event_type_name

log = logging.getLogger(__name__)

MAX_INLINE_BYTES = 45 * 1024               # DTFx MaxStorageQueuePayloadSizeInBytes
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600     # Azure Queues' limit
MAX_RECEIVE = 32
POISON_SUFFIX = "-poison"

_sequence = itertools.count(1)             # process-wide MessageData.SequenceNumber


def next_sequence_number() -> int:
    return next(_sequence)


def _seconds(value: float) -> int:
    """Seconds for the queue API: whole, rounded up (never early), within 0..7 days."""
    return min(max(0, math.ceil(value)), MAX_VISIBILITY_SECONDS)


@dataclass
class QueueItem:
    id: str
    pop_receipt: str
    dequeue_count: int
    inserted_on: datetime | None
    text: str
    data: MessageData | None = None
    error: str | None = None
    next_visible_on: datetime | None = None
    blob_url: str | None = None   # set by send() when the body was offloaded to a blob


class MessageQueue:
    def __init__(self, account: StorageAccount, name: str, large_messages: LargeMessages):
        self.account = account
        self.name = name
        self.large_messages = large_messages
        self._client = None
        self._poison = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.account.queue_service.get_queue_client(self.name)
        return self._client

    @property
    def poison_name(self) -> str:
        return self.name + POISON_SUFFIX

    @guard
    async def create(self) -> None:
        try:
            await self.client.create_queue()
        except ResourceExistsError:
            pass

    @guard
    async def send(self, task_message: dict, *, visibility_timeout: float = 0, episode: int | None = None,
                   sender: dict | None = None) -> QueueItem:
        """Enqueue a TaskMessage (TTL infinite); bodies over 45 KiB go to a blob with a small wrapper message.

        Returns the sent message as a QueueItem (id and pop receipt valid for delete/set_visibility, dequeue_count
        0, data = the MessageData sent, blob_url = the offloaded blob's URL or None)."""
        activity_id = str(uuid.uuid4())
        data = MessageData(activity_id=activity_id, task_message=task_message, sequence_number=next_sequence_number(),
                           episode=episode, sender=sender)
        text = encode_message(task_message, sequence_number=data.sequence_number, episode=episode, sender=sender,
                              activity_id=activity_id)
        blob_url = None
        if len(text) * 4 > MAX_INLINE_BYTES and len(text.encode("utf-8")) > MAX_INLINE_BYTES:
            instance_id = task_message["OrchestrationInstance"]["InstanceId"]
            name = (f"{instance_id}/message-{activity_id.replace('-', '')}-"
                    f"{event_type_name(task_message['Event'])}.json.gz")
            await self.large_messages.upload(name, text)
            text, blob_url = encode_wrapper(name), self.large_messages.url(name)
        raw = self.account.raw_queue_ops()
        if raw is not None:
            sent = await self._send_raw(raw, text, visibility_timeout)
        else:
            sent = await self._send_text(self.client, text, visibility_timeout)
        return QueueItem(id=sent.id, pop_receipt=sent.pop_receipt, dequeue_count=0, inserted_on=sent.inserted_on,
                         text=text, data=data, next_visible_on=sent.next_visible_on, blob_url=blob_url)

    async def _send_raw(self, raw, text: str, visibility_timeout: float):
        from .rawops import RawStatusError
        try:
            return await raw.send(self.name, text, _seconds(visibility_timeout))
        except RawStatusError as e:
            if e.status_code != 404:
                raise
            await self.create()
            return await raw.send(self.name, text, _seconds(visibility_timeout))

    @staticmethod
    async def _send_text(client, text: str, visibility_timeout: float = 0):
        """Send with infinite TTL; a missing queue is created and the send repeated (no per-send existence check)."""
        try:
            return await client.send_message(text, visibility_timeout=_seconds(visibility_timeout), time_to_live=-1)
        except ResourceNotFoundError:
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
            return await client.send_message(text, visibility_timeout=_seconds(visibility_timeout), time_to_live=-1)

    @guard
    async def receive(self, max_messages: int = MAX_RECEIVE, visibility_timeout: float = 300.0) -> list[QueueItem]:
        """One receive call: up to `max_messages` (≤ 32) messages, hidden for `visibility_timeout` seconds.

        Offloaded messages are downloaded; an unparseable message has data None and error set."""
        paged = self.client.receive_messages(messages_per_page=max(1, min(max_messages, MAX_RECEIVE)),
                                             visibility_timeout=max(1, _seconds(visibility_timeout)))
        try:
            page = await paged.by_page().__anext__()
        except StopAsyncIteration:
            return []
        items = [QueueItem(id=m.id, pop_receipt=m.pop_receipt, dequeue_count=m.dequeue_count or 0,
                           inserted_on=m.inserted_on, text=m.content or "", next_visible_on=m.next_visible_on)
                 async for m in page]
        await asyncio.gather(*(self._decode(item) for item in items))
        return items

    async def _decode(self, item: QueueItem) -> None:
        try:
            data = decode_message(item.text)
            if data.compressed_blob_name:
                try:
                    body = await self.large_messages.download(data.compressed_blob_name)
                except ResourceNotFoundError:
                    raise MessageFormatError(f"large message blob '{data.compressed_blob_name}' is missing")
                data = decode_message(body)
                if data.compressed_blob_name:
                    raise MessageFormatError("large message blob holds another wrapper")
            item.data = data
        except MessageFormatError as e:
            item.error = str(e)

    @guard
    async def delete(self, item: QueueItem) -> None:
        raw = self.account.raw_queue_ops()
        if raw is not None:
            status = await raw.delete(self.name, item.id, item.pop_receipt)
            if status >= 300 and status not in (404, 400):
                from .rawops import RawStatusError
                raise RawStatusError(status, "delete failed")
            return
        try:
            await self.client.delete_message(item.id, item.pop_receipt)
        except ResourceNotFoundError:
            pass

    @guard
    async def set_visibility(self, item: QueueItem, seconds: float) -> bool:
        """Hide the message for `seconds` from now (renew, release with 0, or abandon); updates item.pop_receipt.
        False when the message is gone or `item.pop_receipt` is no longer its current one."""
        raw = self.account.raw_queue_ops()
        if raw is not None:
            updated = await raw.update(self.name, item.id, item.pop_receipt, _seconds(seconds))
            if updated is None:
                return False
        else:
            try:
                updated = await self.client.update_message(item.id, item.pop_receipt,
                                                           visibility_timeout=_seconds(seconds))
            except (ResourceNotFoundError, HttpResponseError) as e:
                if isinstance(e, ResourceNotFoundError) or getattr(e, "status_code", None) == 400:
                    return False
                raise
        item.pop_receipt = updated.pop_receipt
        item.next_visible_on = updated.next_visible_on
        return True

    @guard
    async def move_to_poison(self, item: QueueItem, reason: str) -> None:
        """Copy the original text to `{name}-poison` (created on first use), then delete the original."""
        log.warning("moving message %s of queue %s to %s: %s", item.id, self.name, self.poison_name, reason)
        if self._poison is None:
            self._poison = self.account.queue_service.get_queue_client(self.poison_name)
        await self._send_text(self._poison, item.text)
        await self.delete(item)

    @guard
    async def peek_count(self) -> int:
        """Approximate number of messages (visible and invisible)."""
        props = await self.client.get_queue_properties()
        return props.approximate_message_count or 0

    @guard
    async def clear(self) -> None:
        await self.client.clear_messages()
