"""Table bindings, as the Tables extension (Microsoft.Azure.WebJobs.Extensions.Tables) and the Python worker do
them. The worker has no converter for tables: the function gets JSON text and gives JSON text (the generic
binding: `str` or `bytes`).

- Input with `partitionKey` and `rowKey`: one entity as a JSON object (None when it does not exist); otherwise
  a JSON array of the entities matching `partitionKey` and/or `filter` (`PartitionKey eq '<pk>' and <filter>`),
  at most `take`. Entities read as the extension's JObjects: `odata.etag`, `PartitionKey`, `RowKey`,
  `Timestamp`, then the properties.
- Output: one JSON object or an array of them; `PartitionKey`/`RowKey` from the entity (any case) else from the
  binding. Entities are inserted in batches per partition (an existing one fails the invocation with the
  service's 409); one carrying `odata.etag` replaces the stored one (`*`: insert or replace). The table is
  created if missing.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import EdmType, EntityProperty, UpdateMode

from .errors import BindingError

TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
MAX_BATCH = 100
ETAG_KEY = "odata.etag"
# Newtonsoft parses ISO 8601 strings into DateTime when it reads the JSON (DateParseHandling.DateTime)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})?$")


class TableBindingError(BindingError):
    """A table binding that cannot work, or a value it cannot write; str() is one line."""


def check_table_name(name: str) -> str:
    if not TABLE_NAME_RE.match(name or ""):
        raise TableBindingError(f"Invalid table name: '{name}' (3-63 letters and digits, starting with a letter)")
    return name


# -- pure: entities to JSON (input) -------------------------------------------------------------------------

def _json_value(value: Any) -> Any:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def entity_json(entity: Any) -> dict[str, Any]:
    """A TableEntity (azure-data-tables) as the Tables extension's JObject of it."""
    md = getattr(entity, "metadata", None) or {}
    out: dict[str, Any] = {}
    if md.get("etag"):
        out[ETAG_KEY] = md["etag"]
    out["PartitionKey"] = entity.get("PartitionKey")
    out["RowKey"] = entity.get("RowKey")
    if md.get("timestamp") is not None:
        out["Timestamp"] = _json_value(md["timestamp"])
    for k, v in entity.items():
        if k not in ("PartitionKey", "RowKey"):
            out[k] = _json_value(v)
    return out


def query_filter(partition_key: str | None, filter_: str | None) -> str | None:
    """The OData filter of a query input, as the extension composes it."""
    pk = f"PartitionKey eq '{partition_key.replace(chr(39), chr(39) * 2)}'" if partition_key else None
    if pk and filter_:
        return f"{pk} and {filter_}"
    return pk or filter_ or None


def take_of(raw: Any) -> int | None:
    """`take` as the extension reads it: a positive number limits the result, anything else does not."""
    if raw is None or raw == "":
        return None
    try:
        n = int(str(raw).strip())
    except ValueError:
        raise TableBindingError(f"'take' must be a number, got {raw!r}") from None
    return n if n > 0 else None


# -- pure: JSON to entities (output) -------------------------------------------------------------------------

def _key_text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (dict, list)):
        raise TableBindingError("Unable to cast object of type 'Newtonsoft.Json.Linq.JObject' to type "
                                "'Newtonsoft.Json.Linq.JValue'.")
    return value if isinstance(value, str) else json.dumps(value)


def _check_key(what: str, value: str | None) -> str:
    if value is None:
        raise TableBindingError(f"the entity has no {what}: set it in the entity or in the binding's "
                                f"'{what[0].lower() + what[1:]}'")
    if len(value) > 1024:
        raise TableBindingError(f"The {what} '{value[:40]}...' is longer than 1024 characters.")
    if re.search(r"[/\\#?\x00-\x1f\x7f-\x9f]", value):
        raise TableBindingError(f"The {what} '{value}' contains a character that is not allowed ('/', '\\', '#', "
                                "'?' or a control character).")
    return value


def _entity_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise TableBindingError("Unable to cast object of type 'Newtonsoft.Json.Linq.JObject' to type "
                                "'Newtonsoft.Json.Linq.JValue'.")
    if isinstance(value, bool) or isinstance(value, float):
        return value
    if isinstance(value, int):
        return EntityProperty(value, EdmType.INT64)          # JSON integers are Int64 to Newtonsoft
    if isinstance(value, str) and _ISO_DATE.match(value):
        text = value.replace("Z", "+00:00")
        frac = re.search(r"\.(\d+)", text)
        if frac:
            text = text.replace(frac.group(0), "." + frac.group(1)[:6].ljust(6, "0"))
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return value


