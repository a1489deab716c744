"""Find, start and stop a managed Azurite (the Azure Storage emulator, npm package `azurite`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .settings import DEVELOPMENT_STORAGE, SettingsError, parse_connection_string, read_json_file

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_VERSION = "3.35.0"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LISTEN_RE = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")


class AzuriteError(Exception):
    """One-line, user-facing problem with Azurite."""


@dataclass
class AzuriteConfig:
    host: str = "127.0.0.1"
    blob_port: int = 10000
    queue_port: int = 10001
    table_port: int = 10002
    in_memory: bool = False
    location: str = ".durafunc/azurite"
    skip_api_version_check: bool = True
    loose: bool = True
    silent: bool = True
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, app_root: Path) -> "AzuriteConfig":
        path = app_root / "azurite.json"
        cfg = cls()
        if not path.is_file():
            return cfg
        try:
            data = read_json_file(path)
        except SettingsError as e:
            raise AzuriteError(str(e)) from None
        keys = {"host": "host", "blobPort": "blob_port", "queuePort": "queue_port", "tablePort": "table_port",
                "inMemoryPersistence": "in_memory", "location": "location",
                "skipApiVersionCheck": "skip_api_version_check", "loose": "loose", "silent": "silent",
                "args": "extra_args"}
        for k, v in data.items():
            if k not in keys:
                raise AzuriteError(f"{path}: unknown key '{k}' (known: {', '.join(keys)})")
            attr = keys[k]
            expected = type(getattr(cfg, attr))
            if expected is int and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535):
                raise AzuriteError(f"{path}: '{k}' must be a port number, got {v!r}")
            if expected is bool and not isinstance(v, bool):
                raise AzuriteError(f"{path}: '{k}' must be true or false, got {v!r}")
            if expected is str and not isinstance(v, str):
                raise AzuriteError(f"{path}: '{k}' must be a string, got {v!r}")
            setattr(cfg, attr, v)
        return cfg

    def connection_string(self, blob: int | None = None, queue: int | None = None, table: int | None = None) -> str:
        return azurite_connection_string(self.host, blob or self.blob_port, queue or self.queue_port,
                                         table or self.table_port)


def azurite_connection_string(host: str, blob: int, queue: int, table: int) -> str:
    h = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{h}:{blob}/{ACCOUNT};QueueEndpoint=http://{h}:{queue}/{ACCOUNT};"
            f"TableEndpoint=http://{h}:{table}/{ACCOUNT};")


def local_endpoints(connection_string: str) -> list[tuple[str, int]] | None:
    """The (host, port) of blob/queue/table when the connection points at this machine, else None."""
    parts = parse_connection_string(connection_string)
    out = []
    for key in ("blobendpoint", "queueendpoint", "tableendpoint"):
        url = parts.get(key)
        if not url:
            return None
        u = urlparse(url)
        if u.hostname not in ("127.0.0.1", "localhost", "::1") or not u.port:
            return None
        out.append((u.hostname, u.port))
    return out


def port_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def endpoints_answer(endpoints: list[tuple[str, int]]) -> bool:
    return all(port_answers(h, p) for h, p in endpoints)


def find_binary(app_root: Path | None = None) -> str | None:
    """Azurite from ./node_modules/.bin (cwd, app root, durafunc's project), then PATH."""
    candidates = [Path.cwd()]
    if app_root:
        candidates += [app_root, *app_root.parents]
    candidates.append(PROJECT_ROOT)
    for folder in candidates:
        exe = folder / "node_modules" / ".bin" / "azurite"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return shutil.which("azurite")


MISSING_MESSAGE = ("Azurite was not found (looked in ./node_modules/.bin, the app folder and PATH). "
                   "Install it with 'npm install azurite' or 'durafunc azurite install'.")


class ManagedAzurite:
    """An Azurite process durafunc started, and only that one is ever stopped."""

    def __init__(self, config: AzuriteConfig, app_root: Path, binary: str | None = None):
        self.config = config
        self.app_root = app_root
        self.binary = binary or find_binary(app_root)
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.log_path: Path | None = None

    @property
    def data_dir(self) -> Path:
        p = Path(self.config.location)
        return p if p.is_absolute() else self.app_root / p

    def command(self) -> list[str]:
        if not self.binary:
            raise AzuriteError(MISSING_MESSAGE)
        c = self.config
        args = [self.binary, "--blobHost", c.host, "--queueHost", c.host, "--tableHost", c.host,
                "--blobPort", str(c.blob_port), "--queuePort", str(c.queue_port), "--tablePort", str(c.table_port)]
        if c.in_memory:
            args.append("--inMemoryPersistence")
        else:
            args += ["--location", str(self.data_dir)]
        if c.skip_api_version_check:
            args.append("--skipApiVersionCheck")
        if c.loose:
            args.append("--loose")
        if c.silent:
            args.append("--silent")
        args.append("--disableTelemetry")   # durafunc works offline
        return args + list(c.extra_args)

    def start(self, timeout: float = 30.0, detach: bool = False) -> str:
        """Start Azurite and wait until the three services listen. Returns the connection string."""
        cmd = self.command()
        if not self.config.in_memory:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.app_root / ".durafunc"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "azurite.log"
        log = open(self.log_path, "w")
        try:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # terminal signals (Ctrl-C) must not reach it before we are done
            )
        except OSError as e:
            raise AzuriteError(f"could not run Azurite ({cmd[0]}): {e.strerror}") from None
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for svc, port in _LISTEN_RE.findall(text):
                self.ports[svc.lower()] = int(port)
            if len(self.ports) == 3 and all(port_answers(self._dial_host, p) for p in self.ports.values()):
                return self.connection_string
            if self.process.poll() is not None:
                tail = " ".join(text.strip().splitlines()[-3:])
                raise AzuriteError(f"Azurite exited with code {self.process.returncode}: {tail or 'no output'}")
            time.sleep(0.05)
        self.stop()
        raise AzuriteError(f"Azurite did not start listening within {timeout:.0f} s (log: {self.log_path})")

    @property
    def _dial_host(self) -> str:
        return "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.config.host, self.ports["blob"], self.ports["queue"],
                                         self.ports["table"])

    def stop(self, timeout: float = 10.0) -> None:
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- detached Azurite for `durafunc azurite start|stop|status|clean` -------------------------------

