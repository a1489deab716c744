"""Blob trigger bookkeeping in the host's storage account, in the Storage extension's layout, so that a blob is
processed once per ETag across restarts and across hosts that share the account and host id:

- receipts: `azure-webjobs-hosts/blobreceipts/<host id>/<function id>/<"etag">/<container>/<blob>`, an empty
  block blob whose metadata `Incomplete` marks a receipt taken but not yet completed (BlobReceiptManager);
  taken with a 30 s blob lease while the blob's message is enqueued;
- scan info: `azure-webjobs-hosts/blobscaninfo/<host id>/<account>/<container>/scanInfo`, `{"LatestScan": ...}`,
  the last-modified time from which a restarted host scans a container again;
- the trigger message on `azure-webjobs-blobtrigger-<host id>` (BlobTriggerMessage, indented JSON) and, after
  `maxDequeueCount` failed attempts, the same text on `webjobs-blobtrigger-poison`.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, \
    ResourceNotFoundError

log = logging.getLogger("durafunc.blobs")

HOSTS_CONTAINER = "azure-webjobs-hosts"
RECEIPTS_DIR = "blobreceipts"
SCANINFO_DIR = "blobscaninfo"
INCOMPLETE = "Incomplete"
TRIGGER_QUEUE_PREFIX = "azure-webjobs-blobtrigger-"
POISON_QUEUE = "webjobs-blobtrigger-poison"
LEASE_SECONDS = 30


# -- pure: names and messages ---------------------------------------------------------------------------------

def function_id(function: str) -> str:
    """The FunctionDescriptor id of a function of the Functions host (`Host.Functions.<name>`)."""
    return f"Host.Functions.{function}"


def trigger_queue(host_id: str) -> str:
    return TRIGGER_QUEUE_PREFIX + host_id


def receipt_name(host_id: str, fid: str, etag: str, container: str, blob: str) -> str:
    """The receipt blob's name in `azure-webjobs-hosts` (the ETag before the blob name: the name may hold
    slashes)."""
    return f"{RECEIPTS_DIR}/{host_id}/{fid}/{etag}/{container}/{blob}"


def scan_info_name(host_id: str, account: str, container: str) -> str:
    return f"{SCANINFO_DIR}/{host_id}/{account}/{container}/scanInfo"


def trigger_message(fid: str, blob_type: str, container: str, blob: str, etag: str) -> str:
    """A BlobTriggerMessage as the extension serializes it (Newtonsoft, indented)."""
    return json.dumps({"Type": "BlobTrigger", "FunctionId": fid, "BlobType": blob_type,
                       "ContainerName": container, "BlobName": blob, "ETag": etag}, indent=2)


def parse_trigger_message(body: bytes | str) -> dict[str, Any]:
    """A BlobTriggerMessage; ValueError for anything else (the message then fails, as in the extension)."""
    try:
        parsed = json.loads(body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("Invalid blob trigger message.") from None
    if not isinstance(parsed, dict):
        raise ValueError("Invalid blob trigger message.")
    if not parsed.get("FunctionId"):
        raise ValueError("Invalid function ID.")
    for key in ("ContainerName", "BlobName"):
        if not isinstance(parsed.get(key), str) or not parsed[key]:
            raise ValueError("Invalid blob trigger message.")
    return parsed


def scan_info_text(latest: datetime) -> str:
    """`{"LatestScan": "..."}` (Newtonsoft's ISO format of a DateTimeOffset)."""
    return json.dumps({"LatestScan": latest.isoformat()})


def parse_scan_info(text: str) -> datetime | None:
    try:
        value = json.loads(text).get("LatestScan")
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# -- storage ------------------------------------------------------------------------------------------------

class Receipts:
    """The receipt and scan-info blobs of one host account (`container` is its `azure-webjobs-hosts`)."""

    def __init__(self, container):
        self.container = container

    def blob(self, name: str):
        return self.container.get_blob_client(name)

    async def read(self, name: str) -> bool | None:
        """None when there is no receipt, else whether it is completed."""
        try:
            props = await self.blob(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return not any(k.lower() == INCOMPLETE.lower() for k in (props.metadata or {}))

    async def create(self, name: str) -> bool:
        """Create an incomplete receipt unless one exists (True when this call created it)."""
        for attempt in range(2):
            try:
                await self.blob(name).upload_blob(b"", metadata={INCOMPLETE: INCOMPLETE}, overwrite=False)
                return True
            except ResourceExistsError:
                return False
            except ResourceModifiedError:
                return False
            except ResourceNotFoundError:
                if attempt:
                    raise
                try:
                    await self.container.create_container()
                except ResourceExistsError:
                    pass
            except HttpResponseError as e:
                if e.status_code in (409, 412):       # exists, or leased by someone else
                    return False
                raise
        return False

    async def acquire(self, name: str) -> Any | None:
        """A 30 s lease on the receipt, None when someone else holds one (or the receipt is gone)."""
        try:
            return await self.blob(name).acquire_lease(lease_duration=LEASE_SECONDS)
        except (ResourceExistsError, ResourceNotFoundError):
            return None
        except HttpResponseError as e:
            if e.status_code in (404, 409):
                return None
            raise

    async def complete(self, name: str, lease) -> None:
        """Mark the receipt completed (its metadata without `Incomplete`), under the lease."""
        client = self.blob(name)
        try:
            props = await client.get_blob_properties()
            metadata = {k: v for k, v in (props.metadata or {}).items() if k.lower() != INCOMPLETE.lower()}
            await client.set_blob_metadata(metadata, lease=lease)
        except ResourceNotFoundError:
            pass                  # the user deleted the receipt or its container
        except HttpResponseError as e:
            if e.status_code != 412:                  # 412: the lease expired; do not mark complete
                raise

    @staticmethod
    async def release(lease) -> None:
        try:
            await lease.release()
        except (ResourceNotFoundError, HttpResponseError):
            pass

    async def load_scan(self, name: str) -> datetime | None:
        try:
            stream = await self.blob(name).download_blob()
            return parse_scan_info((await stream.readall()).decode("utf-8", errors="replace"))
        except ResourceNotFoundError:
            return None

    async def save_scan(self, name: str, latest: datetime) -> None:
        """Best effort, as the extension does: a failure is only logged."""
        try:
            try:
                await self.blob(name).upload_blob(scan_info_text(latest).encode(), overwrite=True)
            except ResourceNotFoundError:
                try:
                    await self.container.create_container()
                except ResourceExistsError:
                    pass
                await self.blob(name).upload_blob(scan_info_text(latest).encode(), overwrite=True)
        except Exception as e:  # noqa: BLE001 - best effort
            log.debug("could not save the blob scan info %s: %s", name, e)


def before(moment: datetime) -> datetime:
    """The scan info is stored 1 ms early: blob times have second precision, a blob written in the same second
    after the scan is found again after a restart."""
    return moment - timedelta(milliseconds=1)
