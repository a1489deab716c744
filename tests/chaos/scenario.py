"""One randomized chaos scenario, reproducible from its seed: real hosts behind the fault proxy on one task hub, the
plan of workload.py carried out (starts, client operations, kills, stops, joins, faults), then a quiet phase (faults
healed, at least one host up) bounded by `settle` seconds, then the checker over the hub and the side-effect log."""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from durafunc.durable.client import DurableClient
from durafunc.storage.taskhub import TaskHub

from . import sidelog
from .checker import TERMINAL, Report, check
from .clientops import ClientOps
from .hosts import HostPool
from .proxy import FaultProxy
from .snapshot import read_snapshot
from .timeline import Timeline
from .workload import Chaos, Op, Plan, Start, build

MAX_HOSTS = 3


@dataclass
class Outcome:
    plan: Plan
    report: Report
    timeline: Timeline
    text: str


def describe_timeline(tl: Timeline, t0: float) -> str:
    lines = []
    for h in tl.hosts:
        end = f"{h.how} at {h.ended - t0:+.1f}" if h.ended else "running"
        lines.append(f"  host {h.name} port {h.port}: up at {h.started - t0:+.1f}, {end}")
    for f in tl.faults:
        lines.append(f"  fault {f.describe(t0)}")
    for r in tl.rewinds:
        lines.append(f"  rewind {r.instance_id} at {r.at - t0:+.1f}")
    lines += [f"  note: {n}" for n in tl.notes]
    return "\n".join(lines)


