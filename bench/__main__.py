"""`make bench`: Azurite in memory + `durafunc start` on bench/app, each workload over HTTP, then the peer.

Prints a table (workload, figure, unit, Azure target, ratio) and writes bench/results.json.
Options: --quick (smaller workloads, for a smoke run), --no-peer, --repeat N (runs per workload, median shown; 3),
--out PATH.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from durafunc.azurite import AzuriteConfig, ManagedAzurite, find_binary  # noqa: E402

from .sizes import SIZES  # noqa: E402

# Azure's published per-instance targets for the Azure Storage provider (ratio column)
AZURE_TARGETS = {"sequential": 5.0, "fan-out/fan-in": 100.0, "external events": 50.0}
# issue 15's goals: ratios against DBOS in the same run, and two absolute ones
GOALS_VS_DBOS = {"sequential": 0.5, "fan-out/fan-in": 20.0, "starts": 3.0, "external events": 5.0}
GOALS = {"start-up": ("<=", 1.0), "waiting RSS": ("<=", 300.0)}
LOW_RUN_GOAL = 0.5      # no run of a workload below half its median


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM (peak RSS) or VmRSS (now) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class HostProcess:
    def __init__(self, conn: str, port: int, hub: str | None = None):
        self.conn, self.port, self.hub = conn, port, hub   # hub: --task-hub-name (None: host.json's)
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(Path(tempfile.mkdtemp()) / "host.log", "w")

    async def start(self, session: aiohttp.ClientSession) -> float:
        env = {**os.environ, "AzureWebJobsStorage": self.conn}
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "durafunc", "start", "--port", str(self.port),
                                      "--no-reload", *(["--task-hub-name", self.hub] if self.hub else [])],
                                     cwd=HERE / "app", env=env, stdout=self.log, stderr=subprocess.STDOUT)
        while time.monotonic() - t0 < 60:
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited with {self.proc.returncode}; see {self.log.name}")
            try:
                async with session.get(f"{self.base}/admin/host/status") as r:
                    if r.status == 200 and (await r.json()).get("state") == "Running":
                        return time.monotonic() - t0
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
        raise RuntimeError("host did not answer within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def start(session, host, name, value) -> str:
    async with session.post(f"{host.base}/api/start/{name}", json=value) as r:
        body = await r.json()
        assert r.status == 202, body
        return body["id"]


async def wait_done(session, host, iid, timeout=600.0, interval=0.005) -> dict:
    url = f"{host.base}/runtime/webhooks/durabletask/instances/{iid}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        async with session.get(url) as r:
            body = await r.json()
            if body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                assert body["runtimeStatus"] == "Completed", body
                return body
        await asyncio.sleep(interval)
    raise TimeoutError(iid)


EVENT_SENDERS = 8   # clients raising events at once (the orchestration still takes them one by one)


def poll_gap(t0: float) -> float:
    """Seconds between two listing queries: a listing filters the whole Instances table, which Azurite scans,
    so polling it every 50 ms while thousands of instances run takes Azurite's CPU from the workload; the gap
    grows with the wait (2 % of it), which bounds the error it adds to a figure to about 2 %."""
    return max(0.05, 0.02 * (time.monotonic() - t0))


async def wait_all_completed(session, host, ids: set, timeout: float = 600.0) -> None:
    """Poll the list of unfinished instances (it shrinks as they complete), one query per round."""
    base = f"{host.base}/runtime/webhooks/durabletask/instances/"
    t0 = time.monotonic()

    async def listing(statuses: str) -> set:
        found, token = set(), None
        while True:
            headers = {"x-ms-continuation-token": token} if token else {}
            async with session.get(f"{base}?runtimeStatus={statuses}&top=1000", headers=headers) as r:
                body = await r.json()
                if r.status != 200:     # e.g. a 503 while storage is busy: ask again
                    print(f"  (instances query answered {r.status}: {str(body)[:200]}; asking again)", flush=True)
                    await asyncio.sleep(0.5)
                    continue
                found |= {i["instanceId"] for i in body}
                token = r.headers.get("x-ms-continuation-token")
            if not token:
                return found
    while time.monotonic() - t0 < timeout:
        if not (ids & await listing("Pending,Running")):
            break
        await asyncio.sleep(poll_gap(t0))
    else:
        raise TimeoutError("instances not finished")
    missing = ids - await listing("Completed")
    assert not missing, f"{len(missing)} instances did not complete"




def size(name: str, quick: bool) -> int:
    return SIZES[name][1 if quick else 0]


async def run_durafunc(binary: str, quick: bool, repeat: int = 3) -> tuple[dict, dict, dict]:
    """Each throughput workload `repeat` times on one host: (medians, every run's figures, peak RSS per workload)."""
    runs: dict[str, list[float]] = {}
    results: dict[str, float] = {}
    rss: dict[str, float] = {}
    waiting_rss: list[float] = []
    host: HostProcess | None = None
    conn_limit = aiohttp.TCPConnector(limit=64)

    async def start_many(name: str, n: int, value=None, at_once: int = 50) -> set:
        sem = asyncio.Semaphore(at_once)

        async def one():
            async with sem:
                return await start(session, host, name, value)
        return set(await asyncio.gather(*(one() for _ in range(n))))

    async def one_orchestration(name: str, n: int):
        t = time.monotonic()
        await wait_done(session, host, await start(session, host, name, n))
        return n / (time.monotonic() - t)

    async def sequential():
        return await one_orchestration("sequential", size("sequential", quick))

    async def fan_out():
        return await one_orchestration("fanout", size("fan-out/fan-in", quick))

    async def fan_out_10k():
        return await one_orchestration("fanout", size("fan-out 10k", quick))

    async def starts():
        n = size("starts", quick)
        t = time.monotonic()
        await wait_all_completed(session, host, await start_many("single", n))
        return n / (time.monotonic() - t)

    async def hello_cities():
        n = size("hello cities", quick)
        t = time.monotonic()
        await wait_all_completed(session, host, await start_many("hello_cities", n))
        return n / (time.monotonic() - t)

    async def events():
        n = size("external events", quick)
        iid = await start(session, host, "events", n)
        await asyncio.sleep(0.2)
        t = time.monotonic()
        url = f"{host.base}/runtime/webhooks/durabletask/instances/{iid}/raiseEvent/tick"
        sem = asyncio.Semaphore(EVENT_SENDERS)

        async def send(i):
            async with sem:
                async with session.post(url, json=i) as r:
                    assert r.status == 202, await r.text()
        await asyncio.gather(*(send(i) for i in range(n)))
        await wait_done(session, host, iid)
        return n / (time.monotonic() - t)

    async def waiting():
        """n orchestrations each waiting for one event: RSS while they all wait, then all events raised."""
        n = size("waiting", quick)
        ids = await start_many("wait_one", n)
        await wait_all_status(session, host, ids, "Running")
        await asyncio.sleep(1.0)
        waiting_rss.append(proc_mb(host.proc.pid, "VmRSS"))
        sem = asyncio.Semaphore(50)
        t = time.monotonic()

        async def send(iid):
            async with sem:
                url = f"{host.base}/runtime/webhooks/durabletask/instances/{iid}/raiseEvent/go"
                async with session.post(url, json=1) as r:
                    assert r.status == 202, await r.text()
        await asyncio.gather(*(send(i) for i in ids))
        await wait_all_completed(session, host, ids)
        return n / (time.monotonic() - t)

    azurite: list = []

    async def fresh_host() -> float:
        """Every run on a fresh in-memory Azurite and a host of its own. (One Azurite kept for the whole bench
        stops answering for a minute or more once it has held a few thousand HelloCities orchestrations —
        measured with and without extended sessions — so runs never share one.)"""
        nonlocal host
        az = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True),
                            Path(tempfile.mkdtemp(prefix="durafunc-bench-")), binary=binary)
        conn = await asyncio.get_running_loop().run_in_executor(None, lambda: az.start(timeout=60))
        azurite.append(az)
        host = HostProcess(conn, free_port())
        took = await host.start(session)
        # warm-up: a fresh Azurite (Node) and host run their first requests several times slower
        await wait_done(session, host, await start(session, host, "single", None))
        await wait_done(session, host, await start(session, host, "sequential", 20))
        await wait_done(session, host, await start(session, host, "fanout", 100))
        return took

    def retire() -> None:
        host.stop()
        while azurite:
            azurite.pop().stop()

    async def each_run(workload) -> float:
        await fresh_host()
        try:
            figure = await workload()
            peaks.append(proc_mb(host.proc.pid))
            return figure
        finally:
            retire()

    async with aiohttp.ClientSession(connector=conn_limit) as session:
        results["start-up"] = await fresh_host()
        retire()
        for name, workload in (("sequential", sequential), ("fan-out/fan-in", fan_out), ("starts", starts),
                               ("external events", events), ("hello cities", hello_cities),
                               ("fan-out 10k", fan_out_10k), ("waiting", waiting)):
            peaks: list[float] = []
            runs[name] = [await each_run(workload) for _ in range(repeat)]
            results[name] = statistics.median(runs[name])
            rss[name] = max(peaks)
        await fresh_host()
        try:
            lat = []
            for _ in range(size("latency", quick)):
                t = time.monotonic()
                await wait_done(session, host, await start(session, host, "single", None), interval=0.002)
                lat.append((time.monotonic() - t) * 1000)
                await asyncio.sleep(0.05)
            results["latency p50"], results["latency p99"] = percentiles(lat)
        finally:
            retire()
        results["waiting RSS"] = max(waiting_rss)
        results["memory"] = max(rss.values())     # the host's peak RSS over all workloads
    return results, runs, rss


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


