"""Blob bindings, as the Functions host and the Python worker do them (the blob trigger's listener is in
triggers/blob.py).

What the host sends: a blob's content as `bytes`, or as text when the binding's `dataType` is `string`; for the
trigger, the metadata `BlobTrigger` (`container/name`), `Uri`, `Properties` and `Metadata`, and the parameters
of the trigger path. What the function gets, as the worker converts it: a parameter annotated `str` or `bytes`
takes the value as sent (the worker's generic binding), anything else the SDK's `BlobConverter` (a
`func.InputStream`). Outputs go through the same converters (`str`, `bytes`, a file-like object; `None` writes
nothing)."""
from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any, Mapping

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.blob import BlobConverter

from .errors import BindingError
from .model import Binding

CONTAINER_RE = re.compile(r"^(\$root|\$logs|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
DATA_TYPES = ("string", "binary", "stream")


class BlobBindingError(BindingError):
    """A blob binding that cannot work (bad path, bad dataType); str() is one line."""


# -- pure: paths and data types ---------------------------------------------------------------------------

def split_path(path: str) -> tuple[str, str]:
    """`container/blob/name` -> (container, blob name), checked as the WebJobs SDK's BlobPath does."""
    container, slash, name = path.partition("/")
    if not slash or not name:
        raise BlobBindingError(f"Invalid blob path specified : '{path}'. Blob identifiers must be in the format "
                               "'container/blob'.")
    if not CONTAINER_RE.match(container):
        raise BlobBindingError(f"Invalid container name: '{container}' (3-63 lower-case letters, digits and "
                               "single hyphens, starting and ending with a letter or digit)")
    return container, name


def data_type(binding: Binding | None) -> str | None:
    """The binding's `dataType`, lower-cased (`string`, `binary`, `stream`), None when not set."""
    raw = binding.raw.get("dataType") if binding is not None else None
    if raw is None or raw == "":
        return None
    value = str(raw).lower()
    if value not in DATA_TYPES:
        raise BlobBindingError(f"dataType must be one of string, binary, stream, got '{raw}'")
    return value


def content_datum(content: bytes | None, binding: Binding | None) -> meta.Datum:
    """The TypedData the host sends for blob content: text for `dataType: string` (UTF-8, as .NET reads it),
    bytes otherwise; a missing blob is null."""
    if content is None:
        return meta.Datum(None, None)
    if data_type(binding) == "string":
        return meta.Datum(content.decode("utf-8", errors="replace"), "string")
    return meta.Datum(content, "bytes")


def annotation_warning(function: str, binding: Binding, pytype: Any) -> str | None:
    """A start-time hint when a `str`/`bytes` annotation will not get what it says (the host decides by
    dataType, and the worker passes the value through)."""
    try:
        dt = data_type(binding)
    except BlobBindingError:
        return None
    if pytype is str and dt != "string":
        return (f"function '{function}': parameter '{binding.name}' is annotated 'str' but its {binding.type} "
                "binding has no dataType 'string': it gets bytes, as on Azure (set \"dataType\": \"string\", "
                "data_type=\"STRING\" in the v2 model)")
    if pytype is bytes and dt == "string":
        return (f"function '{function}': parameter '{binding.name}' is annotated 'bytes' but its {binding.type} "
                "binding has dataType 'string': it gets str, as on Azure")
    return None


def input_value(data: meta.Datum, pytype: Any, trigger_metadata: Mapping[str, meta.Datum] | None = None) -> Any:
    """The parameter value of a blob trigger or blob input, as the worker converts it."""
    if data.type is None:
        return None
    if pytype in (str, bytes):
        return data.value
    return BlobConverter.decode(data, trigger_metadata=dict(trigger_metadata) if trigger_metadata else None)


def trigger_value(data: meta.Datum, metadata: Mapping[str, meta.Datum], pytype: Any) -> Any:
    return input_value(data, pytype, metadata)


def output_content(value: Any, pytype: Any = None) -> bytes | None:
    """The bytes a blob output value is written as: None writes nothing; a parameter annotated `str`/`bytes`
    takes the worker's generic binding (str or bytes only), anything else the SDK's BlobConverter (str, bytes,
    bytearray, or an object with `read()`). str is written as UTF-8."""
    if value is None:
        return None
    if pytype in (str, bytes):
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        raise TypeError(f'unable to encode outgoing TypedData: unsupported type "generic" for Python type '
                        f'"{type(value).__name__}"')
    try:
        datum = BlobConverter.encode(value, expected_type=pytype)
    except NotImplementedError:
        raise TypeError(f'unable to encode outgoing TypedData: unsupported type "blob" for Python type '
                        f'"{type(value).__name__}"') from None
    if datum.type == "string":
        return datum.value.encode("utf-8")
    return bytes(datum.value)


# -- pure: what the trigger sends -------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def quoted_etag(etag: str) -> str:
    """An ETag as the service sends it in headers (`"0x8D..."`; listings give it without the quotes)."""
    return '"' + (etag or "").strip('"') + '"'


def blob_type_name(blob_type: Any) -> str:
    """`BlockBlob`, `PageBlob` or `AppendBlob` (the SDK's enum or its value)."""
    return str(getattr(blob_type, "value", blob_type) or "BlockBlob")


def properties_json(props: Any) -> dict[str, Any]:
    """The `Properties` trigger metadata of a blob (azure.storage.blob BlobProperties), with the .NET
    BlobProperties names the Python SDK's BlobConverter reads (`ContentLength`)."""
    cs = getattr(props, "content_settings", None)
    md5 = getattr(cs, "content_md5", None) if cs is not None else None
    lease = getattr(props, "lease", None)
    out = {
        "LastModified": _iso(getattr(props, "last_modified", None)),
        "CreatedOn": _iso(getattr(props, "creation_time", None)),
        "ContentLength": int(getattr(props, "size", 0) or 0),
        "ContentType": getattr(cs, "content_type", None) if cs is not None else None,
        "ContentEncoding": getattr(cs, "content_encoding", None) if cs is not None else None,
        "ContentLanguage": getattr(cs, "content_language", None) if cs is not None else None,
        "ContentDisposition": getattr(cs, "content_disposition", None) if cs is not None else None,
        "CacheControl": getattr(cs, "cache_control", None) if cs is not None else None,
        "ContentHash": base64.b64encode(bytes(md5)).decode() if md5 else None,
        "ETag": quoted_etag(getattr(props, "etag", "")),
        "BlobType": blob_type_name(getattr(props, "blob_type", None)).replace("Blob", ""),
        "AccessTier": str(getattr(props, "blob_tier", None) or "") or None,
        "LeaseState": str(getattr(getattr(lease, "state", None), "value", getattr(lease, "state", None)) or "")
                      or None,
        "LeaseStatus": str(getattr(getattr(lease, "status", None), "value", getattr(lease, "status", None)) or "")
                       or None,
        "Metadata": dict(getattr(props, "metadata", None) or {}),
    }
    return {k: v for k, v in out.items() if v is not None}


def trigger_metadata(container: str, name: str, uri: str, props: Mapping[str, Any], metadata: Mapping[str, str],
                     path_data: Mapping[str, str]) -> dict[str, meta.Datum]:
    """The trigger metadata the host sends for a blob: the path parameters, `BlobTrigger`, `Uri`,
    `Properties`, `Metadata`."""
    md = {k: meta.Datum(v, "string") for k, v in path_data.items()}
    md.update({
        "BlobTrigger": meta.Datum(f"{container}/{name}", "string"),
        "Uri": meta.Datum(uri, "string"),
        "Properties": meta.Datum(json.dumps(dict(props)), "json"),
        "Metadata": meta.Datum(json.dumps(dict(metadata)), "json"),
    })
    return md


def binding_data(container: str, name: str, uri: str, props: Mapping[str, Any], metadata: Mapping[str, str],
                 path_data: Mapping[str, str]) -> dict[str, Any]:
    """What `{...}` expressions of the other bindings see: `{name}` and the other path parameters,
    `{BlobTrigger}`, `{Uri}`, `{Properties.ContentLength}`, `{Metadata.key}`."""
    return {**path_data, "BlobTrigger": f"{container}/{name}", "Uri": uri, "Properties": dict(props),
            "Metadata": dict(metadata)}


# -- storage ------------------------------------------------------------------------------------------------------

async def read(service, container: str, name: str) -> tuple[bytes, Any] | None:
    """(content, BlobProperties) of a blob, None when the blob or its container does not exist."""
    try:
        stream = await service.get_blob_client(container, name).download_blob()
        return await stream.readall(), stream.properties
    except ResourceNotFoundError:
        return None


async def write(service, container: str, name: str, content: bytes) -> None:
    """Write (overwrite) a block blob; the container is created if missing, as the Storage extension does."""
    client = service.get_blob_client(container, name)
    try:
        await client.upload_blob(content, overwrite=True)
    except ResourceNotFoundError:
        try:
            await service.get_container_client(container).create_container()
        except ResourceExistsError:
            pass
        await client.upload_blob(content, overwrite=True)
