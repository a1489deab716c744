"""A fault-injecting TCP proxy between hosts and Azurite: one listener per storage service (blob, queue, table)
forwarding bytes to the real endpoint, on an asyncio loop of its own thread (the scenario may block meanwhile).

Faults, on command or at random (`start_random`), each recorded as a FaultWindow with wall-clock times:
  reset  close every open connection abruptly (RST on both sides)
  stall  stop forwarding for N seconds (open and new connections alike; TCP back-pressure does the rest)
  5xx    for N seconds answer each request with `503 Server Busy` and a storage-style error body instead of
         forwarding it: connections open at the window's start are reset, each new connection gets its request
         read whole (Content-Length; a chunked one is reset) and answered, then closed
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from urllib.parse import urlparse

from durafunc.storage.connection import parse_connection_string

from .timeline import FaultWindow, Timeline

SERVICES = ("blob", "queue", "table")
KINDS = ("reset", "stall", "5xx")
_XML_BUSY = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
             b'<Message>The server is busy (injected by the chaos proxy).</Message></Error>')
_JSON_BUSY = (b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US",'
              b'"value":"The server is busy (injected by the chaos proxy)."}}}')


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close a connection abruptly: SO_LINGER 0 makes the close an RST."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class _Conn:
    __slots__ = ("client", "upstream", "dead")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter):
        self.client, self.upstream, self.dead = client, upstream, False

    def reset(self) -> None:
        if not self.dead:
            self.dead = True
            _rst(self.client)
            _rst(self.upstream)


class FaultProxy:
    def __init__(self, connection_string: str, timeline: Timeline | None = None):
        self.original = connection_string
        parts = parse_connection_string(connection_string)
        self.upstream = {s: urlparse(parts[f"{s}endpoint"]) for s in SERVICES}
        self.timeline = timeline if timeline is not None else Timeline()
        self.windows: list[FaultWindow] = []
        self.ports: dict[str, int] = {}
        self.stats = {"connections": 0, "resets": 0, "answered_5xx": 0}
        self._conns: dict[str, set[_Conn]] = {s: set() for s in SERVICES}
        self._failing_until: dict[str, float] = {s: 0.0 for s in SERVICES}
        self._stalls: dict[str, int] = {s: 0 for s in SERVICES}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers = []
        self._flowing: dict[str, asyncio.Event] = {}
        self._random: asyncio.Task | None = None

    # -- lifecycle (called from any thread) ---------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def connection_string(self) -> str:
        """The original connection string with each endpoint pointing at its listener here."""
        out = []
        for part in self.original.split(";"):
            key, sep, value = part.partition("=")
            svc = key.strip().lower().removesuffix("endpoint")
            if sep and svc in SERVICES:
                value = urlparse(value)._replace(netloc=f"127.0.0.1:{self.ports[svc]}").geturl()
                part = f"{key}={value}"
            out.append(part)
        return ";".join(out)

    # -- commands (called from any thread) ----------------------------------------------------------------------
    def reset(self, services=SERVICES) -> FaultWindow:
        """Reset every open connection of `services` now."""
        w = self._record("reset", services, 0.0)
        self._call(self._reset(services))
        return w

    def stall(self, seconds: float, services=SERVICES) -> FaultWindow:
        w = self._record("stall", services, seconds)
        self._call(self._stall(services, seconds))
        return w

    def fail(self, seconds: float, services=SERVICES) -> FaultWindow:
        """Answer 503 to every request of `services` for `seconds` (open connections are reset first)."""
        w = self._record("5xx", services, seconds)
        self._call(self._fail(services, seconds))
        return w

    def inject(self, kind: str, seconds: float, services=SERVICES) -> FaultWindow:
        return {"reset": lambda: self.reset(services), "stall": lambda: self.stall(seconds, services),
                "5xx": lambda: self.fail(seconds, services)}[kind]()

    def heal(self) -> None:
        """End every fault window now and stop random faults."""
        self._call(self._heal())
        now = time.time()
        for w in self.windows:
            if w.end > now:
                w.end = now

    def start_random(self, seed: int, mean_gap: float = 3.0, max_seconds: float = 2.0, kinds=KINDS) -> None:
        """Inject faults at random (exponential gaps, random kind, services and length) until heal()."""
        self._call(self._start_random(random.Random(seed), mean_gap, max_seconds, tuple(kinds)))

    # -- inside the proxy's loop ----------------------------------------------------------------------------------
    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def _record(self, kind: str, services, seconds: float) -> FaultWindow:
        now = time.time()
        w = FaultWindow(kind, tuple(services), now, now + seconds)
        self.windows.append(w)
        self.timeline.add(w)
        return w

    async def _listen(self) -> None:
        for svc in SERVICES:
            self._flowing[svc] = asyncio.Event()
            self._flowing[svc].set()
            server = await asyncio.start_server(lambda r, w, s=svc: self._accept(s, r, w), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports[svc] = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._random is not None:
            self._random.cancel()
        for server in self._servers:
            server.close()
        await self._reset(SERVICES, count=False)
        for svc in SERVICES:
            self._flowing[svc].set()

    async def _reset(self, services, count: bool = True) -> None:
        for svc in services:
            for conn in list(self._conns[svc]):
                conn.reset()
                if count:
                    self.stats["resets"] += 1

    async def _stall(self, services, seconds: float) -> None:
        for svc in services:
            self._stalls[svc] += 1
            self._flowing[svc].clear()

        def release():
            for svc in services:
                self._stalls[svc] = max(0, self._stalls[svc] - 1)
                if not self._stalls[svc]:
                    self._flowing[svc].set()
        self._loop.call_later(seconds, release)

    async def _fail(self, services, seconds: float) -> None:
        until = time.monotonic() + seconds
        for svc in services:
            self._failing_until[svc] = max(self._failing_until[svc], until)
        await self._reset(services)

    async def _heal(self) -> None:
        if self._random is not None:
            self._random.cancel()
            self._random = None
        for svc in SERVICES:
            self._failing_until[svc] = 0.0
            self._stalls[svc] = 0
            self._flowing[svc].set()

    async def _start_random(self, rng: random.Random, mean_gap: float, max_seconds: float, kinds) -> None:
        async def loop():
            while True:
                await asyncio.sleep(rng.expovariate(1.0 / mean_gap))
                kind = rng.choice(kinds)
                services = tuple(sorted(rng.sample(SERVICES, rng.randint(1, len(SERVICES)))))
                seconds = 0.0 if kind == "reset" else round(rng.uniform(0.3, max_seconds), 2)
                self._record(kind, services, seconds)
                await {"reset": lambda: self._reset(services), "stall": lambda: self._stall(services, seconds),
                       "5xx": lambda: self._fail(services, seconds)}[kind]()
        if self._random is not None:
            self._random.cancel()
        self._random = asyncio.get_running_loop().create_task(loop())

    def _failing(self, svc: str) -> bool:
        return time.monotonic() < self._failing_until[svc]

    async def _accept(self, svc: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        if self._failing(svc):
            await self._answer_busy(svc, reader, writer)
            return
        await self._flowing[svc].wait()
        up = self.upstream[svc]
        try:
            up_reader, up_writer = await asyncio.open_connection(up.hostname, up.port)
        except OSError:
            _rst(writer)
            return
        if self._failing(svc):
            up_writer.close()
            await self._answer_busy(svc, reader, writer)
            return
        conn = _Conn(writer, up_writer)
        self._conns[svc].add(conn)
        try:
            await asyncio.gather(self._pump(svc, reader, up_writer, conn), self._pump(svc, up_reader, writer, conn))
        finally:
            self._conns[svc].discard(conn)
            for w in (writer, up_writer):
                if not w.transport.is_closing():
                    w.close()

    async def _pump(self, svc: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn) -> None:
        try:
            while not conn.dead:
                data = await src.read(65536)
                if not data:
                    if not conn.dead and dst.can_write_eof() and not dst.transport.is_closing():
                        dst.write_eof()
                    return
                if not self._flowing[svc].is_set():
                    await self._flowing[svc].wait()
                if conn.dead:
                    return
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            conn.reset()

    async def _answer_busy(self, svc: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request whole, answer 503, close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                _rst(writer)
                return
            length = int(headers.get("content-length") or 0)
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            body, ctype = (_JSON_BUSY, "application/json;odata=minimalmetadata") if svc == "table" \
                else (_XML_BUSY, "application/xml")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\n"
                         b"Content-Type: " + ctype.encode() + b"\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                         b"x-ms-error-code: ServerBusy\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            self.stats["answered_5xx"] += 1
            writer.close()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            _rst(writer)