def parse_output(value: Any, pytype: Any = None) -> list[dict] | None:
    """The entities (dicts) an output value stands for: the worker's generic binding takes `str`/`bytes`
    (JSON text: one object or an array of objects); None writes nothing."""
    if value is None:
        return None
    if not isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f'unable to encode outgoing TypedData: unsupported type "generic" for Python type '
                        f'"{type(value).__name__}"')
    text = bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray)) else value
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise TableBindingError(f"the value is not JSON ({e}): give a JSON object or an array of objects") \
            from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(i, dict) for i in items):
        raise TableBindingError("the value must be a JSON object or an array of JSON objects")
    return items


def to_entity(item: dict, partition_key: str | None, row_key: str | None) -> tuple[dict, str | None]:
    """(entity for azure-data-tables, etag or None): keys from the item (any case) win over the binding's."""
    pk, rk, etag = partition_key, row_key, None
    entity: dict[str, Any] = {}
    for k, v in item.items():
        low = k.lower()
        if low == "partitionkey":
            pk = None if v is None else _key_text(v)
        elif low == "rowkey":
            rk = None if v is None else _key_text(v)
        elif low == ETAG_KEY:
            etag = None if v is None else str(v)
        elif low == "timestamp" or v is None:
            continue
        else:
            entity[k] = _entity_value(v)
    entity["PartitionKey"] = _check_key("PartitionKey", pk)
    entity["RowKey"] = _check_key("RowKey", rk)
    return entity, etag


def batches(entities: list[tuple[dict, str | None]]) -> list[list[tuple]]:
    """Transactions as the extension's TableEntityWriter submits them: per partition in order of first
    appearance, at most 100 actions, a repeated RowKey starting a new batch."""
    out: list[list[tuple]] = []
    current: dict[str, list[tuple]] = {}
    rows: dict[str, set[str]] = {}
    for entity, etag in entities:
        pk, rk = entity["PartitionKey"], entity["RowKey"]
        if pk in current and (rk in rows[pk] or len(current[pk]) >= MAX_BATCH):
            out.append(current.pop(pk))
            rows.pop(pk)
        if etag is None:
            action = ("create", entity)
        elif etag == "*":
            action = ("upsert", entity, {"mode": UpdateMode.REPLACE})
        else:
            action = ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                                         "match_condition": MatchConditions.IfNotModified})
        current.setdefault(pk, []).append(action)
        rows.setdefault(pk, set()).add(rk)
    out.extend(current.values())
    return out


# -- storage -------------------------------------------------------------------------------------------------

def _not_found_table(e: HttpResponseError) -> bool:
    code = getattr(e, "error_code", None)
    code = str(getattr(code, "value", code) or "")
    return getattr(e, "status_code", None) == 404 and code in ("TableNotFound", "ResourceNotFound")


async def read_entity(service, table: str, partition_key: str, row_key: str) -> str | None:
    """One entity as JSON text, None when it (or its table) does not exist."""
    client = service.get_table_client(table)
    try:
        entity = await client.get_entity(partition_key, row_key)
    except HttpResponseError as e:
        if getattr(e, "status_code", None) == 404:
            return None
        raise
    return json.dumps(entity_json(entity))


async def query(service, table: str, filter_: str | None, take: int | None) -> str:
    """The matching entities as a JSON array text (a table that does not exist fails, as on Azure)."""
    client = service.get_table_client(table)
    found = []
    pages = client.query_entities(filter_, results_per_page=take) if filter_ else \
        client.list_entities(results_per_page=take)
    async for entity in pages:
        found.append(entity_json(entity))
        if take and len(found) >= take:
            break
    return json.dumps(found)


async def insert(service, table: str, entities: list[tuple[dict, str | None]]) -> int:
    """Submit the entities as the extension does (the table created when missing); returns how many."""
    client = service.get_table_client(table)
    for batch in batches(entities):
        try:
            await client.submit_transaction(batch)
        except HttpResponseError as e:
            if not _not_found_table(e):
                raise
            try:
                await service.create_table(table)
            except ResourceExistsError:
                pass
            await client.submit_transaction(batch)
    return len(entities)
