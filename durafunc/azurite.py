"""Find, start and stop a managed Azurite (the Azure Storage emulator, npm package `azurite`).

Every Azurite durafunc starts leaves a small record in `<app>/.durafunc/run/azurite-<pid>.json` (pid, ports, data
location, and the pid of the `durafunc start` that owns it, or none for `durafunc azurite start`). Only processes
named in such a record, and still running Azurite, are ever stopped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .runfolder import pid_alive, run_dir
from .settings import SettingsError, parse_connection_string, read_json_file

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_VERSION = "3.35.0"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# what Azurite keeps in --location (current and pre-3.17 names); `clean` deletes only these
DATA_PATTERNS = ("__azurite_db_*", "__blobstorage__", "__queuestorage__", "__tablestorage__", "azurite_db_*.json")

MISSING_MESSAGE = ("Azurite was not found (looked in ./node_modules/.bin, the app folder and PATH). "
                   "Install it with 'npm install azurite' or 'durafunc azurite install'.")
NODE_MISSING_MESSAGE = ("Azurite could not run because Node.js was not found: install Node.js 18+ "
                        "(https://nodejs.org) and try again.")


class AzuriteError(Exception):
    """One-line, user-facing problem with Azurite."""


# -- azurite.json ---------------------------------------------------------------------------------------

_CONFIG_KEYS = {"host": "host", "blobPort": "blob_port", "queuePort": "queue_port", "tablePort": "table_port",
                "inMemoryPersistence": "in_memory", "location": "location",
                "skipApiVersionCheck": "skip_api_version_check", "loose": "loose", "silent": "silent",
                "args": "extra_args"}


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
    explicit: set[str] = field(default_factory=set, repr=False, compare=False)   # keys azurite.json set

    @classmethod
    def load(cls, app_root: Path) -> "AzuriteConfig":
        """azurite.json of the app folder (all keys optional); one-line AzuriteError naming a bad key."""
        path = app_root / "azurite.json"
        cfg = cls()
        if not path.is_file():
            return cfg
        try:
            data = read_json_file(path)
        except SettingsError as e:
            raise AzuriteError(str(e)) from None
        for k, v in data.items():
            if k not in _CONFIG_KEYS:
                raise AzuriteError(f"{path}: unknown key '{k}' (known: {', '.join(_CONFIG_KEYS)})")
            attr = _CONFIG_KEYS[k]
            expected = type(getattr(cfg, attr))
            if expected is int and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535):
                raise AzuriteError(f"{path}: '{k}' must be a port number, got {v!r}")
            if expected is bool and not isinstance(v, bool):
                raise AzuriteError(f"{path}: '{k}' must be true or false, got {v!r}")
            if expected is str and (not isinstance(v, str) or not v):
                raise AzuriteError(f"{path}: '{k}' must be a non-empty string, got {v!r}")
            if expected is list and (not isinstance(v, list) or not all(isinstance(a, str) for a in v)):
                raise AzuriteError(f"{path}: '{k}' must be a list of strings, got {v!r}")
            setattr(cfg, attr, v)
            cfg.explicit.add(k)
        return cfg

    @property
    def ports(self) -> dict[str, int]:
        return {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}

    def data_dir(self, app_root: Path) -> Path:
        p = Path(self.location).expanduser()
        return p if p.is_absolute() else app_root / p

    def connection_string(self, blob: int | None = None, queue: int | None = None, table: int | None = None) -> str:
        return azurite_connection_string(self.host, blob or self.blob_port, queue or self.queue_port,
                                         table or self.table_port)


# -- connection strings and ports -----------------------------------------------------------------------

def azurite_connection_string(host: str, blob: int, queue: int, table: int) -> str:
    h = _dial_host(host)
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{h}:{blob}/{ACCOUNT};QueueEndpoint=http://{h}:{queue}/{ACCOUNT};"
            f"TableEndpoint=http://{h}:{table}/{ACCOUNT};")


def _dial_host(host: str) -> str:
    """Where to connect to reach something listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::", "localhost") else host


