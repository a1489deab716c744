"""One storage account: the async Table, Queue and Blob service clients, sharing one aiohttp session."""
from __future__ import annotations

import logging

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import LinearRetry as BlobRetry
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue._shared.policies_async import LinearRetry as QueueRetry  # not re-exported by queue.aio
from azure.storage.queue.aio import QueueServiceClient

from .connection import DEVELOPMENT_STORAGE, expand_connection_string  # noqa: F401 - re-exported

# The SDKs log every request and response at INFO; keep only warnings and errors.
for _name in ("azure.core.pipeline.policies.http_logging_policy", "azure.storage", "azure.data.tables"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Local emulator: give up within about a second instead of the storage SDKs' 15 s+ exponential backoff.
_RETRIES = 3
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 20      # a stalled connection fails the call (and is retried) instead of hanging for 5 minutes


class StorageAccount:
    """Lazily built aio service clients over one shared aiohttp.ClientSession (create inside a running loop)."""

    def __init__(self, connection_string: str):
        self.connection_string = expand_connection_string(connection_string)
        self._session: aiohttp.ClientSession | None = None
        self._tables: TableServiceClient | None = None
        self._queues: QueueServiceClient | None = None
        self._blobs: BlobServiceClient | None = None

    @classmethod
    def from_connection_string(cls, conn: str) -> "StorageAccount":
        return cls(conn)

    def _transport(self) -> AioHttpTransport:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False)
        return AioHttpTransport(session=self._session, session_owner=False, connection_timeout=_CONNECT_TIMEOUT,
                                read_timeout=_READ_TIMEOUT)

    @property
    def table_service(self) -> TableServiceClient:
        if self._tables is None:
            self._tables = TableServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(), retry_total=_RETRIES,
                retry_backoff_factor=0.2, retry_backoff_max=2)
        return self._tables

    @property
    def queue_service(self) -> QueueServiceClient:
        if self._queues is None:
            self._queues = QueueServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(),
                retry_policy=QueueRetry(backoff=0.3, random_jitter_range=0.1, retry_total=_RETRIES))
        return self._queues

    @property
    def blob_service(self) -> BlobServiceClient:
        if self._blobs is None:
            self._blobs = BlobServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(),
                retry_policy=BlobRetry(backoff=0.3, random_jitter_range=0.1, retry_total=_RETRIES))
        return self._blobs

    def _key_parts(self):
        parts = {k.strip().lower(): v.strip() for k, _, v in
                 (p.partition("=") for p in self.connection_string.split(";")) if k.strip()}
        return parts, parts.get("accountname"), parts.get("accountkey")

    def _session_getter(self):
        def session():
            self._transport()
            return self._session
        return session

    def raw_queue_ops(self):
        """RawQueueOps when the connection has a shared key and a queue endpoint (else None: use the SDK)."""
        if not hasattr(self, "_raw_queue"):
            parts, name, key = self._key_parts()
            endpoint = parts.get("queueendpoint")
            from .rawops import RawQueueOps
            self._raw_queue = RawQueueOps(self._session_getter(), endpoint, name, key) \
                if (name and key and endpoint) else None
        return self._raw_queue

    def raw_table_ops(self):
        if not hasattr(self, "_raw_table"):
            parts, name, key = self._key_parts()
            endpoint = parts.get("tableendpoint")
            from .rawops import RawTableOps
            self._raw_table = RawTableOps(self._session_getter(), endpoint, name, key) \
                if (name and key and endpoint) else None
        return self._raw_table

    def raw_batch(self, table: str):
        """A RawTableBatch for `table` when the connection has a shared key (else None: use the SDK)."""
        parts = {k.strip().lower(): v.strip() for k, _, v in
                 (p.partition("=") for p in self.connection_string.split(";")) if k.strip()}
        name, key = parts.get("accountname"), parts.get("accountkey")
        endpoint = parts.get("tableendpoint") or (
            f"{parts.get('defaultendpointsprotocol', 'https')}://{name}.table.{parts.get('endpointsuffix', 'core.windows.net')}"
            if name else None)
        if not (name and key and endpoint):
            return None
        from .rawbatch import RawTableBatch

        def session():
            self._transport()
            return self._session
        return RawTableBatch(session, endpoint, name, key, table)

    async def close(self) -> None:
        for client in (self._tables, self._queues, self._blobs):
            if client is not None:
                await client.close()
        self._tables = self._queues = self._blobs = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "StorageAccount":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
