"""Start `durafunc start` as a subprocess against the test Azurite and talk to it over HTTP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status, self.body, self.headers = status, body, headers

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self):
        return json.loads(self.body) if self.body else None


class HostProcess:
    def __init__(self, app_dir: Path, connection_string: str, hub_name: str, *args: str,
                 env: dict | None = None, port: int | None = None, reload: bool = False, pipe: bool = False):
        """`pipe`: the host writes into a pipe (as `durafunc start | tee` does), which the test copies to the log."""
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"durafunc-host-{self.port}.log"
        full_env = {**os.environ, "AzureWebJobsStorage": connection_string, **(env or {})}
        log_file = open(self.log_path, "wb" if pipe else "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durafunc", "start", "--port", str(self.port),
             *([] if reload else ["--no-reload"]), "--task-hub-name", hub_name, *args],
            cwd=app_dir, env=full_env, stdout=subprocess.PIPE if pipe else log_file, stderr=subprocess.STDOUT)
        self._copier = None
        if pipe:
            import threading
            self._copier = threading.Thread(target=self._copy, args=(self.proc.stdout, log_file), daemon=True)
            self._copier.start()

    @staticmethod
    def _copy(source, target) -> None:
        with source, target:
            for line in iter(source.readline, b""):
                target.write(line)
                target.flush()

    def wait_ready(self, timeout: float = 30.0) -> "HostProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"host exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # /admin/host/ping answers without a key, also under --enable-auth (as on Azure)
                if self.request("GET", "/admin/host/ping").status == 200 and "Host started" in self.log():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"host not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        url = path if path.startswith("http") else self.base + path
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = dict(headers or {})
        if body is not None and raw is None:
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Response(r.status, r.read(), r.headers)
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read(), e.headers)

    def wait_status(self, status_url: str, timeout: float = 30.0, until=("Completed", "Failed", "Terminated")):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.request("GET", status_url).json()
            if last and last.get("runtimeStatus") in until:
                return last
            time.sleep(0.05)
        raise AssertionError(f"status still {last} after {timeout} s")

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._copier is not None:
            self._copier.join(5)            # the pipe's last lines are in the log
        return self.proc.returncode


class GatedProxy:
    """A TCP forwarder to a real service that holds every connection's bytes until `open()`: what a host does while
    its storage does not answer yet, made deterministic."""

    def __init__(self, target_port: int):
        import threading
        self.target = target_port
        self.gate = threading.Event()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.closed = True
        try:
            self.server.shutdown(socket.SHUT_RDWR)       # wakes the accepting thread
        except OSError:
            pass
        self.server.close()

    def _accept(self) -> None:
        import threading
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        import threading
        self.gate.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)


def gated_connection(connection_string: str) -> tuple[str, list[GatedProxy]]:
    """The connection string with each storage endpoint behind its own GatedProxy."""
    import re
    proxies = []

    def swap(m):
        proxy = GatedProxy(int(m.group(2)))
        proxies.append(proxy)
        return f"{m.group(1)}:{proxy.port}/"
    return re.sub(r"(Endpoint=http://127\.0\.0\.1):(\d+)/", swap, connection_string), proxies
