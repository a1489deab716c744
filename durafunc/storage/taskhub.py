"""A task hub: its tables, queues and containers on one storage account (§1, §12.1)."""
from __future__ import annotations

import asyncio
import re

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from .account import StorageAccount
from .errors import guard
from .history import HistoryTable
from .instances import InstancesTable
from .largemessages import LargeMessages
from .leases import PartitionLeases, create_lease_store
from .names import TaskHubNames, partition_index
from .queues import POISON_SUFFIX, MessageQueue


async def _quietly(coro, *errors: type[Exception]) -> bool:
    """Await `coro`; False instead of raising one of `errors`."""
    try:
        await coro
        return True
    except errors:
        return False


class TaskHub:
    def __init__(self, connection_string: str, hub_name: str, partition_count: int = 4):
        self.names = TaskHubNames(hub_name, partition_count)
        self.account = StorageAccount.from_connection_string(connection_string)
        self.large_messages = LargeMessages(self.account, self.names.large_messages_container)
        self.history = HistoryTable(self.account, self.names.history_table, self.large_messages)
        self.instances = InstancesTable(self.account, self.names.instances_table, self.large_messages, hub_name)
        self.control_queues = [MessageQueue(self.account, q, self.large_messages) for q in self.names.control_queues]
        self.work_items = MessageQueue(self.account, self.names.work_items_queue, self.large_messages)

    @property
    def hub_name(self) -> str:
        return self.names.hub

    def control_queue_for(self, instance_id: str) -> MessageQueue:
        return self.control_queues[partition_index(instance_id, self.names.partition_count)]

    def partition_leases(self, worker_id: str, lease_duration: float = 15.0) -> PartitionLeases:
        return PartitionLeases(self.account, self.names, worker_id, lease_duration)

    @guard
    async def create_if_not_exists(self) -> None:
        """Create every table, queue and container (in parallel), `taskhub.json` and the lease blobs."""
        tables = self.account.table_service
        blobs = self.account.blob_service
        app_lease = blobs.get_container_client(self.names.app_lease_container)

        async def app_lease_container() -> None:
            await _quietly(app_lease.create_container(), ResourceExistsError)
            await _quietly(app_lease.upload_blob(self.names.app_lease_info_blob, b"{}", overwrite=False),
                           ResourceExistsError)

        await asyncio.gather(
            *(_quietly(tables.create_table(t), ResourceExistsError) for t in self.names.tables),
            *(q.create() for q in [*self.control_queues, self.work_items]),
            _quietly(blobs.create_container(self.names.large_messages_container), ResourceExistsError),
            app_lease_container(),
            create_lease_store(self.account, self.names))

    @guard
    async def exists(self) -> bool:
        name = self.names.history_table
        return any([t async for t in self.account.table_service.query_tables(f"TableName eq '{name}'")])

    def _owns_queue(self, name: str) -> bool:
        low = re.escape(self.names.hub.lower())
        return re.fullmatch(rf"{low}-(control-\d\d|workitems)({re.escape(POISON_SUFFIX)})?", name) is not None

    @guard
    async def delete(self) -> bool:
        """Delete every table, queue (including -poison ones and other partition counts' control queues) and
        container of the hub; True if the hub existed."""
        existed = await self.exists()
        tables = self.account.table_service
        queues = self.account.queue_service
        blobs = self.account.blob_service
        queue_names = [q.name async for q in queues.list_queues(name_starts_with=self.names.hub.lower() + "-")
                       if self._owns_queue(q.name)]
        await asyncio.gather(
            *(_quietly(tables.delete_table(t), ResourceNotFoundError)
              for t in [*self.names.tables, self.names.partitions_table]),
            *(_quietly(queues.delete_queue(q), ResourceNotFoundError) for q in queue_names),
            *(_quietly(blobs.delete_container(c), ResourceNotFoundError) for c in self.names.containers))
        return existed

    async def close(self) -> None:
        await self.account.close()

    async def __aenter__(self) -> "TaskHub":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
