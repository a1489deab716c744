"""Partition ownership with DTFx-format blob leases, and two balancers sharing one hub (§9.1, §9.2)."""
import asyncio
import json
import time

import pytest

from durafunc.storage.leases import LeaseBalancer
from durafunc.storage.taskhub import TaskHub


@pytest.fixture
async def hub(connection_string, hub_name):
    h = TaskHub(connection_string, hub_name)
    await h.create_if_not_exists()
    yield h
    await h.close()


async def _blob_json(hub, name):
    container = hub.account.blob_service.get_container_client(hub.names.leases_container)
    return json.loads(await (await container.download_blob(name)).readall())


async def test_store_layout(hub):
    info = await _blob_json(hub, "taskhub.json")
    assert info["TaskHubName"] == hub.hub_name and info["PartitionCount"] == 4 and info["CreatedAt"].endswith("Z")
    lease = await _blob_json(hub, f"ownership/{hub.names.control_queues[2]}")
    assert lease == {"PartitionId": hub.names.control_queues[2], "Owner": None, "Token": None, "Epoch": 0}
    await hub.partition_leases("w").create_store()  # idempotent
    assert (await _blob_json(hub, "taskhub.json"))["CreatedAt"] == info["CreatedAt"]


async def test_acquire_renew_steal_release(hub):
    a, b = hub.partition_leases("worker-a"), hub.partition_leases("worker-b")
    q0 = hub.names.control_queues[0]
    assert await a.acquire(q0)
    [info] = [lease for lease in await b.list() if lease.partition == q0]
    assert info.owner == "worker-a" and info.leased and info.epoch == 1 and info.token
    assert not info.expired
    assert not await b.acquire(q0)  # held by someone else
    assert await a.renew(q0)
    assert await b.steal(q0, info)
    assert not await a.renew(q0)  # lease id changed under a
    [info] = [lease for lease in await a.list() if lease.partition == q0]
    assert info.owner == "worker-b" and info.epoch == 2
    await b.release(q0)
    [info] = [lease for lease in await a.list() if lease.partition == q0]
    assert info.owner is None and info.token is None and not info.leased and info.expired
    assert await a.acquire(q0)
    await a.release(q0)


async def _wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_two_balancers_split_and_fail_over(hub):
    events = []

    def balancer(worker: str) -> LeaseBalancer:
        async def acquired(p):
            events.append((worker, "+", p))

        async def lost(p):
            events.append((worker, "-", p))
        return LeaseBalancer(hub.partition_leases(worker), hub.names.control_queues, acquired, lost,
                             renew_interval=0.5, acquire_interval=0.2)

    a, b = balancer("a"), balancer("b")
    a.start()
    await _wait_for(lambda: len(a.owned) == 4, 5)
    b.start()
    await _wait_for(lambda: len(a.owned) == 2 and len(b.owned) == 2, 10)
    assert a.owned.isdisjoint(b.owned)
    await asyncio.sleep(0.6)  # stays balanced
    assert len(a.owned) == 2 and len(b.owned) == 2
    await a.stop()
    assert a.owned == set()
    await _wait_for(lambda: len(b.owned) == 4, 5)
    await b.stop()
    owners = {lease.owner for lease in await hub.partition_leases("x").list()}
    assert owners == {None}
    assert sum(1 for w, op, _ in events if w == "a" and op == "+") >= 4
    assert {p for w, op, p in events if w == "b" and op == "-"} == set(hub.names.control_queues)
