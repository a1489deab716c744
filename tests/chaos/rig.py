"""A fresh task hub with the chaos app's hosts, the side-effect log and the checker, for deterministic tests that
script their own disruption (SIGKILL at a chosen moment, hosts joining, concurrent starts)."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from durafunc.durable.client import DurableClient
from durafunc.storage.taskhub import TaskHub

from . import sidelog
from .checker import TERMINAL, Report, check
from .expect import Expectations
from .hosts import HostPool
from .snapshot import read_snapshot
from .timeline import Timeline


class Rig:
    def __init__(self, connection_string: str, work: Path, name: str = "Rig"):
        self.conn = connection_string
        self.hub_name = f"{name}{uuid.uuid4().hex[:10]}"
        self.tl = Timeline(t0=time.time())
        self.side_log = work / "side.log"
        markers = work / "markers"
        markers.mkdir(exist_ok=True)
        self.hub = TaskHub(connection_string, self.hub_name, 4)
        self.client = DurableClient(self.hub)
        self.pool = HostPool(connection_string, self.hub_name, self.tl, side_log=self.side_log, markers=markers)

    async def __aenter__(self) -> "Rig":
        await self.hub.create_if_not_exists()
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.pool.stop_all()
        finally:
            await self.hub.delete()
            await self.hub.close()

    async def host(self, worker: str):
        host = await self.pool.start(worker)
        assert host is not None, f"host {worker} did not start:\n{self.pool.log_tails()}"
        return host

    def log(self) -> sidelog.SideLog:
        return sidelog.read(self.side_log)

    async def wait_log(self, predicate, timeout: float, what: str) -> sidelog.SideLog:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if predicate(log):
                return log
            await asyncio.sleep(0.02)
        raise AssertionError(f"{what}: not seen in the side-effect log after {timeout:g} s "
                             f"({len(self.log().runs)} runs logged)\n{self.pool.log_tails()}")

    async def wait_final(self, ids, timeout: float) -> list[str]:
        """Poll the rows until every id is final; returns those that are not (the check then reports them)."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        while ids and time.monotonic() < deadline:
            rows = await asyncio.gather(*(self.client.get(i) for i in ids))
            ids = [i for i, r in zip(ids, rows)
                   if r is None or r.runtime_status is None or r.runtime_status.name not in TERMINAL]
            if ids:
                await asyncio.sleep(0.25)
        return ids

    async def check(self, expected: Expectations) -> Report:
        return check(await read_snapshot(self.hub), expected, self.log(), self.tl)

    def failure(self, report: Report, title: str) -> str:
        return f"{report.format(title)}\n{self.pool.log_tails()}"

    def require(self, report: Report, title: str) -> None:
        """Fail the test with the report and the hosts' last log lines unless the check passed."""
        if not report.ok:
            import pytest
            pytest.fail(self.failure(report, title), pytrace=False)
