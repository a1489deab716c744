"""Crash safety and two engines on one hub: real processes, SIGKILL, real Azurite."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from durafunc.durable.client import DurableClient
from durafunc.storage.schema import EventType, OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub

HERE = Path(__file__).parent


def start_engine(conn, hub, worker, env):
    p = subprocess.Popen([sys.executable, str(HERE / "engine_proc.py"), conn, hub, worker], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", line + (p.stdout.read() if p.poll() is not None else "")
    return p


def no_duplicates(history):
    scheduled = collections.Counter(e["EventId"] for e in history if e["EventType"] in (
        EventType.TaskScheduled, EventType.TimerCreated, EventType.SubOrchestrationInstanceCreated))
    completed = collections.Counter(e.get("TaskScheduledId", e.get("TimerId")) for e in history if e["EventType"] in (
        EventType.TaskCompleted, EventType.TaskFailed, EventType.TimerFired,
        EventType.SubOrchestrationInstanceCompleted))
    assert all(c == 1 for c in scheduled.values()), scheduled
    assert all(c == 1 for c in completed.values()), completed
    assert sum(1 for e in history if e["EventType"] == EventType.ExecutionStarted) == 1


def test_sigkill_mid_fan_out_and_chain(connection_string, hub_name, tmp_path):
    calls = tmp_path / "calls.log"
    env = {**os.environ, "DURAFUNC_TEST_CALL_LOG": str(calls), "DURAFUNC_TEST_VISIBILITY": "3"}

    async def scenario():
        hub = TaskHub(connection_string, hub_name, 4)
        await hub.create_if_not_exists()
        client = DurableClient(hub)
        proc = start_engine(connection_string, hub_name, "crashy", env)
        try:
            fan = await client.start_new("LoggedFan", "fan", 40)
            chain = await client.start_new("LoggedChain", "chain", 12)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                lines = calls.read_text().splitlines() if calls.exists() else []
                if sum(1 for x in lines if x.startswith("chain:")) >= 3 and \
                        sum(1 for x in lines if x.startswith("fan:")) >= 5:
                    break
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # what was committed at the moment of the kill
            committed = {}
            for iid in (fan, chain):
                h = await client.history(iid)
                committed[iid] = {e["TaskScheduledId"] for e in h if e["EventType"] == EventType.TaskCompleted}
            calls_at_kill = len(calls.read_text().splitlines())
            proc = start_engine(connection_string, hub_name, "crashy", env)
            rows = {iid: await client.wait_for(iid, 60) for iid in (fan, chain)}
            assert rows["fan"].runtime_status == S.Completed and json.loads(rows["fan"].output) == 40
            assert rows["chain"].runtime_status == S.Completed and json.loads(rows["chain"].output) == 12
            for iid in (fan, chain):
                no_duplicates(await client.history(iid))
            lines = calls.read_text().splitlines()
            ran = collections.Counter(lines)
            for iid, n in (("fan", 40), ("chain", 12)):
                assert all(ran[f"{iid}:{i}"] >= 1 for i in range(n))   # at least once
            after_kill = lines[calls_at_kill:]
            for iid in (fan, chain):
                for i in committed[iid]:
                    assert f"{iid}:{i}" not in after_kill, f"{iid}:{i} ran again after its result was committed"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            await hub.delete()
            await hub.close()

    asyncio.run(scenario())


def test_two_engines_share_a_hub(connection_string, hub_name, tmp_path):
    env = {**os.environ, "DURAFUNC_TEST_VISIBILITY": "5"}

    async def scenario():
        hub = TaskHub(connection_string, hub_name, 4)
        await hub.create_if_not_exists()
        client = DurableClient(hub)
        procs = [start_engine(connection_string, hub_name, f"w{i}", env) for i in range(2)]
        try:
            leases = hub.partition_leases("observer")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:   # the partitions balance out between the two engines
                owners = collections.Counter(l.owner for l in await leases.list() if l.leased)
                if set(owners) == {"w0", "w1"} and sum(owners.values()) == 4:
                    break
                await asyncio.sleep(0.2)
            assert set(owners) == {"w0", "w1"}, owners
            ids = [await client.start_new("Chain", f"o{i}") for i in range(50)]
            rows = [await client.wait_for(i, 90) for i in ids]
            assert all(r.runtime_status == S.Completed for r in rows), [r.runtime_status for r in rows]
            for i in ids:
                no_duplicates(await client.history(i))
            workers = {r.worker for r in rows}
            assert workers <= {"w0", "w1"} and len(workers) == 2, workers
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(20)
            await hub.delete()
            await hub.close()

    asyncio.run(scenario())
