"""The bench's workloads as DBOS Transact workflows and steps, on SQLite (offline). Prints one JSON line:
each workload's figure, latency p50/p99, and "rss": the peak RSS (MB) of this process during each workload."""
from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dbos import DBOS, DBOSConfig

from sizes import SIZES   # bench/sizes.py (this script runs with bench/ on its path)

QUICK = "--quick" in sys.argv
N = {k: v[1 if QUICK else 0] for k, v in SIZES.items()}
CITIES = ["Tokyo", "Seattle", "London", "Cairo", "Lima"]

workdir = tempfile.mkdtemp(prefix="dbos-bench-")
config: DBOSConfig = {"name": "durafunc-bench", "system_database_url": f"sqlite:///{workdir}/dbos.sqlite",
                      "run_admin_server": False}
DBOS(config=config)
queue = None


@DBOS.step()
def noop(x):
    return x


@DBOS.step()
def hello(city):
    return f"Hello {city}!"


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


@DBOS.workflow()
def hello_cities():
    return [hello(c) for c in CITIES]


@DBOS.workflow()
def wait_one():
    return DBOS.recv("go", timeout_seconds=600)


def peak_mb(field: str = "VmHWM") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main():
    logging.getLogger("dbos").setLevel(logging.WARNING)
    global queue
    DBOS.launch()
    queue = DBOS.register_queue("fan", worker_concurrency=64, polling_interval_sec=0.01)
    out, rss = {}, {}

    def measure(name, fn):
        reset_peak()
        t = time.monotonic()
        n = fn()
        out[name] = n / (time.monotonic() - t)
        rss[name] = peak_mb()

    measure("sequential", lambda: sequential(N["sequential"]))
    measure("fan-out/fan-in", lambda: fanout(N["fan-out/fan-in"]) and N["fan-out/fan-in"])

    def starts():
        handles = [DBOS.start_workflow(one, i) for i in range(N["starts"])]
        for h in handles:
            h.get_result()
        return N["starts"]
    measure("starts", starts)

    h = DBOS.start_workflow(events, N["external events"])
    time.sleep(0.2)

    def send_events():
        for i in range(N["external events"]):
            DBOS.send(h.get_workflow_id(), i, "tick")
        h.get_result()
        return N["external events"]
    measure("external events", send_events)

    def cities():
        handles = [DBOS.start_workflow(hello_cities) for _ in range(N["hello cities"])]
        for h in handles:
            h.get_result()
        return N["hello cities"]
    measure("hello cities", cities)
    measure("fan-out 10k", lambda: fanout(N["fan-out 10k"]) and N["fan-out 10k"])

    reset_peak()
    waiting = [DBOS.start_workflow(wait_one) for _ in range(N["waiting"])]
    time.sleep(2.0)      # every workflow is in its recv by then
    out["waiting RSS"] = peak_mb("VmRSS")

    def raise_all():
        for w in waiting:
            DBOS.send(w.get_workflow_id(), 1, "go")
        for w in waiting:
            w.get_result()
        return N["waiting"]
    measure("waiting", raise_all)

    lat = []
    for i in range(N["latency"]):
        t = time.monotonic()
        DBOS.start_workflow(one, i).get_result()
        lat.append((time.monotonic() - t) * 1000)
        time.sleep(0.05)
    lat.sort()
    out["latency p50"] = statistics.median(lat)
    out["latency p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    out["memory"] = max(rss.values())
    out["rss"] = rss
    DBOS.destroy()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.stdout.flush()
    main()
    os._exit(0)
