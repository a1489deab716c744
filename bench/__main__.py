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

# Azure's published per-instance targets for the Azure Storage provider (ratio column)
AZURE_TARGETS = {"sequential": 5.0, "fan-out/fan-in": 100.0, "external events": 50.0}
GOALS = {"sequential": 50.0, "fan-out/fan-in": 1000.0, "starts": 300.0, "external events": 500.0,
         "start-up": 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class HostProcess:
    def __init__(self, conn: str, port: int):
        self.conn, self.port = conn, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(Path(tempfile.mkdtemp()) / "host.log", "w")

    async def start(self, session: aiohttp.ClientSession) -> float:
        env = {**os.environ, "AzureWebJobsStorage": self.conn}
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "durafunc", "start", "--port", str(self.port),
                                      "--no-reload"], cwd=HERE / "app", env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
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
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError("instances not finished")
    missing = ids - await listing("Completed")
    assert not missing, f"{len(missing)} instances did not complete"


async def run_durafunc(conn: str, quick: bool, repeat: int = 3) -> tuple[dict, dict]:
    """Each throughput workload `repeat` times on one host: (medians, every run's figures)."""
    n_seq, n_fan, n_starts, n_events, n_lat = (50, 200, 100, 100, 10) if quick else (200, 1000, 500, 500, 40)
    runs: dict[str, list[float]] = {}
    results = {}
    port = free_port()
    host = HostProcess(conn, port)
    conn_limit = aiohttp.TCPConnector(limit=64)

    async def sequential():
        t = time.monotonic()
        await wait_done(session, host, await start(session, host, "sequential", n_seq))
        return n_seq / (time.monotonic() - t)

    async def fan_out():
        t = time.monotonic()
        await wait_done(session, host, await start(session, host, "fanout", n_fan))
        return n_fan / (time.monotonic() - t)

    async def starts():
        t = time.monotonic()
        sem = asyncio.Semaphore(50)

        async def one():
            async with sem:
                return await start(session, host, "single", None)
        ids = set(await asyncio.gather(*(one() for _ in range(n_starts))))
        await wait_all_completed(session, host, ids)
        return n_starts / (time.monotonic() - t)

    async def events():
        iid = await start(session, host, "events", n_events)
        await asyncio.sleep(0.2)
        t = time.monotonic()
        url = f"{host.base}/runtime/webhooks/durabletask/instances/{iid}/raiseEvent/tick"
        sem = asyncio.Semaphore(EVENT_SENDERS)

        async def send(i):
            async with sem:
                async with session.post(url, json=i) as r:
                    assert r.status == 202, await r.text()
        await asyncio.gather(*(send(i) for i in range(n_events)))
        await wait_done(session, host, iid)
        return n_events / (time.monotonic() - t)

    async with aiohttp.ClientSession(connector=conn_limit) as session:
        results["start-up"] = await host.start(session)
        try:
            await wait_done(session, host, await start(session, host, "single", None))   # warm-up
            for name, workload in (("sequential", sequential), ("fan-out/fan-in", fan_out), ("starts", starts),
                                   ("external events", events)):
                runs[name] = [await workload() for _ in range(repeat)]
                results[name] = statistics.median(runs[name])
                if name == "fan-out/fan-in":
                    results["memory"] = peak_rss_mb(host.proc.pid)

            lat = []
            for _ in range(n_lat):
                t = time.monotonic()
                await wait_done(session, host, await start(session, host, "single", None), interval=0.002)
                lat.append((time.monotonic() - t) * 1000)
                await asyncio.sleep(0.05)
            lat.sort()
            results["latency p50"] = statistics.median(lat)
            results["latency p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        finally:
            host.stop()
    return results, runs


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
         "external events": "events/s", "latency p50": "ms", "latency p99": "ms", "start-up": "s",
         "memory": "MB peak RSS"}


def table(ours: dict, peer: dict | str) -> list[dict]:
    rows = []
    for key, unit in UNITS.items():
        v = ours.get(key)
        target = AZURE_TARGETS.get(key)
        p = peer.get(key) if isinstance(peer, dict) else None
        rows.append({"workload": key, "figure": v, "unit": unit, "azure_target": target,
                     "ratio_vs_azure": (v / target) if (v and target) else None, "goal": GOALS.get(key),
                     "dbos": p, "ratio_vs_dbos": (v / p) if (v and p and unit.endswith("/s")) else None})
    return rows


def render(rows: list[dict], peer) -> str:
    def f(x, digits=1):
        return "-" if x is None else f"{x:,.{digits}f}"
    lines = [f"{'workload':<18}{'figure':>12} {'unit':<14}{'Azure target':>13}{'ratio':>9}{'goal':>9}"
             f"{'DBOS':>11}{'vs DBOS':>9}"]
    for r in rows:
        lines.append(f"{r['workload']:<18}{f(r['figure'], 2 if r['unit'] == 's' else 1):>12} {r['unit']:<14}"
                     f"{f(r['azure_target']):>13}{f(r['ratio_vs_azure']) + ('x' if r['ratio_vs_azure'] else ''):>9}"
                     f"{f(r['goal']):>9}{f(r['dbos']):>11}"
                     f"{f(r['ratio_vs_dbos'], 2) + ('x' if r['ratio_vs_dbos'] else ''):>9}")
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
    az = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True),
                        Path(tempfile.mkdtemp(prefix="durafunc-bench-")), binary=binary)
    conn = az.start(timeout=60)
    try:
        ours, runs = asyncio.run(run_durafunc(conn, args.quick, max(1, args.repeat)))
    finally:
        az.stop()
    peer = "skipped (--no-peer)" if args.no_peer else run_peer(args.quick)
    rows = table(ours, peer)
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
