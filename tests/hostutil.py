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
                 env: dict | None = None, port: int | None = None, reload: bool = False):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"durafunc-host-{self.port}.log"
        full_env = {**os.environ, "AzureWebJobsStorage": connection_string, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durafunc", "start", "--port", str(self.port),
             *([] if reload else ["--no-reload"]), "--task-hub-name", hub_name, *args],
            cwd=app_dir, env=full_env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)

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
        return self.proc.returncode