class Scenario:
    def __init__(self, plan: Plan, connection_string: str, work: Path, settle: float):
        self.plan, self.conn, self.settle = plan, connection_string, settle
        self.hub_name = f"Chaos{plan.seed}x{uuid.uuid4().hex[:8]}"
        self.tl = Timeline()
        self.side_log = work / f"side-{plan.seed}.log"
        self.markers = work / f"markers-{plan.seed}"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.rt = random.Random(plan.seed * 7919 + 1)     # choices made while running (which host, ...)
        self.next_worker = 0
        self.t0 = time.time()

    # -- hosts ----------------------------------------------------------------------------------------------------
    def new_worker(self) -> str:
        self.next_worker += 1
        return f"h{self.next_worker}"

    async def restart(self, worker: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if any(h.worker == worker for h in self.pool.alive()):
            return
        await self.pool.start(worker)

    async def disrupt(self, c: Chaos) -> None:
        if c.kind == "fault":
            self.proxy.inject(c.fault, c.seconds, c.services)
            return
        if c.kind == "join":
            if len(self.pool.alive()) < MAX_HOSTS:
                await self.pool.start(self.new_worker())
            return
        deadline = time.monotonic() + 30
        while not self.pool.ready() and time.monotonic() < deadline:   # a host may be (re)starting
            await asyncio.sleep(0.1)
        ready = self.pool.ready()
        if not ready:
            self.tl.note(f"{c.kind} at +{c.at}: no live host to stop")
            return
        host = self.rt.choice(ready)
        await (self.pool.kill(host) if c.kind == "SIGKILL" else self.pool.terminate(host))
        delay = c.restart_after
        if delay is None and not self.pool.alive():
            delay = 1.0     # never leave the hub without a host for long
        if delay is not None:
            await self.restart(host.worker, delay)

    # -- client operations ----------------------------------------------------------------------------------------
    async def start(self, s: Start) -> None:
        await self.ops.start(s.instance_id, s.name, s.input, s.channel)

    async def operate(self, op: Op, deadline: float) -> None:
        if op.kind == "raise":
            await self.ops.raise_event(op.target, op.data["name"], op.data["value"], op.channel)
        elif op.kind == "terminate":
            await self.ops.terminate(op.target, op.data["reason"], op.channel)
        elif op.kind == "signal":
            await self.ops.signal(op.target, op.data["id"], op.data["amount"], op.channel)
        elif op.kind == "suspend-resume":
            await self.ops.suspend(op.target, op.channel)
            # resume only once the suspend took effect: sent earlier, it could be handled first and dropped
            # ('not suspended'), and the late suspend would then hold the instance for good
            if await self.wait_status(op.target, {"Suspended"}, deadline):
                await asyncio.sleep(op.data["hold"])
                await self.ops.resume(op.target, op.channel)
                await self.wait_status(op.target, {"Running", "Completed"}, min(deadline, time.monotonic() + 30))
            await self.ops.raise_event(op.target, "Go", op.data["value"], op.channel)
        elif op.kind == "rewind-watch":
            if await self.wait_status(op.target, {"Failed"}, deadline):
                await asyncio.sleep(op.data.get("delay", 0.0))      # rewind it later, in the chaos
                (self.markers / op.target).touch()
                await self.ops.rewind(op.target, op.channel)
        else:
            raise ValueError(op.kind)

    async def wait_status(self, iid: str, statuses: set[str], deadline: float) -> bool:
        row = None
        began = time.monotonic()
        while time.monotonic() < deadline:
            row = await self.client.get(iid)
            if row is not None and row.runtime_status is not None and row.runtime_status.name in statuses:
                return True
            await asyncio.sleep(0.25)
        status = "no row" if row is None else row.runtime_status.name if row.runtime_status else "no RuntimeStatus"
        self.tl.note(f"{iid} did not reach {'/'.join(sorted(statuses))} within {time.monotonic() - began:.0f} s "
                     f"(its row says {status} at +{time.time() - self.t0:.1f})")
        return False

    async def wait_final(self, deadline: float) -> None:
        ids = list(self.plan.expected.instances)
        while time.monotonic() < deadline:
            rows = await asyncio.gather(*(self.client.get(i) for i in ids))
            ids = [i for i, r in zip(ids, rows)
                   if r is None or r.runtime_status is None or r.runtime_status.name not in TERMINAL]
            if not ids:
                return
            await asyncio.sleep(0.5)
        self.tl.note(f"not final after the {self.settle:g} s quiet phase: {', '.join(ids[:20])}")

    async def wait_entities(self, deadline: float) -> None:
        want = {eid: e for eid, e in self.plan.expected.entities.items() if e.definite}
        while want and time.monotonic() < deadline:
            for eid, e in list(want.items()):
                exists, state = await self.client.read_entity("Counter", eid.split("@", 2)[2])
                ops = (json.loads(state) or {}).get("ops", {}) if exists and state else {}
                if all(op in ops for op in e.definite):
                    del want[eid]
            if want:
                await asyncio.sleep(0.5)
        if want:
            self.tl.note(f"entity operations still missing after the quiet phase: {', '.join(want)}")

    # -- the whole scenario ---------------------------------------------------------------------------------------
    async def run(self) -> Outcome:
        plan = self.plan
        hub = TaskHub(self.conn, self.hub_name, 4)
        await hub.create_if_not_exists()
        self.client = DurableClient(hub)
        self.proxy = FaultProxy(self.conn, self.tl).start()
        self.pool = HostPool(self.proxy.connection_string, self.hub_name, self.tl, side_log=self.side_log,
                             markers=self.markers)
        tasks: list[asyncio.Future] = []
        try:
            async with ClientOps(self.pool, self.client, self.tl, plan.expected, self.rt) as self.ops:
                await asyncio.gather(*(self.pool.start(self.new_worker()) for _ in range(plan.initial_hosts)))
                self.pool.watch()
                loop = asyncio.get_running_loop()
                self.t0 = self.tl.t0 = time.time()
                start = loop.time()
                end_of_chaos = time.monotonic() + plan.duration
                settle_end = end_of_chaos + self.settle

                async def at(offset: float, coro):
                    await asyncio.sleep(max(0.0, start + offset - loop.time()))
                    await coro
                if plan.random_faults:
                    self.proxy.start_random(plan.seed, mean_gap=4.0, max_seconds=2.0)
                starts = [asyncio.ensure_future(at(s.at, self.start(s))) for s in plan.starts]
                during = [asyncio.ensure_future(at(o.at, self.operate(o, settle_end)))
                          for o in plan.ops if o.at is not None]
                chaos = [asyncio.ensure_future(at(c.at, self.disrupt(c))) for c in plan.chaos]
                tasks += starts + during + chaos
                await asyncio.sleep(max(0.0, start + plan.duration - loop.time()))
                self.proxy.heal()
                await asyncio.gather(*chaos)          # pending restarts and graceful stops finish
                self.proxy.heal()
                if not self.pool.ready():
                    await self.pool.start(self.new_worker())
                await asyncio.gather(*starts)
                after = [asyncio.ensure_future(self.operate(o, settle_end)) for o in plan.ops if o.at is None]
                tasks += after
                # every operation is done (each is bounded) before finals count: a Failed instance that is
                # still to be rewound is final only for a moment
                await asyncio.gather(*during, *after)
                await self.wait_final(settle_end)
                await self.wait_entities(time.monotonic() + 30)
            snapshot = await read_snapshot(hub)
            report = check(snapshot, plan.expected, sidelog.read(self.side_log), self.tl)
            return Outcome(plan, report, self.tl, self.text(report))
        finally:
            for t in tasks:       # only after a failure of the harness itself are some still running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.pool.stop_all()
            self.proxy.stop()
            await hub.delete()
            await hub.close()

    def text(self, report: Report) -> str:
        parts = [f"chaos scenario {self.plan.describe()}",
                 f"reproduce: CHAOS_SEEDS={self.plan.seed} .venv/bin/python -m pytest -q -m stress "
                 f"tests/test_chaos.py -k stress",
                 report.format(f"chaos check seed={self.plan.seed} hub={self.hub_name}"),
                 "timeline (seconds after the chaos phase began):", describe_timeline(self.tl, self.t0)]
        if not report.ok:
            parts.append(self.pool.log_tails())
        return "\n".join(parts)


async def run_scenario(seed: int, connection_string: str, work: Path, *, duration: float = 12.0,
                       settle: float = 90.0) -> Outcome:
    return await Scenario(build(seed, duration=duration), connection_string, work, settle).run()
