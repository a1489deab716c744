"""The Instances table: one row per instance id with its status, input, output and timestamps (§3)."""
from __future__ import annotations

import re

import asyncio
import base64
import binascii
import enum
import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from .account import StorageAccount
from .errors import guard
from .largemessages import LargeMessages
from .messages import decode_message
from .names import escape_key, unescape_key
from .rows import blob_columns, is_large, json_text, odata_literal, parse_json_text, plain
from .schema import OrchestrationStatus

ROW_KEY = ""
# Columns whose value may be a blob URL (or have a {P}BlobName twin) when large.
_LARGE_COLUMNS = ("Name", "Input", "Output", "CustomStatus", "Tags")
_STARTED_MESSAGE_SUFFIX = "ExecutionStarted.json.gz"


@dataclass
class InstanceRow:
    instance_id: str
    name: str | None = None
    version: str | None = None
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    runtime_status: OrchestrationStatus | None = OrchestrationStatus.Pending  # None: unparsable in the table
    created_time: datetime | None = None
    last_updated_time: datetime | None = None
    completed_time: datetime | None = None
    execution_id: str | None = None
    generation: int = 0
    scheduled_start_time: datetime | None = None
    tags: dict | None = None
    worker: str | None = None
    etag: str | None = None


def _status(value: Any) -> OrchestrationStatus | None:
    try:
        return OrchestrationStatus[value]
    except KeyError:
        return None


def row_from_entity(entity: Any) -> InstanceRow:
    e = {k: plain(v) for k, v in entity.items()}
    return InstanceRow(
        instance_id=unescape_key(e["PartitionKey"]), name=e.get("Name"), version=e.get("Version"),
        input=e.get("Input"), output=e.get("Output"), custom_status=e.get("CustomStatus"),
        runtime_status=_status(e.get("RuntimeStatus")), created_time=e.get("CreatedTime"),
        last_updated_time=e.get("LastUpdatedTime"), completed_time=e.get("CompletedTime"),
        execution_id=e.get("ExecutionId"), generation=e.get("Generation") or 0,
        scheduled_start_time=e.get("ScheduledStartTime"), tags=parse_json_text(e.get("Tags")),
        worker=e.get("Worker"), etag=getattr(entity, "metadata", {}).get("etag"))


def entity_from_row(row: InstanceRow, hub_name: str) -> dict:
    """The full entity DTFx writes at creation (None values left out; Tags "null" when None)."""
    e = {"PartitionKey": escape_key(row.instance_id), "RowKey": ROW_KEY, "Name": row.name, "Version": row.version,
         "Input": row.input, "Output": row.output, "CustomStatus": row.custom_status,
         "RuntimeStatus": row.runtime_status.name if row.runtime_status is not None else None,
         "CreatedTime": row.created_time, "LastUpdatedTime": row.last_updated_time,
         "CompletedTime": row.completed_time, "ExecutionId": row.execution_id, "TaskHubName": hub_name,
         "ScheduledStartTime": row.scheduled_start_time, "Generation": row.generation,
         "Tags": json_text(row.tags), "Worker": row.worker}
    return {k: v for k, v in e.items() if v is not None}


