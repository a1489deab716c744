"""The storage accounts of an app's bindings: a binding's `connection` resolved to a connection string as the
WebJobs SDK does, and the Azure SDK's async blob, queue and table clients of each account (one aiohttp session
per account, shared by the three services)."""
from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any, Mapping

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.blob.aio import LinearRetry as BlobRetry
from azure.storage.queue._shared.policies_async import LinearRetry as QueueRetry  # not re-exported by queue.aio
from azure.storage.queue.aio import QueueServiceClient

from ..settings import _ci_get, expand_connection_string
from .errors import BindingError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
CONNECTION_PREFIX = "AzureWebJobs"
# a local emulator: give up within about a second instead of the SDKs' 15 s+ exponential back-off
_RETRIES = 3
_CONNECT_TIMEOUT = 5

for _name in ("azure.core.pipeline.policies.http_logging_policy", "azure.storage", "azure.data.tables"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class MissingConnection(BindingError):
    """A `connection` that names no app setting; str() is the Functions host's one line."""


def resolve_connection(connection: Any, env: Mapping[str, str]) -> tuple[str, str]:
    """The binding's `connection` -> (setting name used, connection string), as the WebJobs SDK resolves it:
    `AzureWebJobs<name>` first, then `<name>`; empty or absent means `AzureWebJobsStorage`. App settings are
    read case-insensitively, as IConfiguration does; an empty value counts as missing."""
    name = str(connection or "").strip()
    candidates = [DEFAULT_CONNECTION] if not name else [CONNECTION_PREFIX + name, name]
    for candidate in candidates:
        value = _ci_get(env, candidate) or None
        if value:
            return candidate, expand_connection_string(value)
    raise MissingConnection(f"Storage account connection string '{candidates[0]}' does not exist. Make sure that "
                           "it is a defined App Setting.")


class Account:
    """The three aio service clients of one connection string, created on first use (inside a running loop)."""

    def __init__(self, connection_string: str):
        self.connection_string = connection_string
        self._session: aiohttp.ClientSession | None = None
        self._blobs: BlobServiceClient | None = None
        self._queues: QueueServiceClient | None = None
        self._tables: TableServiceClient | None = None

    def _transport(self) -> AioHttpTransport:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                                  cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return AioHttpTransport(session=self._session, session_owner=False, connection_timeout=_CONNECT_TIMEOUT)

    @property
    def blobs(self) -> BlobServiceClient:
        if self._blobs is None:
            self._blobs = BlobServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(),
                retry_policy=BlobRetry(backoff=0.3, random_jitter_range=0.1, retry_total=_RETRIES))
        return self._blobs

    @property
    def queues(self) -> QueueServiceClient:
        if self._queues is None:
            self._queues = QueueServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(),
                retry_policy=QueueRetry(backoff=0.3, random_jitter_range=0.1, retry_total=_RETRIES))
        return self._queues

    @property
    def tables(self) -> TableServiceClient:
        if self._tables is None:
            self._tables = TableServiceClient.from_connection_string(
                self.connection_string, transport=self._transport(), retry_total=_RETRIES,
                retry_backoff_factor=0.2, retry_backoff_max=2)
        return self._tables

    @property
    def account_name(self) -> str:
        return self.blobs.account_name

    async def close(self) -> None:
        for client in (self._blobs, self._queues, self._tables):
            if client is not None:
                with suppress(Exception):
                    await client.close()
        self._blobs = self._queues = self._tables = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class StorageClients:
    """One Account per connection string, for every binding and listener of a running host."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self._accounts: dict[str, Account] = {}
        self._queue_clients: dict[tuple[str, str], Any] = {}

    def resolve(self, connection: Any) -> str:
        """The connection string of a binding's `connection` (MissingConnection when it is not defined)."""
        return resolve_connection(connection, self.env)[1]

    def account(self, conn: str) -> Account:
        account = self._accounts.get(conn)
        if account is None:
            account = self._accounts[conn] = Account(conn)
        return account

    def queue(self, conn: str, name: str):
        """A cached QueueClient (its encoding is the caller's: texts in, texts out)."""
        client = self._queue_clients.get((conn, name))
        if client is None:
            client = self._queue_clients[(conn, name)] = self.account(conn).queues.get_queue_client(name)
        return client

    async def close(self) -> None:
        accounts, self._accounts = list(self._accounts.values()), {}
        self._queue_clients.clear()
        for account in accounts:
            await account.close()
