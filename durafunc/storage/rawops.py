"""The hottest single storage calls over plain aiohttp (SharedKeyLite): queue send and delete, and the instance
row's insert-or-merge. The Azure SDK pipeline spends ~2 ms of CPU per call on policies this does not need."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote, urlparse
from xml.sax.saxutils import escape

from .rawbatch import API_VERSION, _key, entity_json
from .retry import CALL_TIMEOUT, TRANSIENT_STATUS, retrying

QUEUE_API_VERSION = "2019-12-12"
_TAG = re.compile(r"<(MessageId|PopReceipt|TimeNextVisible|InsertionTime)>([^<]*)</\1>")


class RawStatusError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"storage answered {status}: {body[:200]}")
        self.status_code = status


@dataclass
class Sent:
    id: str
    pop_receipt: str
    inserted_on: datetime | None
    next_visible_on: datetime | None


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


class _Signer:
    def __init__(self, session_getter, endpoint: str, account: str, key_b64: str):
        self._session = session_getter
        self.endpoint = endpoint.rstrip("/")
        self.path = urlparse(self.endpoint).path
        self.account = account
        self.key = base64.b64decode(key_b64)

    def _sig(self, to_sign: str) -> str:
        return base64.b64encode(hmac.new(self.key, to_sign.encode(), hashlib.sha256).digest()).decode()


class RawQueueOps(_Signer):
    """send / delete on the Queue service."""

    def _headers(self, verb: str, path: str, content_type: str = "") -> dict:
        date = formatdate(usegmt=True)
        to_sign = (f"{verb}\n\n{content_type}\n\nx-ms-date:{date}\nx-ms-version:{QUEUE_API_VERSION}\n"
                   f"/{self.account}{path}")
        h = {"x-ms-date": date, "x-ms-version": QUEUE_API_VERSION,
             "Authorization": f"SharedKeyLite {self.account}:{self._sig(to_sign)}"}
        if content_type:
            h["Content-Type"] = content_type
        return h

    async def send(self, queue: str, text: str, visibility_timeout: int) -> Sent:
        path = f"{self.path}/{queue}/messages"
        body = (f'<?xml version="1.0" encoding="utf-8"?><QueueMessage><MessageText>{escape(text)}'
                f"</MessageText></QueueMessage>").encode()
        url = f"{self.endpoint}/{queue}/messages?messagettl=-1&visibilitytimeout={int(visibility_timeout)}"

        async def once() -> str:
            async with self._session().post(url, data=body, headers=self._headers("POST", path, "application/xml"),
                                            timeout=CALL_TIMEOUT) as r:
                raw = (await r.read()).decode(errors="replace")
                if r.status >= 300:
                    raise RawStatusError(r.status, raw)
                return raw
        tags = dict(_TAG.findall(await retrying(once)))
        return Sent(tags.get("MessageId", ""), tags.get("PopReceipt", ""), _http_date(tags.get("InsertionTime")),
                    _http_date(tags.get("TimeNextVisible")))

    async def delete(self, queue: str, message_id: str, pop_receipt: str) -> int:
        path = f"{self.path}/{queue}/messages/{message_id}"
        url = f"{self.endpoint}/{queue}/messages/{message_id}?popreceipt={quote(pop_receipt, safe='')}"

        async def once() -> int:
            async with self._session().delete(url, headers=self._headers("DELETE", path), timeout=CALL_TIMEOUT) as r:
                body = await r.read()
                if r.status in TRANSIENT_STATUS:
                    raise RawStatusError(r.status, body.decode(errors="replace"))
                return r.status
        return await retrying(once)

    async def update(self, queue: str, message_id: str, pop_receipt: str, visibility_timeout: int) -> Sent | None:
        """Set the message's visibility timeout (renew, release or abandon): the new pop receipt, or None when
        the message is gone or the pop receipt is stale (404/400)."""
        path = f"{self.path}/{queue}/messages/{message_id}"
        url = (f"{self.endpoint}/{queue}/messages/{message_id}?popreceipt={quote(pop_receipt, safe='')}"
               f"&visibilitytimeout={int(visibility_timeout)}")

        async def once():
            # aiohttp gives a body-less PUT `Content-Type: application/octet-stream`: sign what is sent
            headers = self._headers("PUT", path, "application/octet-stream")
            async with self._session().put(url, data=b"", headers=headers, timeout=CALL_TIMEOUT) as r:
                body = (await r.read()).decode(errors="replace")
                if r.status in (400, 404):
                    return None
                if r.status >= 300:
                    raise RawStatusError(r.status, body)
                return Sent(message_id, r.headers.get("x-ms-popreceipt", ""), None,
                            _http_date(r.headers.get("x-ms-time-next-visible")))
        return await retrying(once)


class RawTableOps(_Signer):
    """Single-entity writes on the Table service: insert, replace If-Match, insert-or-merge."""

    async def _call(self, verb: str, path: str, entity: dict, extra: dict | None = None):
        date = formatdate(usegmt=True)
        signature = self._sig(date + "\n/" + self.account + path)
        headers = {"x-ms-version": API_VERSION, "x-ms-date": date, "DataServiceVersion": "3.0",
                   "MaxDataServiceVersion": "3.0;NetFx", "Content-Type": "application/json",
                   "Accept": "application/json;odata=minimalmetadata",
                   "Authorization": f"SharedKeyLite {self.account}:{signature}", **(extra or {})}
        url = f"{urlparse(self.endpoint).scheme}://{urlparse(self.endpoint).netloc}{path}"
        data = entity_json(entity).encode()

        async def once():
            async with self._session().request(verb, url, data=data, headers=headers, timeout=CALL_TIMEOUT) as r:
                raw = await r.read()
                if r.status in TRANSIENT_STATUS:
                    raise RawStatusError(r.status, raw.decode(errors="replace"))
                return r.status, r.headers.get("ETag"), raw
        return await retrying(once)

    def _entity_path(self, table: str, entity: dict) -> str:
        return f"{self.path}/{table}(PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}')"

    async def upsert_merge(self, table: str, entity: dict) -> None:
        status, _, raw = await self._call("MERGE", self._entity_path(table, entity), entity)
        if status >= 300:
            raise RawStatusError(status, raw.decode(errors="replace"))

    async def insert(self, table: str, entity: dict) -> str | None:
        """The new ETag, or None when the entity exists (409)."""
        status, etag, raw = await self._call("POST", f"{self.path}/{table}", entity,
                                             {"Prefer": "return-no-content"})
        if status == 409:
            return None
        if status >= 300:
            raise RawStatusError(status, raw.decode(errors="replace"))
        return etag

    async def replace(self, table: str, entity: dict, etag: str) -> str | None:
        """Replace If-Match `etag`: the new ETag, or None when it changed or vanished (412/404)."""
        status, new, raw = await self._call("PUT", self._entity_path(table, entity), entity, {"If-Match": etag})
        if status in (404, 412):
            return None
        if status >= 300:
            raise RawStatusError(status, raw.decode(errors="replace"))
        return new

    async def merge(self, table: str, entity: dict, etag: str) -> str | None:
        """Merge If-Match `etag`: the new ETag, or None when it changed or vanished (412/404)."""
        status, new, raw = await self._call("MERGE", self._entity_path(table, entity), entity, {"If-Match": etag})
        if status in (404, 412):
            return None
        if status >= 300:
            raise RawStatusError(status, raw.decode(errors="replace"))
        return new
