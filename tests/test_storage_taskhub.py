"""Task hub creation, inventory, deletion; large-message blobs; storage-unavailable errors (§1.2, §3, §7, §12.1)."""
import socket

import pytest

from durafunc.azurite import azurite_connection_string
from durafunc.storage.errors import StorageUnavailableError
from durafunc.storage.names import partition_index
from durafunc.storage.taskhub import TaskHub


async def _inventory(hub: TaskHub, prefix_table: str, prefix: str):
    tables = sorted([t.name async for t in hub.account.table_service.list_tables()
                     if t.name.lower().startswith(prefix_table.lower())])
    queues = sorted([q.name async for q in hub.account.queue_service.list_queues(name_starts_with=prefix)])
    containers = sorted([c.name async for c in hub.account.blob_service.list_containers(name_starts_with=prefix)])
    return tables, queues, containers


async def test_create_makes_exactly_the_dtfx_inventory(connection_string, hub_name):
    async with TaskHub(connection_string, hub_name) as hub:
        h = hub_name.lower()
        assert not await hub.exists()
        await hub.create_if_not_exists()
        await hub.create_if_not_exists()  # second call is quiet
        assert await hub.exists()
        tables, queues, containers = await _inventory(hub, hub_name, h + "-")
        assert tables == [f"{hub_name}History", f"{hub_name}Instances"]
        assert queues == [f"{h}-control-00", f"{h}-control-01", f"{h}-control-02", f"{h}-control-03",
                          f"{h}-workitems"]
        assert containers == [f"{h}-applease", f"{h}-largemessages", f"{h}-leases"]
        app = hub.account.blob_service.get_container_client(f"{h}-applease")
        assert await (await app.download_blob(f"{h}-appleaseinfo")).readall() == b"{}"
        leases = hub.account.blob_service.get_container_client(f"{h}-leases")
        assert sorted([b.name async for b in leases.list_blobs()]) == \
            ["ownership/" + q for q in queues[:4]] + ["taskhub.json"]


async def test_delete_removes_everything_including_poison_queues(connection_string, hub_name):
    async with TaskHub(connection_string, hub_name) as hub:
        await hub.create_if_not_exists()
        await hub.account.queue_service.create_queue(hub.names.work_items_queue + "-poison")
        await hub.account.queue_service.create_queue(hub.names.control_queues[0] + "-poison")
        assert await hub.delete() is True
        assert await _inventory(hub, hub_name, hub_name.lower() + "-") == ([], [], [])
        assert not await hub.exists()
        assert await hub.delete() is False


async def test_control_queue_for_uses_fnv_partition(connection_string, hub_name):
    async with TaskHub(connection_string, hub_name, partition_count=3) as hub:
        assert len(hub.control_queues) == 3
        for iid in ["a", "abc", "myinstance", "@counter@key1"]:
            assert hub.control_queue_for(iid).name == hub.names.control_queues[partition_index(iid, 3)]


async def test_large_messages_urls_and_prefix_delete(connection_string, hub_name):
    async with TaskHub(connection_string, hub_name) as hub:
        lm = hub.large_messages  # container created lazily on first upload
        await lm.upload("abc/x 1.json.gz", "one")
        await lm.upload("abcd/y.json.gz", "two")
        await lm.upload("zz/y.json.gz", "three")
        url = lm.url("abc/x 1.json.gz")
        assert url == lm.container_url + "/abc/x%201.json.gz" and url.startswith("http://")
        assert lm.url("a?b/c#d").endswith("/a%3Fb/c%23d")
        assert await lm.download_url(url) == "one"
        assert await lm.download("zz/y.json.gz") == "three"
        await lm.upload("a/b/message-1.json.gz", "raw id")
        await lm.upload("a^0b/history-1.json.gz", "escaped id")
        await lm.upload("a/bc/message-1.json.gz", "another instance")
        assert await lm.delete_instance_blobs("a/b") == 2
        assert await lm.download("a/bc/message-1.json.gz") == "another instance"
        assert lm.is_blob_url(url) and not lm.is_blob_url('"http://example.com/x"')
        assert await lm.delete_prefix("abc") == 2  # no trailing '/': abcd/ matches too, as in DTFx
        assert await lm.delete_prefix("abc") == 0
        assert await lm.download("zz/y.json.gz") == "three"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_storage_raises_storage_unavailable():
    port = _free_port()
    async with TaskHub(azurite_connection_string("127.0.0.1", port, port, port), "Nowhere") as hub:
        with pytest.raises(StorageUnavailableError):
            await hub.work_items.peek_count()
