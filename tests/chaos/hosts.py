"""Real `durafunc start` processes on one task hub for a scenario: start, SIGKILL, SIGTERM, join, restart;
each host's life goes into the Timeline (a host that exits by itself is noticed and recorded as 'died')."""
from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from hostutil import HERE, HostProcess

from .timeline import HostSpan, Timeline

CHAOS_APP = HERE / "hostapps" / "chaos"


class Host:
    def __init__(self, worker: str, proc: HostProcess, span: HostSpan):
        self.worker, self.proc, self.span = worker, proc, span
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.span.how is None and self.proc.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log (--verbose: the engine's too), without the Functions: listing."""
        try:
            text = self.proc.log().splitlines()
            return "\n".join([x for x in text if x.strip() and not x.startswith("\t")][-lines:])
        except OSError as e:
            return f"(no log: {e})"


class HostPool:
    def __init__(self, connection_string: str, hub_name: str, timeline: Timeline, *, side_log: Path,
                 markers: Path, app: Path = CHAOS_APP, extra_env: dict | None = None):
        self.conn, self.hub_name, self.tl = connection_string, hub_name, timeline
        self.app = app
        self.env = {"CHAOS_LOG": str(side_log), "CHAOS_MARKERS": str(markers), **(extra_env or {})}
        self.hosts: list[Host] = []
        self._watch: asyncio.Task | None = None

    # -- queries --------------------------------------------------------------------------------------------------
    def alive(self) -> list[Host]:
        return [h for h in self.hosts if h.alive]

    def ready(self) -> list[Host]:
        return [h for h in self.hosts if h.alive and h.ready]

    def workers(self) -> set[str]:
        return {h.worker for h in self.hosts}

    # -- actions --------------------------------------------------------------------------------------------------
    async def start(self, worker: str, timeout: float = 40.0) -> Host | None:
        """Start a host and wait until it serves; None (recorded, not raised) when it could not start."""
        proc = HostProcess(self.app, self.conn, self.hub_name, "--worker-id", worker, "--verbose",
                           env={**self.env, "CHAOS_WORKER": worker})
        span = HostSpan(worker, proc.proc.pid, proc.port, time.time())
        self.tl.add(span)
        host = Host(worker, proc, span)
        self.hosts.append(host)
        try:
            await asyncio.to_thread(proc.wait_ready, timeout)
        except AssertionError as e:
            if proc.proc.poll() is None:
                proc.stop(signal.SIGKILL)
            span.how, span.ended, span.exited = "failed-start", time.time(), time.time()
            span.exit_code, span.log_tail = proc.proc.returncode, host.tail()
            span.traceback = "Traceback (most recent call last)" in proc.log()
            self.tl.note(f"host {span.name} could not start: {str(e).splitlines()[0]}")
            return None
        host.ready = True
        return host

    async def kill(self, host: Host) -> None:
        host.span.how, host.span.ended = "SIGKILL", time.time()
        await asyncio.to_thread(host.proc.stop, signal.SIGKILL)
        host.span.exited, host.span.exit_code = time.time(), host.proc.proc.returncode

    async def terminate(self, host: Host) -> None:
        """SIGTERM: a graceful stop (HostProcess gives it 20 s, then SIGKILL)."""
        host.span.how, host.span.ended = "SIGTERM", time.time()
        await asyncio.to_thread(host.proc.stop, signal.SIGTERM)
        host.span.exited, host.span.exit_code = time.time(), host.proc.proc.returncode

    async def stop_all(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        await asyncio.gather(*(self.terminate(h) for h in self.alive()))

    # -- noticing deaths ------------------------------------------------------------------------------------------
    def watch(self) -> None:
        async def loop():
            while True:
                for h in self.hosts:
                    if h.ready and h.span.how is None and h.proc.proc.poll() is not None:
                        h.span.how, h.span.ended = "died", time.time()
                        h.span.exited, h.span.exit_code = h.span.ended, h.proc.proc.returncode
                        h.span.log_tail = h.tail()
                await asyncio.sleep(0.2)
        self._watch = asyncio.get_running_loop().create_task(loop())

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for h in self.hosts:
            state = h.span.how or "running"
            out.append(f"--- host {h.span.name} port {h.span.port} ({state}); last lines of {h.proc.log_path}:\n"
                       f"{h.tail(lines)}")
        return "\n".join(out)
