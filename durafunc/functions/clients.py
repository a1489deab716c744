"""The storage accounts of an app's bindings: a binding's `connection` resolved to a connection string as the
WebJobs SDK does, and the Azure SDK's async blob, queue and table clients of each account (one aiohttp session
per account, shared by the three services)."""
from __future__ import annotations

from typing import Any, Mapping

from ..settings import _ci_get, expand_connection_string
from ..storage.account import StorageAccount
from .errors import BindingError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
CONNECTION_PREFIX = "AzureWebJobs"


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


class Account(StorageAccount):
    """The three aio service clients of one connection string (storage.account.StorageAccount: one aiohttp
    session for the three services, the SDKs' retries kept short), under the names the bindings use."""

    @property
    def blobs(self):
        return self.blob_service

    @property
    def queues(self):
        return self.queue_service

    @property
    def tables(self):
        return self.table_service

    @property
    def account_name(self) -> str:
        return self.blob_service.account_name


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
