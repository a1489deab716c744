"""Crash anywhere: `durafunc start` is SIGKILLed at random moments while 50 orchestrations of mixed patterns
run; after each kill the host restarts. Default: 5 kills; `make test-stress` runs 20."""
from __future__ import annotations

import asyncio
import collections
import json
import random
import signal
import uuid

import pytest

from durafunc.durable.client import DurableClient
from durafunc.storage.schema import EventType, OrchestrationStatus as S
from durafunc.storage.taskhub import TaskHub
from hostutil import HERE, HostProcess
from test_engine_crash import no_duplicates

APP = HERE / "hostapps" / "torture"
KINDS = ["chain", "fan", "timer", "sub", "event"]
EXPECTED = {"chain": 6, "fan": 50, "timer": 2, "sub": 2, "event": "go"}


def torture(connection_string, tmp_path, kills: int):
    hub_name = "Torture" + uuid.uuid4().hex[:10]
    calls = tmp_path / "calls.log"
    env = {"DURAFUNC_TEST_CALL_LOG": str(calls)}
    rng = random.Random(1234)

    async def scenario():
        hub = TaskHub(connection_string, hub_name, 4)
        await hub.create_if_not_exists()
        client = DurableClient(hub)
        ids = {f"{k}-{n}": k for n in range(10) for k in KINDS}
        host = HostProcess(APP, connection_string, hub_name, "--worker-id", "torture", env=env).wait_ready()
        try:
            for iid, kind in ids.items():
                await client.start_new("mixed", iid, json.dumps(kind))
            for iid, kind in ids.items():
                if kind == "event":
                    await client.raise_event(iid, "Go", "go")
            for k in range(kills):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                host.stop(signal.SIGKILL)
                # what was committed when it died: those activities must never run again
                committed = set()
                for iid in list(ids) + [f"sub-{n}-c{i}" for n in range(10) for i in range(2)]:
                    for e in await client.history(iid):
                        if e["EventType"] == EventType.TaskCompleted:
                            committed.add(json.loads(e["Result"]))
                mark = len(calls.read_text().splitlines()) if calls.exists() else 0
                host = HostProcess(APP, connection_string, hub_name, "--worker-id", "torture", env=env).wait_ready()
                await asyncio.sleep(0.5)
                later = calls.read_text().splitlines()[mark:]
                rerun = committed & set(later)
                assert not rerun, f"kill {k}: committed activities ran again: {sorted(rerun)[:5]}"
            rows = {iid: await client.wait_for(iid, 120) for iid in ids}
            bad = {i: (r.runtime_status, r.output) for i, r in rows.items()
                   if r.runtime_status != S.Completed or json.loads(r.output) != EXPECTED[ids[i]]}
            assert not bad, bad
            for iid in ids:
                no_duplicates(await client.history(iid))
            ran = collections.Counter(calls.read_text().splitlines())
            for iid, kind in ids.items():
                n = {"chain": 6, "fan": 50, "timer": 2, "event": 1}.get(kind, 0)
                assert all(ran[f"{iid}:{i}"] >= 1 for i in range(n)), iid   # at least once
        finally:
            host.stop()
            await hub.delete()
            await hub.close()

    asyncio.run(scenario())


def test_torture_five_kills(connection_string, tmp_path):
    torture(connection_string, tmp_path, kills=5)


@pytest.mark.stress
def test_torture_twenty_kills(connection_string, tmp_path):
    torture(connection_string, tmp_path, kills=20)