async def wait_all_status(session, host, ids: set, status: str, timeout: float = 600.0) -> None:
    """Until every instance of `ids` has `status` (one listing query per round)."""
    base = f"{host.base}/runtime/webhooks/durabletask/instances/"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found, token = set(), None
        while True:
            headers = {"x-ms-continuation-token": token} if token else {}
            async with session.get(f"{base}?runtimeStatus={status}&top=1000", headers=headers) as r:
                if r.status != 200:
                    await asyncio.sleep(0.5)
                    continue
                found |= {i["instanceId"] for i in await r.json()}
                token = r.headers.get("x-ms-continuation-token")
            if not token:
                break
        if ids <= found:
            return
        await asyncio.sleep(poll_gap(t0))
    raise TimeoutError(f"instances not {status}")


def run_peer(quick: bool) -> dict | str:
    """DBOS Transact on SQLite in a subprocess (bench/dbos_peer.py); a string says why it did not run."""
    try:
        out = subprocess.run([sys.executable, str(HERE / "dbos_peer.py")] + (["--quick"] if quick else []),
                             capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "DBOS peer timed out"
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"DBOS peer did not run: {tail[0]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


UNITS = {"sequential": "activities/s", "fan-out/fan-in": "activities/s", "starts": "completed/s",
         "external events": "events/s", "hello cities": "orchestr./s", "fan-out 10k": "activities/s",
         "waiting": "events/s", "waiting RSS": "MB RSS", "latency p50": "ms", "latency p99": "ms",
         "start-up": "s", "memory": "MB peak RSS"}


def goal_of(key: str) -> tuple[str, float, bool] | None:
    """(how the goal is read, its value, whether it is a ratio against DBOS)"""
    if key in GOALS_VS_DBOS:
        return ">=", GOALS_VS_DBOS[key], True
    if key in GOALS:
        return (*GOALS[key], False)
    return None


def table(ours: dict, runs: dict, rss: dict, peer: dict | str) -> list[dict]:
    rows = []
    peer_rss = peer.get("rss", {}) if isinstance(peer, dict) else {}
    for key, unit in UNITS.items():
        v = ours.get(key)
        p = peer.get(key) if isinstance(peer, dict) else None
        ratio = (v / p) if (v and p and unit.endswith("/s")) else None
        low = (min(runs[key]) / v) if (key in runs and v) else None
        goal, met = goal_of(key), None
        if goal:
            op, g, vs_dbos = goal
            x = ratio if vs_dbos else v
            met = None if x is None else (x >= g if op == ">=" else x <= g)
        rows.append({"workload": key, "figure": v, "unit": unit, "dbos": p, "ratio_vs_dbos": ratio,
                     "azure_target": AZURE_TARGETS.get(key),
                     "goal": None if goal is None else f"{goal[0]} {goal[1]:g}{'x' if goal[2] else ''}",
                     "goal_met": met, "lowest_run_vs_median": low,
                     "low_run_ok": None if low is None else low >= LOW_RUN_GOAL,
                     "rss_mb": rss.get(key), "dbos_rss_mb": peer_rss.get(key)})
    return rows


def render(rows: list[dict], peer) -> str:
    def f(x, digits=1):
        return "-" if x is None else f"{x:,.{digits}f}"
    lines = [f"{'workload':<16}{'figure':>10} {'unit':<13}{'DBOS':>10}{'vs DBOS':>9}{'goal':>10}{'met':>5}"
             f"{'low run':>9}{'RSS MB':>8}{'DBOS MB':>9}"]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["goal_met"]]
        low = "-" if r["lowest_run_vs_median"] is None else (
            f"{r['lowest_run_vs_median']:.2f}" + ("" if r["low_run_ok"] else "!"))
        lines.append(f"{r['workload']:<16}{f(r['figure'], 2 if r['unit'] == 's' else 1):>10} {r['unit']:<13}"
                     f"{f(r['dbos']):>10}{f(r['ratio_vs_dbos'], 2) + ('x' if r['ratio_vs_dbos'] else ''):>9}"
                     f"{r['goal'] or '':>10}{met:>5}{low:>9}{f(r['rss_mb'], 0):>8}{f(r['dbos_rss_mb'], 0):>9}")
    lines.append("(low run: the lowest of the runs against their median, goal >= 0.5; RSS: peak during the workload;"
                 " waiting RSS: while every instance waits)")
    if isinstance(peer, str):
        lines.append(f"(peer: {peer})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    ap.add_argument("--no-peer", action="store_true", help="skip DBOS")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each throughput workload (the median is shown)")
    args = ap.parse_args()
    binary = find_binary(ROOT)
    if not binary:
        sys.exit("Azurite is not installed: run 'make install'")
    ours, runs, rss = asyncio.run(run_durafunc(binary, args.quick, max(1, args.repeat)))
    peer = "skipped (--no-peer)" if args.no_peer else run_peer(args.quick)
    rows = table(ours, runs, rss, peer)
    print(render(rows, peer))
    if args.repeat > 1:
        print(f"\n(durafunc throughput: median of {args.repeat} runs; each run: "
              + "; ".join(f"{k} " + " ".join(f"{v:,.0f}" for v in vs) for k, vs in runs.items()) + ")")
    Path(args.out).write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows, "runs": runs, "peer": peer if isinstance(peer, str) else "dbos (sqlite)"}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