def pid_file(app_root: Path) -> Path:
    return app_root / ".durafunc" / "azurite.pid"


def read_pid(app_root: Path) -> dict | None:
    path = pid_file(app_root)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    return data


def start_detached(app_root: Path, config: AzuriteConfig, timeout: float = 30.0) -> dict:
    running = read_pid(app_root)
    if running:
        return {**running, "already": True}
    endpoints = [(config.host, config.blob_port), (config.host, config.queue_port), (config.host, config.table_port)]
    if any(port_answers("127.0.0.1" if h == "0.0.0.0" else h, p) for h, p in endpoints if p):
        raise AzuriteError(f"something already listens on the Azurite ports {config.blob_port}/"
                           f"{config.queue_port}/{config.table_port}; stop it or change azurite.json")
    m = ManagedAzurite(config, app_root)
    conn = m.start(timeout=timeout, detach=True)
    data = {"pid": m.process.pid, "ports": m.ports, "connection": conn,
            "location": None if config.in_memory else str(m.data_dir)}
    pid_file(app_root).write_text(json.dumps(data))
    return data


def stop_detached(app_root: Path, timeout: float = 10.0) -> bool:
    data = read_pid(app_root)
    if not data:
        return False
    pid = int(data["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file(app_root).unlink(missing_ok=True)
    return True


def clean(app_root: Path, config: AzuriteConfig) -> Path:
    """Delete Azurite's on-disk data (refuses while a detached Azurite runs)."""
    if read_pid(app_root):
        raise AzuriteError("Azurite is running; stop it first with 'durafunc azurite stop'")
    m = ManagedAzurite(config, app_root, binary="azurite")
    if m.data_dir.exists():
        shutil.rmtree(m.data_dir)
    return m.data_dir


def install(app_root: Path) -> None:
    npm = shutil.which("npm")
    if not npm:
        raise AzuriteError("npm was not found: install Node.js 18+ with npm, then run 'durafunc azurite install'")
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", f"azurite@{AZURITE_VERSION}"],
                       cwd=app_root, stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode:
        raise AzuriteError(f"'npm install azurite@{AZURITE_VERSION}' failed with exit code {r.returncode}")


def ensure_azurite(settings, *, echo=print) -> tuple[str, "ManagedAzurite | None"]:
    """The storage connection to use; starts a managed Azurite when it points here and nothing answers."""
    conn = settings.connection_string
    if not conn:
        raise AzuriteError(
            f"Missing value for {settings.connection_setting} in local.settings.json. Set it to "
            "'UseDevelopmentStorage=true' to use Azurite (durafunc starts one for you), or to a connection string.")
    endpoints = local_endpoints(conn)
    if endpoints is None:
        return conn, None
    answering = [(h, p) for h, p in endpoints if port_answers("127.0.0.1" if h == "localhost" else h, p)]
    if len(answering) == len(endpoints):
        return conn, None
    if answering:
        raise AzuriteError("only some storage endpoints answer (" + ", ".join(f"{h}:{p}" for h, p in answering)
                           + "); stop whatever listens there or start a complete Azurite")
    config = AzuriteConfig.load(settings.app_root)
    config.host = endpoints[0][0] if endpoints[0][0] != "localhost" else "127.0.0.1"
    config.blob_port, config.queue_port, config.table_port = (p for _, p in endpoints)
    managed = ManagedAzurite(config, settings.app_root)
    managed.start()
    where = "in memory" if config.in_memory else f"data in {managed.data_dir}"
    echo(f"Started Azurite (blob {config.blob_port}, queue {config.queue_port}, table {config.table_port}; {where}).")
    return conn, managed
