"""Entity group transactions ($batch) on the Table service over plain aiohttp.

The Azure SDK builds $batch bodies with the `email` package, which costs several milliseconds of CPU per
checkpoint; this module writes the same multipart request directly (Table REST API, SharedKeyLite auth).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlparse

from azure.data.tables import EdmType

from .retry import CALL_TIMEOUT, retrying

API_VERSION = "2019-02-02"
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")
_ETAG = re.compile(rb"(?im)^ETag:\s*(.+?)\r?$")


class BatchFailed(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"batch failed with {status}: {body[:300]}")
        self.status_code = status


def _edm(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], EdmType):
        v, t = value
        if t == EdmType.INT64:
            return str(v), "Edm.Int64"
        if t == EdmType.DATETIME:
            return (v if isinstance(v, str) else _iso(v)), "Edm.DateTime"
        return v, None
    if isinstance(value, datetime):
        return _iso(value), "Edm.DateTime"
    if isinstance(value, float):
        return value, "Edm.Double"
    return value, None


def _iso(dt: datetime) -> str:
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def entity_json(entity: dict) -> str:
    out: dict[str, Any] = {}
    for k, v in entity.items():
        value, edm = _edm(v)
        out[k] = value
        if edm:
            out[f"{k}@odata.type"] = edm
    return json.dumps(out, separators=(",", ":"))


def _key(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")


class RawTableBatch:
    """Submits $batch requests for one table with the account's shared key."""

    def __init__(self, session_getter, table_endpoint: str, account: str, key_b64: str, table: str):
        self._session = session_getter
        self.endpoint = table_endpoint.rstrip("/")
        self.account = account
        self.key = base64.b64decode(key_b64)
        self.table = table
        self.path = urlparse(self.endpoint).path

    def _auth(self, path: str, date: str) -> str:
        to_sign = f"{date}\n/{self.account}{path}".encode()
        sig = base64.b64encode(hmac.new(self.key, to_sign, hashlib.sha256).digest()).decode()
        return f"SharedKeyLite {self.account}:{sig}"

    async def submit(self, ops: list[tuple[str, dict, str | None]]) -> list[str | None]:
        """ops: (kind, entity, etag) with kind 'upsert' (insert or replace), 'insert', or 'merge' (If-Match etag).
        Returns the ETag of each operation; raises BatchFailed with the first failing status."""
        batch, change = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
        parts = []
        for kind, entity, etag in ops:
            pk, rk = entity["PartitionKey"], entity["RowKey"]
            if kind == "insert":
                line = f"POST {self.endpoint}/{self.table} HTTP/1.1"
            else:
                verb = "PUT" if kind == "upsert" else "MERGE"
                line = f"{verb} {self.endpoint}/{self.table}(PartitionKey='{_key(pk)}',RowKey='{_key(rk)}') HTTP/1.1"
            headers = ["Content-Type: application/json", "Accept: application/json;odata=minimalmetadata",
                       "DataServiceVersion: 3.0"]
            if kind == "insert":
                headers.append("Prefer: return-no-content")
            if kind == "merge":
                headers.append(f"If-Match: {etag or '*'}")
            parts.append(f"--{change}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                         f"{line}\r\n" + "\r\n".join(headers) + f"\r\n\r\n{entity_json(entity)}\r\n")
        body = (f"--{batch}\r\nContent-Type: multipart/mixed; boundary={change}\r\n\r\n" + "".join(parts)
                + f"--{change}--\r\n--{batch}--\r\n").encode()
        date = formatdate(usegmt=True)
        path = f"{self.path}/$batch"
        headers = {"x-ms-version": API_VERSION, "x-ms-date": date, "DataServiceVersion": "3.0",
                   "MaxDataServiceVersion": "3.0;NetFx", "Accept": "application/json;odata=minimalmetadata",
                   "Content-Type": f"multipart/mixed; boundary={batch}", "Authorization": self._auth(path, date)}

        async def once() -> bytes:
            async with self._session().post(f"{self.endpoint}/$batch", data=body, headers=headers,
                                            timeout=CALL_TIMEOUT) as r:
                raw = await r.read()
                if r.status >= 300:
                    raise BatchFailed(r.status, raw.decode(errors="replace"))
                return raw
        raw = await retrying(once)
        statuses = [int(s) for s in _STATUS.findall(raw)]
        failed = next((s for s in statuses if s >= 300), None)
        if failed is not None or len(statuses) != len(ops):
            raise BatchFailed(failed or 500, raw.decode(errors="replace"))
        etags: list[str | None] = []
        for chunk in raw.split(b"HTTP/1.1 ")[1:]:
            m = _ETAG.search(chunk.split(b"\r\n\r\n", 1)[0])
            etags.append(m.group(1).decode() if m else None)
        return etags
