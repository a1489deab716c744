"""`durafunc start`: load the app, bring up storage, the engine and the HTTP server; reload on change."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field

from aiohttp import web

from .azurite import ManagedAzurite, ensure_azurite, recorded_azurite
from .durable.client import DurableClient
from .durable.engine import Engine, EngineOptions
from .durable.replay import HTTP_ACTIVITY
from .durable.worker import UserCodeError
from .http.call_http import HttpCalls
from .settings import Settings, export_values
from .storage.taskhub import TaskHub

log = logging.getLogger("durafunc.host")
CLIENT_BINDINGS = ("durableclient", "orchestrationclient")


class HostError(Exception):
    """A one-line reason `durafunc start` cannot run."""


@dataclass
class StartOptions:
    port: int | None = None
    address: str | None = None
    cors: str | None = None
    cors_credentials: bool | None = None
    functions: list[str] | None = None
    strict: bool = False
    enable_auth: bool = False
    watch: bool = True
    worker_id: str | None = None
    verbose: bool = False
    echo: object = field(default=print)
    timeout: float = 20.0          # seconds the host may take to start (Core Tools' --timeout)


class FunctionsAdapter:
    """The engine's view of the user's app (DurableFunctions), through the host so reloads take effect.

    Every run is logged as Core Tools logs it (`Executing 'Functions.x' (Reason='...', Id=...)` / `Executed ...`),
    replay-safe: an orchestrator episode that brings no new event is a replay, not a new run (logged at DEBUG),
    and an orchestrator failure is logged with the user's traceback once, in the run where it happens (raised
    again while the SDK replays history, it is the same failure)."""

    def __init__(self, host: "Host"):
        self.host = host

    def orchestrator_names(self) -> list[str]:
        return self.host.app.orchestrator_names

    def activity_names(self) -> list[str]:
        return self.host.app.activity_names

    async def run_orchestrator(self, name: str, call) -> str:
        from .functions.durable_log import episode_of
        from .functions.logcontext import InvocationLog, failed_while_replaying
        fn = self.host.app.orchestrator(name)
        ep = episode_of(call.instance_id, call.history)
        run = InvocationLog(fn.name, ep.reason, quiet=not ep.is_new_run).started()
        try:
            answer = await self.host.invoker.run_orchestrator(fn.name, call, invocation_id=run.id)
        except Exception as e:  # noqa: BLE001 - user code; the engine turns it into the instance's state
            if run.level == logging.INFO and failed_while_replaying(e):
                run.failed(e, details=False, level=logging.DEBUG)   # an earlier run's failure, replayed
            else:
                run.failed(e)
            raise
        run.succeeded()
        return answer

    def entity_names(self) -> list[str]:
        return self.host.app.entity_names

    async def run_entity(self, name: str, context_json: str) -> str:
        from .functions.durable_log import entity_batch, failed_operations
        from .functions.logcontext import InvocationLog
        fn = self.host.app.entity(name)
        batch = entity_batch(context_json)
        run = InvocationLog(fn.name, batch.reason).started()
        try:
            answer = await self.host.invoker.run_entity(fn.name, context_json, invocation_id=run.id)
        except Exception as e:  # noqa: BLE001 - user code
            run.failed(e)
            raise
        run.succeeded()
        # the SDK runs each operation in a try: a failed one is an answer to its caller, not a failed batch
        for op, message in failed_operations(batch, answer):
            log.error("Entity '%s' (Functions.%s, Id=%s): operation '%s' failed: %s", batch.instance_id, fn.name,
                      run.id, op, message)
        return answer

    async def run_activity(self, name: str, input_text: str | None, *, instance_id: str) -> str | None:
        if name == HTTP_ACTIVITY:
            return await self.host.http_calls.run(input_text, instance_id=instance_id)
        info = self.host.app.activity(name)
        if info is None:
            raise UserCodeError("FunctionNotFound", f"The function '{name}' doesn't exist, is disabled, or is not "
                                                   "an activity function.")
        from .functions.durable_log import activity_reason
        from .functions.logcontext import InvocationLog
        run = InvocationLog(info.name, activity_reason(instance_id)).started()
        try:
            result = await self.host.invoker.run_activity(info.name, input_text, instance_id=instance_id,
                                                          invocation_id=run.id)
        except Exception as e:  # noqa: BLE001 - user code; the engine turns it into TaskFailed
            run.failed(e)
            raise
        run.succeeded()
        return result


class Host:
    def __init__(self, settings: Settings, options: StartOptions):
        self.settings = settings
        self.opt = options
        self.echo = options.echo
        # stable across restarts (one host per port on a machine): a restarted host adopts its own leases at once
        # (--port 0, any free port: the process id, so two such hosts never share a worker id)
        self.worker_id = options.worker_id or f"{socket.gethostname()}-" + (
            f"pid{os.getpid()}" if options.port == 0 else f"{options.port or settings.http_port}")
        self.app = None
        self.invoker = None
        self._routes = None
        self.azurite: ManagedAzurite | None = None
        self.hub: TaskHub | None = None
        self.engine: Engine | None = None
        self.http_calls = HttpCalls(async_sleep_ms=settings.http_async_sleep_ms)   # context.call_http
        self.listeners = None     # functions.triggers.Listeners: timer, queue and blob triggers (and `io`, the
                                  # app's storage bindings)
        self.api = None
        self.runner: web.AppRunner | None = None
        self.stop_event: asyncio.Event | None = None
        self.reloads = 0
        self.ready = False              # startup done: file changes reload the app from now on
        self._waiting_for: str | None = None    # what startup is waiting for (for the --timeout message)
        self._changed_early = False     # a file changed while the host was starting
        # the Functions host's states (ScriptHostState): Default, Starting, Initialized (functions loaded, HTTP
        # up), Running (engine and listeners run: user routes are served), Stopping, Stopped
        self.state = "Default"
        self._record = None             # .durafunc/run/host-<pid>.json while serving
        self.url: str | None = None

    # -- app loading ---------------------------------------------------------------------------
    def _load_app(self):
        from .functions import load_app
        from .functions.invoke import Invoker
        only = self.opt.functions or self.settings.functions
        source = "--functions" if self.opt.functions else f"{self.settings.app_root / 'host.json'}: functions"
        app = load_app(self.settings.app_root, env=os.environ, only=only, strict=self.opt.strict,
                       only_source=source)
        if self.listeners is None:
            from .functions.triggers import Listeners
            self.listeners = Listeners.for_host(os.environ, self.settings.queues, echo=self.echo)
        return app, Invoker(app, max_workers=self.settings.max_concurrent_activities, io=self.listeners.io)

    def load(self) -> None:
        self._swap(*self._load_app())

    def _swap(self, app, invoker) -> None:
        old = self.invoker
        self.app, self.invoker, self._routes = app, invoker, None
        if old is not None:
            old.close()
        if self.engine is not None:
            self.engine.extended.clear()     # the sessions hold the previous code's generators

    def route_table(self):
        if self._routes is None:
            from .functions.routes import RouteTable
            self._routes = RouteTable.for_app(self.app, self.settings.route_prefix)
        return self._routes

    def client_json(self, fn) -> str | None:
        """The durable client binding's JSON for a function that declares one (None otherwise)."""
        if fn is None or self.api is None or not any(b.type.lower() in CLIENT_BINDINGS for b in fn.bindings):
            return None
        return self.api.client_binding()

    # -- output ------------------------------------------------------------------------------------
    def function_lines(self, base_url: str) -> list[str]:
        prefix = f"{self.settings.route_prefix}/" if self.settings.route_prefix else ""
        lines = []
        fns = sorted(self.app.functions.values(), key=lambda f: (f.kind != "http", f.name.lower()))
        for f in fns:
            if f.kind == "http":
                methods = f"[{','.join(m.upper() for m in f.methods)}] " if f.methods else ""
                lines.append(f"\t{f.name}: {methods}{base_url}/{prefix}{f.route}")
            else:
                lines.append(f"\t{f.name}: {f.trigger.type}")
        return lines

    # -- lifecycle ---------------------------------------------------------------------------------
    async def run(self) -> None:
        t0 = time.monotonic()
        self.stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop_event.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            try:
                await asyncio.wait_for(self.startup(t0), self.opt.timeout)
            except asyncio.TimeoutError:
                why = f": {self._waiting_for}" if self._waiting_for else ""
                raise HostError(f"The host did not start within {self.opt.timeout:g} seconds (--timeout){why}.") \
                    from None
            await self.stop_event.wait()
        finally:
            await self.shutdown()

    async def startup(self, t0: float | None = None) -> None:
        from .http.app import HostApp, Keys
        from .http.durable_api import DurableApi
        t0 = t0 or time.monotonic()
        s = self.settings
        self.state = "Starting"
        self.echo(versions_line())
        for w in s.warnings:
            self.echo(w if w.startswith("Skipping ") else f"Warning: {w}")   # Core Tools prints Skipping lines as is
        export_values(s)
        sys.path.insert(0, str(s.app_root)) if str(s.app_root) not in sys.path else None
        if self.opt.watch:
            self._start_watcher()       # before loading: a change made while the host starts is not missed
        self.load()
        for err in self.app.errors:
            self.echo(f"Error: {err.file}: {err.reason}" + (f" (function '{err.function}' not loaded)"
                                                            if err.function else ""))
        for name in self.app.disabled:
            self.echo(f"Function {name} is disabled.")
        self._warn_not_emulated()
        port = self.opt.port if self.opt.port is not None else s.http_port
        address = self.opt.address or s.http_address
        where = "--address" if self.opt.address else f"{s.app_root / 'local.settings.json'}: Host.LocalHttpAddress"
        check_address(address, where)
        recorded = recorded_azurite(s.app_root, s.connection_string) if s.connection_string else None
        if recorded is not None:        # `durafunc azurite start --blob-port ...` runs for this app: use it
            ports = recorded.get("ports") or {}
            s.connection_string = recorded["connection"]
            self.echo(f"Using the Azurite started here (pid {recorded['pid']}; blob {ports.get('blob')}, queue "
                      f"{ports.get('queue')}, table {ports.get('table')}): nothing answers on the ports of "
                      f"{s.connection_setting}.")
        conn, self.azurite = ensure_azurite(s, echo=self.echo)
        self.hub = TaskHub(conn, s.hub_name, s.partition_count)
        opts = EngineOptions(max_concurrent_activities=s.max_concurrent_activities,
                             control_batch_size=s.control_queue_batch_size,
                             max_polling_interval=s.max_queue_polling_interval,
                             poison_max_dequeue_count=s.poison_max_dequeue_count,
                             store_inputs=s.store_inputs_in_history, worker_id=self.worker_id,
                             session_idle=s.extended_session_idle_seconds)
        if s.control_queue_visibility:
            opts.control_visibility = s.control_queue_visibility
        if s.work_item_visibility:
            opts.work_item_visibility = s.work_item_visibility
        self.engine = Engine(self.hub, FunctionsAdapter(self), opts)
        display = "localhost" if address in ("127.0.0.1", "0.0.0.0", "::") else address
        origin = f"http://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}"
        api = self.api = DurableApi(DurableClient(self.hub, self.engine), s.hub_name,
                                    lambda: self.app.orchestrator_names, origin)
        cors = [c for c in (self.opt.cors.split(",") if self.opt.cors else s.cors) if c]
        keys = Keys(s.app_root / ".durafunc" / "keys.json") if self.opt.enable_auth else None
        web_app = HostApp(self, api, cors=cors, keys=keys,
                          cors_credentials=self.opt.cors_credentials if self.opt.cors_credentials is not None
                          else s.cors_credentials).build()
        self.runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, address, port, reuse_address=True)
        self.state = "Initialized"      # functions loaded; /admin/host/status answers, user routes wait (503)
        try:
            await site.start()
        except OSError as e:
            raise HostError(listen_error(e, address, port, where)) from None
        if port == 0:                   # any free port: the one the system gave
            port = self.runner.addresses[0][1]
            origin = f"http://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}"
            api.origin, api._binding = origin, None
        self.url = origin
        await self._start_engine(conn)
        self.echo("")
        self.echo(f"Task hub: {s.hub_name} ({s.partition_count} partitions) on "
                  f"{_describe_storage(conn)}; worker {self.worker_id}")
        if self.app.functions:
            self.echo("\nFunctions:\n")
            for line in self.function_lines(f"http://{display}:{port}"):
                self.echo(line + "\n")
        else:
            self.echo("No job functions found.")
        self.listeners.start(self.app, self._run_triggered)
        self.state = "Running"
        self._write_record()
        self.ready = True
        if self._changed_early:
            asyncio.get_running_loop().call_soon(self.reload)
        self.echo(f"Host started in {time.monotonic() - t0:.2f} s. Press Ctrl+C to stop.")

    async def _start_engine(self, conn: str) -> None:
        """Start the engine; while storage does not answer, say so once and keep trying (bounded by --timeout)."""
        from .storage.errors import StorageUnavailableError
        delay = 0.2
        while True:
            try:
                await self.engine.start()
                self._waiting_for = None
                return
            except StorageUnavailableError as e:
                if self._waiting_for is None:
                    self.echo(f"Warning: storage at {_describe_storage(conn)} is unavailable; waiting for it "
                              f"({str(e).splitlines()[0]})")
                self._waiting_for = f"storage at {_describe_storage(conn)} did not answer"
                await self.engine.stop(grace=0)
                from .durable.engine import Engine
                self.engine = Engine(self.hub, self.engine.functions, self.engine.opt)
                self.api.client.engine = self.engine
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    # -- triggers (functions/triggers listens; this runs the function with its client binding) ------------
    async def _run_triggered(self, name: str, event) -> None:
        """Run a function a listener fired, logged as Core Tools logs it: `Executing` with the trigger's reason,
        its `Trigger Details`, `Executed` (a failure with the user's traceback); raises when it failed (the
        listener retries or poisons)."""
        from .functions.logcontext import InvocationLog
        run = InvocationLog(name, event.reason).started()
        if event.details:
            run.details(event.details)
        try:
            await self.invoker.run_triggered(name, event, self.client_json(self.app.functions.get(name)),
                                             invocation_id=run.id)
        except asyncio.CancelledError:      # cut off by a shutdown after its grace period
            run.failed(None, details=False, level=logging.WARNING)
            raise
        except Exception as e:  # noqa: BLE001 - user code
            run.failed(e)
            raise
        run.succeeded()

    def _warn_not_emulated(self) -> None:
        from .functions.emulated import start_warnings
        for w in start_warnings(self.app):
            self.echo(f"Warning: {w}")

    def _write_record(self) -> None:
        """.durafunc/run/host-<pid>.json: facts for the management commands (status URLs, orchestrator names)."""
        from . import hostrecord
        try:
            self._record = hostrecord.write(self.settings.app_root, {
                "url": self.url, "hub": self.settings.hub_name, "worker": self.worker_id,
                "orchestrators": sorted(self.app.orchestrator_names)})
        except OSError as e:            # a read-only app folder: the commands then say less
            log.debug("could not write the host record: %s", e)

    async def shutdown(self) -> None:
        from . import hostrecord
        self.state = "Stopping"
        hostrecord.remove(self._record)
        self._record = None
        observer = getattr(self, "_observer", None)
        if observer is not None:
            observer.stop()
        if self.listeners is not None:
            await self.listeners.stop(grace=10)   # no new triggers; running invocations finish first
        if self.engine is not None:
            await self.engine.stop(grace=10)
        await self.http_calls.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.hub is not None:
            await self.hub.close()
        if self.invoker is not None:
            self.invoker.close()
        if self.listeners is not None:
            await self.listeners.close()
        if self.azurite is not None:
            self.azurite.stop()
            self.echo("Stopped the managed Azurite.")
        self.state = "Stopped"

    # -- hot reload --------------------------------------------------------------------------------
    def _start_watcher(self) -> None:
        """Watch the app's files (not `.durafunc/`, virtual environments, node_modules, caches or dot-folders:
        Azurite's data and installed packages are no change to the app) and reload on a .py/.json change."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        loop = asyncio.get_running_loop()
        host = self
        state = {"handle": None}
        root = self.settings.app_root
        observer = Observer()
        watched: set[str] = set()

        def watch(folder, recursive: bool) -> None:
            key = f"{folder}|{recursive}"
            if key in watched:
                return
            watched.add(key)
            try:
                observer.schedule(handler, str(folder), recursive=recursive)
            except OSError as e:          # a folder gone meanwhile, or out of inotify watches
                log.debug("cannot watch %s: %s", folder, e)

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write"):
                    return            # reading a file (the reload's own import) is no change (watchdog >= 4)
                # an editor that saves by renaming a temporary file moves it onto the .py file
                path = str(getattr(event, "dest_path", "") or getattr(event, "src_path", ""))
                if not watched_path(root, path):
                    return
                if event.is_directory:
                    if event.event_type not in ("created", "moved") or os.path.dirname(path) != str(root):
                        return
                    # a new top-level folder (a v1 function): watch it, and reload for what it already holds
                    loop.call_soon_threadsafe(watch, path, True)
                elif not (path.endswith(".py") or path.endswith(".json")):
                    return

                def schedule():
                    if not host.ready:
                        host._changed_early = True
                        return
                    if state["handle"]:
                        state["handle"].cancel()
                    state["handle"] = loop.call_later(0.3, host.reload)
                loop.call_soon_threadsafe(schedule)

        handler = Handler()
        # watchdog warns when folders appear quickly under a recursive watch: harmless, and not the user's business
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"watchdog\.")
        watch(root, False)              # the top level (host.json, function_app.py, new folders)
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.is_symlink() and watched_path(root, str(child)):
                watch(child, True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def reload(self) -> None:
        try:
            app, invoker = self._load_app()
        except Exception as e:  # noqa: BLE001 - keep serving the previous version
            self.echo(f"Reload failed, still running the previous code: {e}")
            return
        for err in app.errors:
            self.echo(f"Error: {err.file}: {err.reason}")
        if app.errors and not app.functions and self.app is not None and self.app.functions:
            invoker.close()
            self.echo("Reload failed, still running the previous code.")
            return
        self._swap(app, invoker)
        self._warn_not_emulated()
        self.listeners.reload(self.app)
        if self._record is not None:
            self._write_record()
        self.reloads += 1
        self.echo(f"Reloaded {len(self.app.functions)} functions after a change in {self.settings.app_root}.")


def versions_line() -> str:
    """durafunc, Python and the Azure Functions packages in use: the app runs with exactly these."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"
    return (f"durafunc {__version__} · Python {sys.version.split()[0]} ({sys.executable}) · "
            f"azure-functions {v('azure-functions')} · azure-functions-durable {v('azure-functions-durable')}")


