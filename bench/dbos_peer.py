"""The same four workloads as DBOS Transact workflows and steps, on SQLite (offline). Prints one JSON line."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time

from dbos import DBOS, DBOSConfig

QUICK = "--quick" in sys.argv
N_SEQ, N_FAN, N_STARTS, N_EVENTS = (50, 200, 100, 100) if QUICK else (200, 1000, 500, 500)

workdir = tempfile.mkdtemp(prefix="dbos-bench-")
config: DBOSConfig = {"name": "durafunc-bench", "system_database_url": f"sqlite:///{workdir}/dbos.sqlite",
                      "run_admin_server": False}
DBOS(config=config)
queue = None


@DBOS.step()
def noop(x):
    return x


@DBOS.workflow()
def sequential(n):
    for i in range(n):
        noop(i)
    return n


@DBOS.workflow()
def one(i):
    return noop(i)


@DBOS.workflow()
def fanout(n):
    handles = [queue.enqueue(one, i) for i in range(n)]
    return sum(h.get_result() for h in handles)


@DBOS.workflow()
def events(n):
    for _ in range(n):
        DBOS.recv("tick", timeout_seconds=60)
    return n


def main():
    logging.getLogger("dbos").setLevel(logging.WARNING)
    global queue
    DBOS.launch()
    queue = DBOS.register_queue("fan", worker_concurrency=64, polling_interval_sec=0.01)
    out = {}
    t = time.monotonic()
    sequential(N_SEQ)
    out["sequential"] = N_SEQ / (time.monotonic() - t)
    t = time.monotonic()
    fanout(N_FAN)
    out["fan-out/fan-in"] = N_FAN / (time.monotonic() - t)
    t = time.monotonic()
    handles = [DBOS.start_workflow(one, i) for i in range(N_STARTS)]
    for h in handles:
        h.get_result()
    out["starts"] = N_STARTS / (time.monotonic() - t)
    h = DBOS.start_workflow(events, N_EVENTS)
    time.sleep(0.2)
    t = time.monotonic()
    for i in range(N_EVENTS):
        DBOS.send(h.get_workflow_id(), i, "tick")
    h.get_result()
    out["external events"] = N_EVENTS / (time.monotonic() - t)
    DBOS.destroy()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.stdout.flush()
    main()
    os._exit(0)
