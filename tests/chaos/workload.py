"""A scenario's plan, all drawn from one seeded Random (pure): the instances to start with their expected ends,
the client operations on them, and the chaos (hosts killed/stopped/joining, proxy faults) over the chaos phase.
The same seed gives the same plan; times are seconds after the chaos phase begins."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .expect import Expect, Expectations

CHANNELS = ("webhook", "storage")
START_CHANNELS = ("webhook", "starter", "storage")
KINDS = ("chain", "fan", "timers", "events", "nested", "loop", "entity_user", "forever", "gate", "flaky")


@dataclass
class Start:
    instance_id: str
    name: str
    input: dict
    at: float
    channel: str


@dataclass
class Op:
    """A client operation. kind: raise / terminate / suspend-resume / rewind-watch / signal. `at` None: after
    the chaos phase (with the faults healed)."""
    kind: str
    target: str
    at: float | None
    channel: str
    data: dict = field(default_factory=dict)


@dataclass
class Chaos:
    """A host or storage disruption. kind: SIGKILL / SIGTERM / join / fault."""
    kind: str
    at: float
    restart_after: float | None = None   # SIGKILL/SIGTERM: start the same worker again this much later
    fault: str = ""                      # reset / stall / 5xx
    services: tuple = ()
    seconds: float = 0.0


@dataclass
class Plan:
    seed: int
    prefix: str
    duration: float
    initial_hosts: int
    starts: list[Start] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    chaos: list[Chaos] = field(default_factory=list)
    random_faults: bool = False
    expected: Expectations = field(default_factory=Expectations)

    def describe(self) -> str:
        kinds = {}
        for s in self.starts:
            kinds[s.name] = kinds.get(s.name, 0) + 1
        chaos = ", ".join(f"{c.kind}{'/' + c.fault if c.fault else ''}@{c.at:.1f}" for c in self.chaos)
        return (f"seed {self.seed}: {self.initial_hosts} host(s), {self.duration:g} s of chaos [{chaos}]"
                f"{' + random faults' if self.random_faults else ''}; starts {kinds}; {len(self.ops)} client ops")


def _sleeps(rng: random.Random, n: int) -> list[float]:
    return [round(rng.uniform(0.1, 0.5), 2) for _ in range(n)]


def _triangle(n: int) -> int:
    return n * (n + 1) // 2


def build(seed: int, *, duration: float = 12.0, extra: int = 6) -> Plan:
    """Every kind once plus `extra` random ones; 3-5 host disruptions and 1-3 proxy faults."""
    # separate streams, so that a change to one part of the plan leaves the others as they were
    rng, chaos_rng = random.Random(f"{seed}/workload"), random.Random(f"{seed}/chaos")
    prefix = f"s{seed}"
    plan = Plan(seed, prefix, duration, 1)
    exp = plan.expected
    keys = [f"{prefix}-k{n}" for n in range(rng.randint(1, 2))]
    kinds = list(KINDS) + [rng.choice(KINDS[:7]) for _ in range(extra)]
    rng.shuffle(kinds)

    def late(at: float, p: float = 0.25) -> float | None:
        """A time after `at` in the chaos phase, or None (after it) with probability p."""
        return None if rng.random() < p or at + 0.5 >= duration else round(rng.uniform(at + 0.5, duration), 2)

    for n, kind in enumerate(kinds):
        iid = f"{prefix}-{kind}{n}"
        at = 0.0 if rng.random() < 0.6 else round(rng.uniform(0, duration / 2), 2)
        channel = rng.choice(START_CHANNELS)
        if kind in ("chain", "fan"):
            sleeps = _sleeps(rng, rng.randint(3, 6) if kind == "chain" else rng.randint(5, 12))
            inp, want = {"sleeps": sleeps}, Expect("Completed", _triangle(len(sleeps)), kind)
        elif kind == "timers":
            delays = [round(rng.uniform(1, 2.5), 1) for _ in range(rng.randint(1, 2))]
            inp, want = {"delays": delays, "sleep": 0.1}, Expect("Completed", len(delays), kind)
        elif kind == "events":
            names = [f"E{i}" for i in range(rng.randint(2, 3))]
            inp, want = {"names": names, "sleep": 0.1}, Expect("Completed", [f"{iid}/{x}" for x in names], kind)
            for x in names:
                plan.ops.append(Op("raise", iid, late(at), rng.choice(CHANNELS), {"name": x, "value": f"{iid}/{x}"}))
        elif kind == "nested":
            mids, leaves = 2, 2
            inp = {"mids": mids, "leaves": leaves, "sleep": round(rng.uniform(0.1, 0.4), 2)}
            want = Expect("Completed", mids * _triangle(leaves), kind)
            for i in range(mids):
                exp.instances[f"{iid}-m{i}"] = Expect("Completed", _triangle(leaves), "nested/mid")
                for j in range(leaves):
                    exp.instances[f"{iid}-m{i}-l{j}"] = Expect("Completed", j + 1, "nested/leaf")
        elif kind == "loop":
            until = rng.randint(3, 4)
            inp = {"gen": 0, "until": until, "acc": 0, "sleep": round(rng.uniform(0.1, 0.3), 2)}
            want = Expect("Completed", _triangle(until), kind)
        elif kind == "entity_user":
            key = rng.choice(keys)
            ops = [{"id": f"{iid}-o{i}", "amount": rng.randint(1, 9), "how": rng.choice(("call", "signal"))}
                   for i in range(rng.randint(2, 4))]
            inp = {"key": key, "ops": ops}
            want = Expect("Completed", [o["id"] for o in ops if o["how"] == "call"], kind)
            for o in ops:
                exp.entity(f"@counter@{key}").definite[o["id"]] = o["amount"]
        elif kind == "forever":
            reason = f"chaos terminates {iid}"
            inp, want = {}, Expect("Terminated", reason, kind)
            plan.ops.append(Op("terminate", iid, late(at + 0.5, 0.2), rng.choice(CHANNELS), {"reason": reason}))
        elif kind == "gate":
            inp, want = {"sleep": 0.1}, Expect("Completed", f"go-{iid}", kind)
            plan.ops.append(Op("suspend-resume", iid, late(at, 0.2), rng.choice(CHANNELS),
                               {"hold": round(rng.uniform(0.5, 2.0), 1), "value": f"go-{iid}"}))
        else:   # flaky: fails on its first try; the scenario creates its marker and rewinds it
            inp, want = {"sleep": 0.1}, Expect("Completed", 11, kind)
            plan.ops.append(Op("rewind-watch", iid, at, rng.choice(CHANNELS),
                               {"delay": round(rng.uniform(0, duration / 2), 1)}))
        plan.starts.append(Start(iid, kind, inp, at, channel))
        exp.instances[iid] = want
    for n in range(rng.randint(2, 5)):
        plan.ops.append(Op("signal", rng.choice(keys), round(rng.uniform(0, duration), 2), rng.choice(CHANNELS),
                           {"id": f"{prefix}-cs{n}", "amount": rng.randint(1, 9)}))

    rng = chaos_rng
    plan.initial_hosts = rng.choices((1, 2, 3), (1, 2, 2))[0]
    for _ in range(rng.randint(3, 5)):
        kind = rng.choices(("SIGKILL", "SIGTERM", "join"), (5, 2, 3))[0]
        restart = round(rng.uniform(0.5, 3.0), 1) if kind != "join" and rng.random() < 0.6 else None
        plan.chaos.append(Chaos(kind, round(rng.uniform(1.0, duration), 2), restart_after=restart))
    for _ in range(rng.randint(1, 3)):
        fault = rng.choice(("reset", "stall", "5xx"))
        services = tuple(sorted(rng.sample(("blob", "queue", "table"), rng.randint(1, 3))))
        plan.chaos.append(Chaos("fault", round(rng.uniform(0.5, duration), 2), fault=fault, services=services,
                                seconds=0.0 if fault == "reset" else round(rng.uniform(0.5, 3.0), 1)))
    plan.random_faults = rng.random() < 0.25
    plan.chaos.sort(key=lambda c: c.at)
    plan.ops.sort(key=lambda o: (o.at is None, o.at or 0.0))
    return plan
