"""Reliability: poison messages, storage outage, graceful shutdown, scale-out with a killed host, big payloads."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine_apps
from durafunc.azurite import AzuriteConfig, ManagedAzurite, find_binary
from durafunc.durable.client import ClientError, DurableClient
from durafunc.durable.engine import Engine, EngineOptions
from durafunc.durable.worker import FunctionTable
from durafunc.storage.schema import OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub
from test_engine_crash import no_duplicates, start_engine

REPO = Path(__file__).resolve().parent.parent


class Poisoned(FunctionTable):
    """Orchestrator 'Hurt' makes the engine itself fail (not user code): a message that always fails."""

    async def run_orchestrator(self, name, call):
        if name.lower() == "hurt":
            raise RuntimeError("host bug while processing")
        return await super().run_orchestrator(name, call)

    def orchestrator_names(self):
        return super().orchestrator_names() + ["Hurt"]


async def test_poison_messages_are_moved_aside(connection_string, hub_name):
    import azure.durable_functions as df
    hub = TaskHub(connection_string, hub_name, 1)
    ft = Poisoned({k: df.Orchestrator.create(v) for k, v in engine_apps.ORCHESTRATORS.items()},
                  engine_apps.ACTIVITIES)
    engine = Engine(hub, ft, EngineOptions(max_polling_interval=0.1, control_visibility=1,
                                           poison_max_dequeue_count=2))
    await engine.start()
    try:
        client = DurableClient(hub)          # no engine: messages go through the queue
        queue = hub.control_queues[0]
        await queue.client.send_message("this is not a message")
        await queue.client.send_message(json.dumps({"$type": "DurableTask.AzureStorage.MessageData",
                                                    "TaskMessage": {"Event": {"EventType": 4}}}))
        hurt = await client.start_new("Hurt")
        ok = await client.start_new("Chain")
        row = await client.wait_for(ok, 20)
        assert row.runtime_status == S.Completed          # the partition was never blocked
        poison = hub.account.queue_service.get_queue_client(queue.name + "-poison")
        deadline = time.monotonic() + 20
        texts = []
        while time.monotonic() < deadline:
            texts = [m.content for m in await poison.peek_messages(max_messages=32)]
            if len(texts) >= 3:
                break
            await asyncio.sleep(0.5)
        assert "this is not a message" in texts
        assert sum(1 for t in texts if hurt in t) == 1     # failed more than 2 times -> moved aside
        assert len(texts) == 3
    finally:
        await engine.stop(grace=2)
        await hub.delete()
        await hub.close()


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_storage_outage_is_survived(tmp_path):
    """Azurite on disk is stopped for 10 s mid-run and started again: everything completes."""
    b, q, t = _free_ports(3)
    cfg = AzuriteConfig(blob_port=b, queue_port=q, table_port=t, in_memory=False, location=str(tmp_path / "data"))
    az = ManagedAzurite(cfg, tmp_path, binary=find_binary(REPO))
    conn = az.start()
    env = {**os.environ, "DURAFUNC_TEST_VISIBILITY": "3", "DURAFUNC_TEST_SLOW": "0.5"}
    log_path = tmp_path / "engine.log"

    async def setup():
        hub = TaskHub(conn, "OutageHub", 4)
        await hub.create_if_not_exists()
        ids = [await DurableClient(hub).start_new("LoggedChain", f"o{i}", 6) for i in range(6)]
        await hub.close()
        return ids

    async def finish(ids):
        hub = TaskHub(conn, "OutageHub", 4)
        client = DurableClient(hub)
        rows = [await client.wait_for(i, 90) for i in ids]
        for i in ids:
            no_duplicates(await client.history(i))
        await hub.close()
        return rows

    proc = None
    try:
        ids = asyncio.run(setup())
        proc = subprocess.Popen([os.sys.executable, str(REPO / "tests" / "engine_proc.py"), conn, "OutageHub", "w"],
                                env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        az.stop()
        time.sleep(10)
        az.start()
        rows = asyncio.run(finish(ids))
        assert all(r.runtime_status == S.Completed and json.loads(r.output) == 6 for r in rows), rows
        deadline = time.monotonic() + 15
        while "storage is back" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log_path.read_text()
        assert sum("storage unavailable" in line for line in text.splitlines()) == 1, text[-3000:]   # once
        assert "storage is back" in text
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        az.stop()


def test_graceful_shutdown_hands_partitions_over_at_once(connection_string, hub_name):
    env = {**os.environ, "DURAFUNC_TEST_VISIBILITY": "30"}

    async def scenario():
        hub = TaskHub(connection_string, hub_name, 4)
        await hub.create_if_not_exists()
        client = DurableClient(hub)
        a = start_engine(connection_string, hub_name, "A", env)
        b = None
        try:
            ids = [await client.start_new("Waits", f"g{i}") for i in range(8)]
            for i in ids:
                await client.wait_for(i, 20, until={S.Running})
            b = start_engine(connection_string, hub_name, "B", env)
            t0 = time.monotonic()
            a.send_signal(signal.SIGTERM)
            a.wait(15)
            assert time.monotonic() - t0 < 12
            leases = hub.partition_leases("observer")
            deadline = time.monotonic() + 10
            owners = {}
            while time.monotonic() < deadline:
                owners = {l.partition: l.owner for l in await leases.list() if l.leased}
                if set(owners.values()) == {"B"} and len(owners) == 4:
                    break
                await asyncio.sleep(0.1)
            took = time.monotonic() - t0
            assert set(owners.values()) == {"B"} and len(owners) == 4, owners
            assert took < 10, f"takeover took {took:.1f} s (a lease expiry would take 15 s or more)"
            for i in ids:
                await client.raise_event(i, "Go", i)
            rows = [await client.wait_for(i, 30) for i in ids]
            assert [json.loads(r.output) for r in rows] == ids
        finally:
            for p in (a, b):
                if p and p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(20)
            await hub.delete()
            await hub.close()

    asyncio.run(scenario())


def get_instances_json(conn: str, hub_name: str, cwd) -> list[dict]:
    """Every instance of the hub as `durafunc get-instances --json` prints them (all pages)."""
    out, token = [], None
    while True:
        args = [sys.executable, "-m", "durafunc", "get-instances", "--json", "--top", "100",
                "--task-hub-name", hub_name] + (["--continuation-token", token] if token else [])
        r = subprocess.run(args, cwd=cwd, env={**os.environ, "AzureWebJobsStorage": conn}, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        out += data["instances"]
        token = data["continuationToken"]
        if not token:
            return out


def test_three_hosts_one_killed(connection_string, hub_name, tmp_path):
    env = {**os.environ, "DURAFUNC_TEST_VISIBILITY": "5"}

    async def scenario():
        hub = TaskHub(connection_string, hub_name, 4)
        await hub.create_if_not_exists()
        client = DurableClient(hub)
        procs = {w: start_engine(connection_string, hub_name, w, env) for w in ("h0", "h1", "h2")}
        try:
            leases = hub.partition_leases("observer")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                owners = collections.Counter(l.owner for l in await leases.list() if l.leased)
                if len(owners) == 3 and sum(owners.values()) == 4:
                    break
                await asyncio.sleep(0.2)
            assert len(owners) == 3, owners
            victim = next(w for w, n in owners.items() if n >= 1)
            victim_parts = {l.partition for l in await leases.list() if l.owner == victim}
            ids = [await client.start_new("Chain", f"s{i}") for i in range(100)]
            await asyncio.sleep(0.3)
            procs[victim].send_signal(signal.SIGKILL)      # mid-run: its partitions wait for the lease to expire
            procs[victim].wait()
            ids += [await client.start_new("Chain", f"s{i}") for i in range(100, 200)]
            rows = [await client.wait_for(i, 120) for i in ids]
            assert all(r.runtime_status == S.Completed for r in rows), collections.Counter(
                r.runtime_status for r in rows)
            for i in ids[:20]:
                no_duplicates(await client.history(i))
            workers = collections.Counter(r.worker for r in rows)
            survivors = {"h0", "h1", "h2"} - {victim}
            assert set(workers) <= {"h0", "h1", "h2"} and survivors <= set(workers), workers
            late = [r for r in rows[100:] if hub.control_queue_for(r.instance_id).name in victim_parts]
            assert late and all(r.worker in survivors for r in late)   # taken over by the survivors
            final = {l.owner for l in await leases.list() if l.leased}
            assert victim not in final
            # `durafunc get-instances` tells which host ran what (the worker of the instance row)
            listed = get_instances_json(connection_string, hub_name, tmp_path)
            assert {i["instanceId"]: i["worker"] for i in listed} == {r.instance_id: r.worker for r in rows}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(20)
            await hub.delete()
            await hub.close()

    asyncio.run(scenario())


async def test_large_event_data_round_trips(connection_string, hub_name):
    hub = TaskHub(connection_string, hub_name, 4)
    engine = Engine(hub, engine_apps.function_table(), EngineOptions(max_polling_interval=0.2))
    await engine.start()
    try:
        client = DurableClient(hub, engine)
        iid = await client.start_new("Waits")
        await client.wait_for(iid, 10, until={S.Running})
        big = {"blob": "y" * (1024 * 1024)}
        await client.raise_event(iid, "Go", big)
        row = await client.wait_for(iid, 30)
        assert json.loads(row.output) == big
    finally:
        await engine.stop(grace=2)
        await hub.delete()
        await hub.close()


async def test_purge_refuses_running_instances(connection_string, hub_name):
    hub = TaskHub(connection_string, hub_name, 4)
    engine = Engine(hub, engine_apps.function_table(), EngineOptions(max_polling_interval=0.2))
    await engine.start()
    try:
        client = DurableClient(hub, engine)
        iid = await client.start_new("Waits")
        await client.wait_for(iid, 10, until={S.Running})
        with pytest.raises(ClientError) as e:
            await client.purge(iid)
        assert e.value.status == 409 and "terminate it first" in str(e.value)
        assert (await client.get(iid)).runtime_status == S.Running
    finally:
        await engine.stop(grace=2)
        await hub.delete()
        await hub.close()


def test_restarted_host_adopts_its_leases_at_once(connection_string, tmp_path):
    """Without --worker-id a host is named hostname-port: after a crash, a restart on the same port goes on at
    once instead of waiting for its old leases to expire (15 s)."""
    from hostutil import HERE, HostProcess
    import uuid as _uuid
    app = HERE / "hostapps" / "torture"
    hub = "Adopt" + _uuid.uuid4().hex[:10]
    env = {"DURAFUNC_TEST_CALL_LOG": str(tmp_path / "calls.log")}
    host = HostProcess(app, connection_string, hub, env=env).wait_ready()

    async def start_and_check():
        th = TaskHub(connection_string, hub, 4)
        c = DurableClient(th)
        await c.start_new("mixed", "adopt-1", json.dumps("event"))
        await c.wait_for("adopt-1", 20, until={S.Running})
        await th.close()
    asyncio.run(start_and_check())
    host.stop(signal.SIGKILL)
    host = HostProcess(app, connection_string, hub, env=env, port=host.port).wait_ready()
    try:
        t0 = time.monotonic()
        r = host.request("POST", "/runtime/webhooks/durabletask/instances/adopt-1/raiseEvent/Go", "go")
        assert r.status == 202
        s = host.wait_status("/runtime/webhooks/durabletask/instances/adopt-1", timeout=30)
        assert s["runtimeStatus"] == "Completed" and s["output"] == "go"
        assert time.monotonic() - t0 < 8, "waited for the old leases to expire"
    finally:
        host.stop()