def column_value(value: Any) -> Any:
    """A merge value -> a table value: enums by name, dicts/lists as JSON text."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (dict, list)):
        return json_text(value)
    return value


def encode_continuation(token: dict | None) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_continuation(token: str | None) -> dict | None:
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid continuation token: {token!r}") from e
    if not isinstance(raw, dict) or not {"PartitionKey", "RowKey"} >= set(raw):
        raise ValueError(f"invalid continuation token: {token!r}")
    return raw


def _status_name(status: OrchestrationStatus | int | str) -> str:
    if isinstance(status, str):
        return OrchestrationStatus.parse(status).name
    return OrchestrationStatus(status).name


def _next_string(s: str) -> str:
    """The smallest string greater than every string starting with `s`."""
    return s[:-1] + chr(ord(s[-1]) + 1)


_URL_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")


class InstancesTable:
    def __init__(self, account: StorageAccount, table_name: str, large_messages: LargeMessages, hub_name: str):
        self.account = account
        self.table_name = table_name
        self.large_messages = large_messages
        self.hub_name = hub_name
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.account.table_service.get_table_client(self.table_name)
        return self._client

    # -- reading ----------------------------------------------------------------------------------------------
    @guard
    async def get(self, instance_id: str, *, resolve_large: bool = True) -> InstanceRow | None:
        try:
            entity = await self.client.get_entity(escape_key(instance_id), ROW_KEY)
        except ResourceNotFoundError:
            return None
        if resolve_large:
            await self._resolve_large(entity)
        return row_from_entity(entity)

    async def _resolve_large(self, entity: Any) -> None:
        jobs = [(prop, self.large_messages.download(name)) for prop, name in blob_columns(entity)]
        jobs += [(col, self._download_url(plain(entity[col]))) for col in _LARGE_COLUMNS
                 if self.large_messages.is_blob_url(plain(entity.get(col)))]
        if not jobs:
            return
        texts = await asyncio.gather(*(job for _, job in jobs))
        for (col, _), text in zip(jobs, texts):
            entity[col] = text

    async def _download_url(self, url: str) -> str:
        text = await self.large_messages.download_url(url)
        if url.endswith(_STARTED_MESSAGE_SUFFIX):  # an offloaded start message: the input is inside it
            return decode_message(text).event.get("Input")
        return text

    @staticmethod
    def filter_text(*, created_from: datetime | None = None, created_to: datetime | None = None,
                    statuses: list[OrchestrationStatus | str] | None = None, prefix: str | None = None,
                    name_prefix: str | None = None) -> str:
        """The `$filter` of `query` (entity ids '@...' left out unless `prefix` starts with '@')."""
        conds = []
        if created_from is not None:
            conds.append(f"CreatedTime ge {odata_literal(created_from)}")
        if created_to is not None:
            conds.append(f"CreatedTime le {odata_literal(created_to)}")
        if statuses:
            names = sorted({_status_name(s) for s in statuses})
            conds.append("(" + " or ".join(f"RuntimeStatus eq {odata_literal(n)}" for n in names) + ")")
        if prefix:
            key = escape_key(prefix)
            conds.append(f"PartitionKey ge {odata_literal(key)} and PartitionKey lt {odata_literal(_next_string(key))}")
        if name_prefix:
            conds.append(f"Name ge {odata_literal(name_prefix)} and Name lt {odata_literal(_next_string(name_prefix))}")
        if not (prefix or "").startswith("@"):
            conds.append("(PartitionKey lt '@' or PartitionKey ge 'A')")
        return " and ".join(conds)

    @guard
    async def query(self, *, created_from: datetime | None = None, created_to: datetime | None = None,
                    statuses: list[OrchestrationStatus | str] | None = None, prefix: str | None = None,
                    name_prefix: str | None = None, top: int | None = None, continuation: str | None = None,
                    resolve_large: bool = False) -> tuple[list[InstanceRow], str | None]:
        """Rows matching the filters in PartitionKey order, at most `top`, and a continuation token (or None).
        `prefix`: of the instance id; `name_prefix`: of the orchestrator name. Entity ids ('@...') are left out
        unless `prefix` starts with '@'."""
        flt = self.filter_text(created_from=created_from, created_to=created_to, statuses=statuses, prefix=prefix,
                               name_prefix=name_prefix)
        token = decode_continuation(continuation)
        entities: list[Any] = []
        while top is None or len(entities) < top:
            per_page = None if top is None else top - len(entities)
            paged = (self.client.query_entities(flt, results_per_page=per_page) if flt
                     else self.client.list_entities(results_per_page=per_page))
            pages = paged.by_page(continuation_token=token)
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                token = None
                break
            entities += [e async for e in page]
            token = pages.continuation_token
            if not token:
                break
        if resolve_large:
            await asyncio.gather(*(self._resolve_large(e) for e in entities))
        return [row_from_entity(e) for e in entities], encode_continuation(token)

    # -- writing ----------------------------------------------------------------------------------------------
    async def _offload(self, instance_id: str, entity: dict, *, as_url: bool) -> None:
        """Move over-limit string columns to blobs: a `{P}BlobName` column, or (as_url) the URL in the column."""
        key = escape_key(instance_id)
        uploads = []
        for col, value in list(entity.items()):
            if col in ("PartitionKey", "RowKey") or not is_large(value):
                continue
            name = f"{key}/history--{col}-{random.getrandbits(31):08X}-{col}.json.gz"
            uploads.append((name, value))
            if as_url:
                entity[col] = self.large_messages.url(name)
            else:
                entity[col] = ""
                entity[col + "BlobName"] = name
        if uploads:
            await asyncio.gather(*(self.large_messages.upload(n, t) for n, t in uploads))

    @guard
    async def insert(self, row: InstanceRow) -> bool:
        """Insert the row, or with `row.etag` replace it If-Match; False on a conflict. Sets row.etag on success."""
        entity = entity_from_row(row, self.hub_name)
        await self._offload(row.instance_id, entity, as_url=False)
        raw = self.account.raw_table_ops()
        if raw is not None and _URL_SAFE.fullmatch(entity["PartitionKey"]):
            etag = await (raw.replace(self.table_name, entity, row.etag) if row.etag
                          else raw.insert(self.table_name, entity))
            if etag is None:
                return False
            row.etag = etag
            return True
        try:
            if row.etag:
                meta = await self.client.update_entity(entity, mode=UpdateMode.REPLACE, etag=row.etag,
                                                       match_condition=MatchConditions.IfNotModified)
            else:
                meta = await self.client.create_entity(entity)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        row.etag = meta.get("etag")
        return True

    @guard
    async def merge(self, instance_id: str, fields: dict[str, Any], *, must_exist: bool = False) -> bool:
        """InsertOrMerge `fields` (table column names -> values; None values are left unchanged) and TaskHubName.

        Enums are written by name, dicts/lists as JSON, strings over 60 KiB as a blob URL. With `must_exist`
        it is a Merge (If-Match *) and returns False when the row does not exist."""
        entity = {"PartitionKey": escape_key(instance_id), "RowKey": ROW_KEY, "TaskHubName": self.hub_name,
                  **{k: column_value(v) for k, v in fields.items() if v is not None}}
        await self._offload(instance_id, entity, as_url=True)
        if not must_exist:
            raw = self.account.raw_table_ops()
            if raw is not None and _URL_SAFE.fullmatch(entity["PartitionKey"]):   # signed paths stay unescaped
                await raw.upsert_merge(self.table_name, entity)
            else:
                await self.client.upsert_entity(entity, mode=UpdateMode.MERGE)
            return True
        try:
            await self.client.update_entity(entity, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            return False
        return True

    @guard
    async def write(self, instance_id: str, fields: dict[str, Any], etag: str | None) -> str | None:
        """The engine's checkpoint write: merge `fields` If-Match `etag`, or insert the row when `etag` is None.
        Returns the new ETag, or None on a conflict (the row changed or vanished since `etag`; for an insert: it
        exists). Values as for `merge`."""
        entity = {"PartitionKey": escape_key(instance_id), "RowKey": ROW_KEY, "TaskHubName": self.hub_name,
                  **{k: column_value(v) for k, v in fields.items() if v is not None}}
        await self._offload(instance_id, entity, as_url=True)
        raw = self.account.raw_table_ops()
        if raw is not None and _URL_SAFE.fullmatch(entity["PartitionKey"]):
            return await (raw.merge(self.table_name, entity, etag) if etag else raw.insert(self.table_name, entity))
        try:
            if etag:
                meta = await self.client.update_entity(entity, mode=UpdateMode.MERGE, etag=etag,
                                                       match_condition=MatchConditions.IfNotModified)
            else:
                meta = await self.client.create_entity(entity)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        return meta.get("etag")

    @guard
    async def delete(self, instance_id: str) -> bool:
        """Delete the row; True if it existed."""
        status: list[int] = []
        await self.client.delete_entity(escape_key(instance_id), ROW_KEY,
                                        raw_response_hook=lambda r: status.append(r.http_response.status_code))
        return bool(status) and status[-1] < 300