def local_endpoints(connection_string: str) -> list[tuple[str, int]] | None:
    """The (host, port) of blob/queue/table when the connection points at this machine, else None."""
    parts = parse_connection_string(connection_string)
    out = []
    for key in ("blobendpoint", "queueendpoint", "tableendpoint"):
        url = parts.get(key)
        if not url:
            return None
        u = urlparse(url)
        try:
            port = u.port
        except ValueError:
            return None
        if u.hostname not in ("127.0.0.1", "localhost", "::1") or not port:
            return None
        out.append((u.hostname, port))
    return out


def port_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((_dial_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary(app_root: Path | None = None) -> str | None:
    """Azurite from ./node_modules/.bin (cwd, the app folder and its parents, durafunc's project), then PATH."""
    candidates = [Path.cwd()]
    if app_root:
        candidates += [app_root, *app_root.parents]
    candidates.append(PROJECT_ROOT)
    for folder in candidates:
        exe = folder / "node_modules" / ".bin" / "azurite"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return shutil.which("azurite")


# -- processes and their records ------------------------------------------------------------------------

def is_azurite_process(pid: int) -> bool:
    """Is `pid` a live (not zombie) process running Azurite? Guards against stopping a reused pid."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            cmdline = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                                     timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return True   # cannot tell; the pid is alive and was recorded by us
    return "azurite" in cmdline.lower()


def running_azurites(app_root: Path) -> list[dict]:
    """Records of the Azurites durafunc started for this app that still run (stale records are removed)."""
    out = []
    folder = run_dir(app_root)
    for path in sorted(folder.glob("azurite-*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if not is_azurite_process(pid):
            path.unlink(missing_ok=True)
            continue
        owner = data.get("owner")
        data["orphan"] = owner is not None and not pid_alive(int(owner))
        data["record"] = str(path)
        out.append(data)
    return out


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:   # reap it if it is our own child (else it lingers as a zombie)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not is_azurite_process(pid):
            return True
        time.sleep(0.05)
    return False


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (Azurite closes its services and flushes its files), SIGKILL if it does not go in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(pid, 5.0)


_libc = None


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the durafunc that started it dies, even by SIGKILL."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def _pdeathsig_hook():
    """The preexec hook, or None where it cannot work. PR_SET_PDEATHSIG fires when the starting *thread*
    exits, so it is only used from the main thread."""
    global _libc
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    if _libc is None:
        try:
            import ctypes
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _die_with_parent


class ManagedAzurite:
    """An Azurite process durafunc started; stop() stops that process and nothing else."""

    def __init__(self, config: AzuriteConfig, app_root: Path, binary: str | None = None):
        self.config = config
        self.app_root = Path(app_root)
        self.binary = binary or find_binary(self.app_root)
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.log_path: Path | None = None
        self.record_path: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir(self.app_root)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def where(self) -> str:
        """'data in <folder>' or 'in memory'."""
        return "in memory" if self.config.in_memory else f"data in {self.data_dir}"

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
        """Start Azurite and wait until the three services listen. Returns the connection string.

        detach=False: it belongs to this process (stopped by stop(), and on Linux also when this process dies).
        detach=True: it outlives this process (`durafunc azurite start`); stop it with `stop_detached`.
        """
        cmd = self.command()
        if not self.config.in_memory:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.app_root / ".durafunc"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "azurite.log"
        self.ports = {}
        with open(self.log_path, "w") as log:
            try:
                self.process = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # terminal signals (Ctrl-C) must not reach it before we are done
                    preexec_fn=None if detach else _pdeathsig_hook(),
                )
            except OSError as e:
                raise AzuriteError(f"could not run Azurite ({cmd[0]}): {e.strerror}") from None
        try:
            self._wait_listening(timeout)
        except BaseException:   # not listening, or interrupted (Ctrl-C) while waiting: leave nothing behind
            self.stop()
            raise
        self._write_record(detach)
        return self.connection_string

    def _wait_listening(self, timeout: float) -> None:
        import re
        listening = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://\S+:(\d+)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for svc, port in listening.findall(text):
                self.ports[svc.lower()] = int(port)
            if len(self.ports) == 3 and all(port_answers(self.config.host, p) for p in self.ports.values()):
                return
            if self.process.poll() is not None:
                raise AzuriteError(self._exit_message(text))
            time.sleep(0.05)
        raise AzuriteError(f"Azurite did not start listening within {timeout:.0f} s (log: {self.log_path})")

    def _exit_message(self, log_text: str) -> str:
        code = self.process.returncode
        if code == 127 and "node" in log_text:
            return NODE_MISSING_MESSAGE
        lines = [ln.strip() for ln in log_text.strip().splitlines() if ln.strip()]
        busy = next((ln for ln in lines if "EADDRINUSE" in ln), None)
        if busy:
            return f"Azurite could not listen: a port is already in use ({busy[-120:]})"
        return f"Azurite exited with code {code}: {' '.join(lines[-3:])[-300:] or 'no output'}"

    def _write_record(self, detach: bool) -> None:
        folder = run_dir(self.app_root)
        folder.mkdir(parents=True, exist_ok=True)
        self.record_path = folder / f"azurite-{self.process.pid}.json"
        self.record_path.write_text(json.dumps({
            "pid": self.process.pid, "owner": None if detach else os.getpid(), "ports": self.ports,
            "connection": self.connection_string,
            "location": None if self.config.in_memory else str(self.data_dir),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }))

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.config.host, self.ports["blob"], self.ports["queue"],
                                         self.ports["table"])

    def stop(self, timeout: float = 10.0) -> None:
        p = self.process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.record_path is not None:
            self.record_path.unlink(missing_ok=True)
            self.record_path = None


# -- `durafunc start`: use the configured storage, or start Azurite for it ------------------------------

def ensure_azurite(settings, *, echo=print) -> tuple[str, ManagedAzurite | None]:
    """The storage connection to use, and the Azurite started for it (None when nothing was started).

    Local endpoints that all answer are reused; when none answers, Azurite is started on the connection's ports
    with the rest of azurite.json. The caller stops the returned ManagedAzurite on exit.
    """
    conn = settings.connection_string
    if not conn:
        raise AzuriteError(
            f"Missing value for {settings.connection_setting} in local.settings.json. This is required by "
            "Durable Functions: set it to 'UseDevelopmentStorage=true' to use Azurite (durafunc starts one for you), "
            "or to a storage connection string.")
    endpoints = local_endpoints(conn)
    if endpoints is None:
        return conn, None
    answers = [port_answers(h, p) for h, p in endpoints]
    if any(answers) and not all(answers):
        # a busy Azurite can be slow to accept (its listen backlog full): ask the silent ports again, longer,
        # before calling the endpoints half up
        answers = [a or port_answers(h, p, timeout=3.0) for a, (h, p) in zip(answers, endpoints)]
    if all(answers):
        return conn, None
    if any(answers):
        names = ("blob", "queue", "table")
        up = ", ".join(f"{n} {h}:{p}" for n, (h, p), a in zip(names, endpoints, answers) if a)
        down = ", ".join(f"{n} {h}:{p}" for n, (h, p), a in zip(names, endpoints, answers) if not a)
        raise AzuriteError(
            f"{settings.connection_setting} points at this machine, but only some of its storage ports answer "
            f"({up} answer; {down} do not): stop whatever listens there, or start a complete Azurite "
            "('durafunc azurite start').")
    config = AzuriteConfig.load(settings.app_root)
    wanted = dict(zip(("blob", "queue", "table"), (p for _, p in endpoints)))
    ignored = [k for k, n in (("blobPort", "blob"), ("queuePort", "queue"), ("tablePort", "table"))
               if k in config.explicit and config.ports[n] != wanted[n]]
    if ignored:
        echo(f"Note: azurite.json {'/'.join(ignored)} ignored: {settings.connection_setting} points at ports "
             f"{wanted['blob']}/{wanted['queue']}/{wanted['table']}.")
    if config.host not in ("0.0.0.0", "::"):
        config.host = _dial_host(endpoints[0][0])
    config.blob_port, config.queue_port, config.table_port = wanted["blob"], wanted["queue"], wanted["table"]
    managed = ManagedAzurite(config, settings.app_root)
    managed.start()
    echo(f"Started Azurite (pid {managed.pid}; blob {config.blob_port}, queue {config.queue_port}, "
         f"table {config.table_port}; {managed.where}). It stops when durafunc exits.")
    return conn, managed


# -- `durafunc azurite start|stop|status|clean|install` -------------------------------------------------

def start_detached(app_root: Path, config: AzuriteConfig, timeout: float = 30.0) -> dict:
    """Start Azurite in the background (it outlives this process). Returns its record; `already` is True when
    one started this way already runs here."""
    for data in running_azurites(app_root):
        if data.get("owner") is None:
            return {**data, "already": True}
    busy = [f"{n} {p}" for n, p in config.ports.items() if p and port_answers(config.host, p)]
    if busy:
        raise AzuriteError(f"something already listens on the Azurite ports ({', '.join(busy)}); stop it or "
                           "choose other ports (azurite.json, or --blob-port/--queue-port/--table-port)")
    m = ManagedAzurite(config, app_root)
    m.start(timeout=timeout, detach=True)
    return json.loads(m.record_path.read_text())


def stop_detached(app_root: Path, timeout: float = 10.0) -> list[dict]:
    """Stop the Azurites `durafunc azurite start` started here, and any left behind by a `durafunc start` that
    is gone. Raises AzuriteError when the only ones running belong to a live `durafunc start`."""
    running = running_azurites(app_root)
    ours = [d for d in running if d.get("owner") is None or d.get("orphan")]
    owned = [d for d in running if d not in ours]
    if not ours and owned:
        d = owned[0]
        raise AzuriteError(f"the Azurite running here (pid {d['pid']}) belongs to 'durafunc start' "
                           f"(pid {d['owner']}) and stops when it exits")
    for d in ours:
        _terminate(int(d["pid"]), timeout)
        Path(d["record"]).unlink(missing_ok=True)
    return ours


def clean(app_root: Path, config: AzuriteConfig) -> tuple[Path, list[Path]]:
    """Delete Azurite's files in its data folder (only Azurite's own files: the folder may hold others).
    Refuses while an Azurite durafunc started for this app runs. Returns the folder and what was deleted."""
    running = running_azurites(app_root)
    if running:
        pids = ", ".join(str(d["pid"]) for d in running)
        raise AzuriteError(f"Azurite is running (pid {pids}); stop it first with 'durafunc azurite stop'"
                           + (" or by stopping 'durafunc start'" if any(d.get("owner") for d in running) else ""))
    folder = config.data_dir(app_root)
    removed: list[Path] = []
    if folder.is_dir():
        for pattern in DATA_PATTERNS:
            for p in sorted(folder.glob(pattern)):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(p)
        if folder != app_root and not any(folder.iterdir()):
            folder.rmdir()
    return folder, removed


def install(app_root: Path) -> Path:
    """npm install azurite into <app_root>/node_modules (as a dev dependency). Returns the binary's path."""
    npm = shutil.which("npm")
    if not npm:
        raise AzuriteError("npm was not found: install Node.js 18+ with npm (https://nodejs.org), "
                           "then run 'durafunc azurite install'")
    r = subprocess.run([npm, "install", "--prefix", str(app_root), "--save-dev", "--no-audit", "--no-fund",
                        f"azurite@{AZURITE_VERSION}"], cwd=app_root, stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode:
        raise AzuriteError(f"'npm install azurite@{AZURITE_VERSION}' failed with exit code {r.returncode}")
    return app_root / "node_modules" / ".bin" / "azurite"


# -- other commands finding an Azurite started here ------------------------------------------------------------

def recorded_azurite(app_root, conn: str) -> dict | None:
    """A running Azurite durafunc started for this app (`.durafunc/run/azurite-<pid>.json`) to use instead of a
    local connection whose ports do not answer (after `durafunc azurite start --blob-port ...`)."""
    if app_root is None:
        return None
    endpoints = local_endpoints(conn)
    if endpoints is None or all(port_answers(h, p) for h, p in endpoints):
        return None
    for data in running_azurites(app_root):
        ports = data.get("ports") or {}
        if data.get("connection") and all(port_answers("127.0.0.1", ports.get(k) or 0)
                                          for k in ("blob", "queue", "table")):
            return data
    return None
