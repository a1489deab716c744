"""Table row helpers (pure): history events <-> History rows (§2.2, §2.3), large properties, OData literals."""
from __future__ import annotations

import json
import random
import re
from datetime import datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from .schema import (COMPLEX_MEMBERS, DATETIME_MEMBERS, ENUM_MEMBERS, EVENT_MEMBERS,
                     LARGE_PROPERTY_CANDIDATES, EventType, format_time, parse_time)

TIMESTAMP_COLUMN = "_Timestamp"
BLOB_NAME_SUFFIX = "BlobName"
LARGE_PROPERTY_BYTES = 60 * 1024           # UTF-16 bytes above which a property moves to a blob
ROW_BASE_ESTIMATE = 1024                   # DTFx's per-row size estimate, plus the candidates' UTF-16 bytes
_KEY_COLUMNS = ("PartitionKey", "RowKey", "ExecutionId")
_INT32 = range(-(2 ** 31), 2 ** 31)
_EDM_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def utf16_size(text: str) -> int:
    return len(text.encode("utf-16-le"))


def is_large(value: Any) -> bool:
    """True for a string whose UTF-16 size exceeds the 60 KiB table property limit DTFx uses."""
    if not isinstance(value, str) or len(value) * 4 <= LARGE_PROPERTY_BYTES:  # <= 4 bytes per code point
        return False
    return utf16_size(value) > LARGE_PROPERTY_BYTES


def json_text(value: Any) -> str:
    """Newtonsoft-style compact JSON; None -> "null" (DT.AzureStorage 2.x)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_json_text(value: Any) -> Any:
    if value is None or value == "" or value == "null":
        return None
    return json.loads(value) if isinstance(value, str) else value


def table_time(value: str | datetime) -> tuple[str, EdmType]:
    """An ISO time -> an Edm.DateTime property (7-digit text passes through unchanged)."""
    if isinstance(value, str) and _EDM_TIME_RE.match(value):
        return value, EdmType.DATETIME
    return format_time(parse_time(value)), EdmType.DATETIME


def time_text(value: Any) -> str | None:
    """An Edm.DateTime read back -> the format_time text (7 fractional digits, 'Z')."""
    if value is None:
        return None
    service = getattr(value, "tables_service_value", None)
    if isinstance(service, str) and _EDM_TIME_RE.match(service):
        return service
    return format_time(parse_time(value))


def odata_literal(value: str | datetime) -> str:
    """A value quoted for an OData $filter."""
    if isinstance(value, datetime):
        return f"datetime'{parse_time(value).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
    return "'" + str(value).replace("'", "''") + "'"


def plain(value: Any) -> Any:
    return value.value if isinstance(value, EntityProperty) else value


def event_to_row(event: dict, partition_key: str, row_key: str, execution_id: str) -> dict:
    """A wire-form event -> a History table entity (None values are left out, complex ones become "null")."""
    row: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key, "ExecutionId": execution_id}
    for key, value in event.items():
        column = TIMESTAMP_COLUMN if key.lower() == "timestamp" else key
        if key == "EventType":
            row[column] = EventType(value).name
        elif key in COMPLEX_MEMBERS:
            row[column] = json_text(value)
        elif value is None:
            continue
        elif key in ENUM_MEMBERS:
            row[column] = ENUM_MEMBERS[key](value).name
        elif key in DATETIME_MEMBERS or column == TIMESTAMP_COLUMN:
            row[column] = table_time(value)
        elif isinstance(value, (dict, list)):
            row[column] = json_text(value)
        elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
            row[column] = (value, EdmType.INT64)
        else:
            row[column] = value
    return row


def row_to_event(row: dict) -> dict:
    """A History table entity (large properties already restored) -> the wire-form event."""
    et = EventType[row["EventType"]]
    event: dict[str, Any] = {"EventType": int(et), "EventId": -1, "IsPlayed": False, "Timestamp": None}
    for member in EVENT_MEMBERS.get(et, ()):
        event[member] = None
    for column, value in row.items():
        if column in _KEY_COLUMNS or column == "EventType" or column.endswith(BLOB_NAME_SUFFIX):
            continue
        key = "Timestamp" if column == TIMESTAMP_COLUMN else column
        value = plain(value)
        if key in COMPLEX_MEMBERS:
            value = parse_json_text(value)
        elif key in ENUM_MEMBERS and isinstance(value, str):
            value = int(ENUM_MEMBERS[key][value])
        elif key in DATETIME_MEMBERS or key == "Timestamp":
            value = time_text(value)
        event[key] = value
    return event


def offload_large_properties(row: dict) -> list[tuple[str, str]]:
    """Move over-limit candidate properties out of `row` (§2.6); returns the (blob name, text) to upload."""
    uploads = []
    for prop in LARGE_PROPERTY_CANDIDATES:
        value = row.get(prop)
        if is_large(value):
            kind = row.get("EventType", "")
            name = (f"{row['PartitionKey']}/history-{row['RowKey']}-{kind}-"
                    f"{random.getrandbits(31):08X}-{prop}.json.gz")
            uploads.append((name, value))
            row[prop] = ""
            row[prop + BLOB_NAME_SUFFIX] = name
    return uploads


def blob_columns(row: dict) -> list[tuple[str, str]]:
    """(property, blob name) for each `{P}BlobName` column of a stored row."""
    return [(col[:-len(BLOB_NAME_SUFFIX)], plain(v)) for col, v in row.items()
            if col.endswith(BLOB_NAME_SUFFIX) and col[:-len(BLOB_NAME_SUFFIX)] in LARGE_PROPERTY_CANDIDATES and v]


def estimated_size(row: dict) -> int:
    """DTFx's estimate of a row's size in a transaction (1024 + UTF-16 bytes of the candidate strings)."""
    return ROW_BASE_ESTIMATE + sum(len(v) * 2 for p in LARGE_PROPERTY_CANDIDATES
                                   if isinstance(v := row.get(p), str) and v)