# folders of an app that are never its code: durafunc's own state (Azurite's data), environments, packages, caches
IGNORED_FOLDERS = {".durafunc", ".venv", "venv", "env", "node_modules", "__pycache__", ".python_packages",
                   "__blobstorage__", "__queuestorage__", "__azurite_db_blob__"}


def watched_path(root, path: str) -> bool:
    """Is `path` (under the app root) part of the app: no part of it an ignored or dot-folder."""
    try:
        rel = os.path.relpath(path, str(root))
    except ValueError:
        return False
    parts = rel.split(os.sep)
    if rel == "." or parts[0] == "..":
        return rel == "."
    return not any(p in IGNORED_FOLDERS or p.startswith(".") for p in parts)


def check_address(address: str, where: str) -> None:
    """A listen address must be an IP address or a host name that resolves; one line naming it otherwise."""
    import ipaddress
    import re
    try:
        ipaddress.ip_address(address)
        return
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]*:[0-9a-fA-F:.]*", address or ""):
        raise HostError(f"{where}: '{address}' is not a valid IP address")
    try:
        socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError):
        raise HostError(f"{where}: '{address}' is neither an IP address nor a host name that resolves") from None


def listen_error(e: OSError, address: str, port: int, where: str) -> str:
    """Why the HTTP server could not listen, from the errno (a port in use is only one of the reasons)."""
    import errno
    if e.errno == errno.EADDRINUSE:
        return (f"Port {port} is unavailable. Close the process using that port, or specify another port using "
                "--port [-p].")
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{where}: cannot listen on '{address}': it is not an address of this machine"
    if e.errno == errno.EACCES:
        return f"Port {port} needs more privileges on this machine (ports below 1024): use --port 7071 or another"
    if isinstance(e, socket.gaierror):
        return f"{where}: '{address}' is neither an IP address nor a host name that resolves"
    return f"Cannot listen on {address}:{port}: {e.strerror or e}"


def _describe_storage(conn: str) -> str:
    from .settings import parse_connection_string
    parts = parse_connection_string(conn)
    q = parts.get("queueendpoint") or parts.get("accountname", "storage")
    return q
