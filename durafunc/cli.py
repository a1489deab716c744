"""The `durafunc` command line: thin click commands that parse, call and print."""
from __future__ import annotations

import sys

import click

from . import __version__


class UserError(click.ClickException):
    """A one-line error: printed without a traceback, exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", prog_name="durafunc")
def main() -> None:
    """durafunc: run Azure Durable Functions Python apps locally on Azurite."""


# ---------------------------------------------------------------------------------------------
# Each section below is owned by one part of the product; keep edits inside your section.
# ---------------------------------------------------------------------------------------------

# == host: start ==============================================================================

class _HostFormatter:
    """`[time] message`, with the function and invocation for user logs, as Core Tools prints them."""

    def __init__(self):
        import logging
        self._base = logging.Formatter()

    def format(self, record) -> str:
        import datetime
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
        who = f"{record.function_name} ({record.invocation_id[:8]}): " if getattr(record, "function_name", "") else ""
        level = "" if record.levelname == "INFO" else f"{record.levelname}: "
        text = f"[{ts[:-3]}Z] {level}{who}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self._base.formatException(record.exc_info)
        return text


# Core Tools' --user-log-level values -> Python logging levels
USER_LOG_LEVELS = {"trace": 5, "debug": 10, "information": 20, "warning": 30, "error": 40, "critical": 50,
                   "none": 100}
_SYSTEM_LOGGERS = ("durafunc", "azure", "aiohttp", "asyncio", "watchdog", "urllib3")


def _configure_logging(verbose: bool, user_level: int = 20, show_replay_logs: bool = False) -> None:
    """System logs (durafunc's, the SDKs') at INFO (DEBUG with --verbose); the app's own logs from `user_level`,
    without those an orchestrator makes while it replays (unless `show_replay_logs`)."""
    import logging

    from .functions.logcontext import InvocationFilter, ReplayFilter

    def keep(record: logging.LogRecord) -> bool:
        system = record.name.split(".")[0] in _SYSTEM_LOGGERS
        return system or record.levelno >= user_level

    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(InvocationFilter())
    handler.addFilter(keep)
    handler.addFilter(ReplayFilter(show_replay_logs, _SYSTEM_LOGGERS))
    handler.setFormatter(_HostFormatter())
    system_level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=min(system_level, user_level), handlers=[handler], force=True)
    logging.getLogger("durafunc").setLevel(system_level)
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING if not verbose else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("watchdog").setLevel(logging.WARNING)   # its DEBUG lines are every file event it sees
    from .http.app import quiet_parse_errors
    quiet_parse_errors(logging.getLogger("aiohttp.server"))
    if not verbose:
        logging.getLogger("durafunc.engine").setLevel(logging.WARNING)


def _port(ctx, param, value):
    """--port: a TCP port number; one line naming it otherwise (not click's usage text)."""
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UserError(f"--port: '{value}' is not a port number (0 to 65535; 0 = any free port)")
    return port


@main.command()
@click.option("-p", "--port", default=None, callback=_port, help="Local port to listen on (0: any free port). "
                                                                  "Default: 7071")
@click.option("--address", default=None, help="Local IP address to bind to. Default: 127.0.0.1")
@click.option("--cors", default=None, help="A comma separated list of CORS origins with no spaces.")
@click.option("--cors-credentials", is_flag=True, default=None, help="Allow cross-origin authenticated requests.")
@click.option("--functions", multiple=True, help="Functions to load: --functions a b c (space separated list).")
@click.option("--strict", is_flag=True, help="Stop if any function fails to load.")
@click.option("--enable-auth", "--enableAuth", "enable_auth", is_flag=True,
              help="Require function keys (kept in .durafunc/keys.json).")
@click.option("--no-reload", is_flag=True, help="Do not reload when files of the app change.")
@click.option("--task-hub-name", default=None, help="Task hub to use instead of host.json's hubName.")
@click.option("--worker-id", default=None, help="Name of this host in the task hub (default: hostname-port).")
@click.option("--script-root", "--prefix", "script_root", type=click.Path(file_okay=False), default=None,
              help="Path to the root of the function app (default: the current folder).")
@click.option("--verbose", is_flag=True, help="Show engine and host logs.")
@click.option("--user-log-level", type=click.Choice([k.capitalize() for k in USER_LOG_LEVELS], case_sensitive=False),
              default=None, help="Minimum level of the app's own logs (system logs are not affected).")
@click.option("-t", "--timeout", type=click.IntRange(min=1), default=20, show_default=True,
              help="Seconds the host may take to start.")
@click.option("--show-replay-logs", is_flag=True,
              help="Also show the app's logs made while an orchestrator replays (context.is_replaying).")
@click.option("--language-worker", default=None, hidden=True)
@click.option("--no-build", is_flag=True, hidden=True)
@click.option("--useHttps", "use_https", is_flag=True, hidden=True)
@click.argument("more_functions", nargs=-1, metavar="")
def start(port, address, cors, cors_credentials, functions, strict, enable_auth, no_reload, task_hub_name,
          worker_id, script_root, verbose, user_log_level, timeout, show_replay_logs, language_worker, no_build,
          use_https, more_functions):
    """Launch the Functions host for the app in this folder."""
    import asyncio
    import os
    sys.stdout.reconfigure(line_buffering=True)

    from .azurite import AzuriteError
    from .host import Host, HostError, StartOptions
    from .settings import SettingsError, find_app_root, load_settings
    try:
        root = find_app_root(script_root or os.getcwd())
        os.chdir(root)
        settings = load_settings(root, hub_name=task_hub_name)
    except SettingsError as e:
        raise UserError(str(e)) from None
    if use_https:
        raise UserError("--useHttps is not supported by durafunc: it serves HTTP on 127.0.0.1 only "
                        "(put a TLS proxy in front if you need HTTPS)")
    if language_worker is not None:
        click.echo("Note: --language-worker is not needed: durafunc runs your Python code in its own process. "
                   "To debug, run: python -m debugpy --listen 5678 -m durafunc start")
    _configure_logging(verbose, USER_LOG_LEVELS[(user_log_level or "information").lower()], show_replay_logs)
    if more_functions and not functions:
        raise UserError(f"unexpected argument '{more_functions[0]}' (function names go after --functions)")
    # `--functions a b c` as in Core Tools: names after the option arrive as extra arguments
    names = [n for item in (*functions, *more_functions) for n in item.split()] or None
    opts = StartOptions(port=port, address=address, cors=cors, cors_credentials=cors_credentials,
                        functions=names, strict=strict, enable_auth=enable_auth, watch=not no_reload,
                        worker_id=worker_id, verbose=verbose, echo=click.echo, timeout=timeout)
    from .functions import AppLoadError
    try:
        asyncio.run(Host(settings, opts).run())
    except (HostError, AzuriteError, SettingsError, AppLoadError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        pass

# == azurite ==================================================================================

def _azurite_root():
    """The app root when there is one (walking up), else the current folder."""
    import os
    from pathlib import Path

    from .settings import SettingsError, find_app_root
    try:
        return find_app_root(os.getcwd())
    except SettingsError:
        return Path.cwd()


def _azurite_config(root, **overrides):
    """azurite.json of `root` with the command-line overrides that were given; one-line errors."""
    from . import azurite as az
    try:
        cfg = az.AzuriteConfig.load(root)
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    for attr, value in overrides.items():
        if value is not None:
            setattr(cfg, attr, value)
    return cfg


def _azurite_line(data) -> str:
    ports = data["ports"]
    where = f"data in {data['location']}" if data.get("location") else "in memory"
    return f"blob {ports['blob']}, queue {ports['queue']}, table {ports['table']}; {where}"


_PORT = click.IntRange(0, 65535)


@main.group()
def azurite() -> None:
    """Run the Azure Storage emulator (Azurite) on its own: start, stop, status, clean, install.

    Works in the app folder (found by walking up to host.json / local.settings.json), else the current folder,
    with the settings of its azurite.json.
    """


@azurite.command("start")
@click.option("--in-memory", is_flag=True, default=None, help="Keep data in memory only.")
@click.option("--location", default=None, help="Data folder (default: .durafunc/azurite of the app).")
@click.option("--blob-port", type=_PORT, default=None, help="Default: azurite.json blobPort, else 10000 (0: any).")
@click.option("--queue-port", type=_PORT, default=None, help="Default: azurite.json queuePort, else 10001.")
@click.option("--table-port", type=_PORT, default=None, help="Default: azurite.json tablePort, else 10002.")
def azurite_start(in_memory, location, blob_port, queue_port, table_port):
    """Start Azurite in the background with the settings of azurite.json."""
    from . import azurite as az
    if in_memory and location is not None:
        raise UserError("--in-memory and --location exclude each other (in memory there is no data folder)")
    root = _azurite_root()
    cfg = _azurite_config(root, in_memory=in_memory, location=location, blob_port=blob_port,
                          queue_port=queue_port, table_port=table_port)
    if location is not None and in_memory is None:
        cfg.in_memory = False
    try:
        data = az.start_detached(root, cfg)
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    verb = "already running" if data.get("already") else "started"
    click.echo(f"Azurite {verb} (pid {data['pid']}): {_azurite_line(data)}")
    click.echo(f"Connection string: {data['connection']}")
    click.echo("Stop it with 'durafunc azurite stop'.")


@azurite.command("stop")
def azurite_stop():
    """Stop the Azurite started with `durafunc azurite start` here (only that one)."""
    from . import azurite as az
    try:
        stopped = az.stop_detached(_azurite_root())
    except (az.AzuriteError, OSError) as e:
        raise UserError(str(e)) from None
    if not stopped:
        click.echo("No Azurite started by durafunc is running here.")
    for data in stopped:
        click.echo(f"Azurite stopped (pid {data['pid']}).")


@azurite.command("status")
def azurite_status():
    """Is an Azurite started by durafunc running here, and do its ports answer? Exit code 0: running."""
    from . import azurite as az
    root = _azurite_root()
    running = az.running_azurites(root)
    for data in running:
        by = "'durafunc azurite start'" if data.get("owner") is None else \
            f"'durafunc start' (pid {data['owner']}" + (", gone)" if data.get("orphan") else ")")
        click.echo(f"Azurite running (pid {data['pid']}, started by {by}): {_azurite_line(data)}")
    if running:
        ports = running[0]["ports"]
    else:
        cfg = _azurite_config(root)
        ports = cfg.ports
        configured = {"ports": ports, "location": None if cfg.in_memory else cfg.data_dir(root)}
        click.echo("No Azurite started by durafunc is running here.")
        click.echo(f"azurite.json: {_azurite_line(configured)}")
    click.echo("Ports: " + ", ".join(
        f"{k} {p} {'answers' if az.port_answers('127.0.0.1', p) else 'closed'}" if p else f"{k} any free port"
        for k, p in ports.items()))
    sys.exit(0 if running else 1)


@azurite.command("clean")
@click.option("--location", default=None, help="Data folder (default: azurite.json location, .durafunc/azurite).")
def azurite_clean(location):
    """Delete Azurite's data (its files in the data folder; refuses while it runs)."""
    from . import azurite as az
    root = _azurite_root()
    cfg = _azurite_config(root, location=location)
    try:
        folder, removed = az.clean(root, cfg)
    except (az.AzuriteError, OSError) as e:
        raise UserError(str(e)) from None
    if removed:
        click.echo(f"Removed Azurite data in {folder} ({len(removed)} items).")
    else:
        click.echo(f"No Azurite data in {folder}.")


@azurite.command("install")
def azurite_install():
    """Install Azurite from npm into ./node_modules of the app (or of the current folder)."""
    from . import azurite as az
    try:
        binary = az.install(_azurite_root())
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    click.echo(f"Installed azurite@{az.AZURITE_VERSION}: {binary}")

# == scaffolding: init, new, templates ========================================================


@main.command()
@click.argument("folder", required=False, default=".")
@click.option("--model", type=click.Choice(["v1", "v2"], case_sensitive=False), default="v2", show_default=True,
              help="Python programming model: v2 (function_app.py decorators) or v1 (function.json folders).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(folder, model, force):
    """Create a new Durable Functions app (in FOLDER, default: here)."""
    from pathlib import Path

    from .scaffold import ScaffoldError, init_app
    try:
        result = init_app(Path(folder), model, force)
    except (ScaffoldError, OSError) as e:
        raise UserError(str(e)) from None
    for p in result.written:
        click.echo(f"Writing {p.relative_to(result.folder)}")
    for p in result.skipped:
        click.secho(f"Skipped {p.relative_to(result.folder)} (exists; use --force to overwrite)", fg="yellow")
    if not result.written:
        click.secho(f"Nothing written: all {len(result.skipped)} files of the app already exist in {result.folder} "
                    "(use --force to overwrite them).", fg="yellow")
    elif result.skipped:
        click.secho(f"Created the missing files of a {result.model} Durable Functions app in {result.folder} "
                    f"({len(result.written)} written, {len(result.skipped)} kept as they were).", fg="green")
    else:
        click.secho(f"Created a {result.model} Durable Functions app in {result.folder} "
                    f"(task hub '{result.hub_name}').", fg="green")
    where = "" if result.folder == Path.cwd().resolve() else f"cd {folder} && "
    click.echo(f"Next: {where}durafunc start")


@main.command()
@click.option("--template", "-t", required=True, help="Template name (see `durafunc templates list`).")
@click.option("--name", "-n", required=True, help="Name of the new function.")
@click.option("--file", "file_", default=None, help="v2: add to this blueprint file (created if missing).")
@click.option("--authlevel", "-a", default=None, help="anonymous, function (default) or admin (HTTP templates). "
                                                      "Not enforced locally unless `durafunc start --enable-auth`.")
def new(template, name, file_, authlevel):
    """Create a new function in the app from a template."""
    import os

    from .scaffold import ScaffoldError, detect_model, new_function, resolve_template
    from .settings import SettingsError, find_app_root
    try:
        root = find_app_root(os.getcwd())
        written = new_function(root, template, name, file_, authlevel)
    except (ScaffoldError, SettingsError) as e:
        raise UserError(str(e)) from None
    for p in written:
        click.echo(f"Writing {p.relative_to(root)}")
    click.secho(f"The function \"{name}\" was created from the template \"{resolve_template(template)}\" "
                f"({detect_model(root)} model).", fg="green")


@main.group()
def templates() -> None:
    """Function templates for `durafunc new`."""


@templates.command("list")
def templates_list():
    """List the templates `durafunc new --template` accepts."""
    from .scaffold import list_templates
    click.echo("Python templates (v1 and v2 models):")
    for t in list_templates():
        click.echo(f"  {t}")

# == instance management (func durable ...) ===================================================


class _Target:
    """The task hub the management commands act on, resolved exactly like the host does."""

    def __init__(self, task_hub_name, connection_string_setting, quiet=False):
        import os

        from .settings import SettingsError, expand_connection_string, find_app_root, load_settings
        try:
            root = find_app_root(os.getcwd())
        except SettingsError:
            root = None
        self.root, self.settings = root, None
        try:
            if root is not None:
                s = self.settings = load_settings(root, hub_name=task_hub_name,
                                                  connection_setting=connection_string_setting)
                self.hub_name, self.partitions, self.conn = s.hub_name, s.partition_count, s.connection_string
                self.setting, self.port = s.connection_setting, s.http_port
            else:
                self.setting = connection_string_setting or "AzureWebJobsStorage"
                self.hub_name, self.partitions, self.port = task_hub_name or "TestHubName", 4, 7071
                self.conn = expand_connection_string(os.environ.get(self.setting)) or None
        except SettingsError as e:
            raise UserError(str(e)) from None
        if not self.conn:
            raise UserError(f"No storage connection string found: set {self.setting} in local.settings.json or "
                            "the environment.")
        from .management import recorded_azurite
        self.azurite = recorded_azurite(root, self.conn)
        if self.azurite is not None:           # `durafunc azurite start --blob-port ...` runs here: use it
            self.conn = self.azurite["connection"]
        if not quiet:
            from .settings import parse_connection_string
            where = parse_connection_string(self.conn).get("tableendpoint", "storage")
            via = f" (the Azurite started here, pid {self.azurite['pid']})" if self.azurite else ""
            click.secho(f"Task hub '{self.hub_name}' on {where}{via}", err=True, dim=True)

    def _unavailable_hint(self) -> str:
        from .azurite import local_endpoints
        endpoints = local_endpoints(self.conn)
        if endpoints is None:
            return f"check the connection string in {self.setting}"
        ports = "/".join(str(p) for _, p in endpoints)
        return (f"nothing answers on ports {ports} of this machine: start Azurite with 'durafunc azurite start', "
                "or run 'durafunc start', which starts one")

    def run(self, fn, *, need_hub: bool = True):
        """Run `fn(hub, client)` (a coroutine function) against the hub; one-line errors. `need_hub`: a hub that
        does not exist is an error naming the hubs that do (nothing is created)."""
        import asyncio
        import logging

        from azure.core.exceptions import ResourceNotFoundError

        from .durable.client import ClientError, DurableClient
        from .management import account_label, missing_hub_message, task_hubs
        from .storage.errors import StorageUnavailableError
        from .storage.taskhub import TaskHub

        # the durable layer's warnings (the host's log lines) are said here as the command's one-line error
        logging.getLogger("durafunc").addHandler(logging.NullHandler())
        command = click.get_current_context().info_name

        async def missing(hub) -> UserError:
            try:
                hubs = await task_hubs(hub.account)
            except Exception:  # noqa: BLE001 - the list is a hint only
                hubs = []
            return UserError(missing_hub_message(self.hub_name, account_label(self.conn), hubs, command))

        async def go():
            hub = TaskHub(self.conn, self.hub_name, self.partitions)
            try:
                if need_hub and not await hub.exists():
                    raise await missing(hub)
                try:
                    return await fn(hub, DurableClient(hub))
                except ResourceNotFoundError:      # deleted meanwhile, or a part of it
                    raise await missing(hub) from None
            finally:
                await hub.close()
        try:
            return asyncio.run(go())
        except ClientError as e:
            raise UserError(str(e)) from None
        except StorageUnavailableError as e:
            raise UserError(f"{e} ({self._unavailable_hint()})") from None
        except ValueError as e:
            raise UserError(str(e)) from None


def _common(f):
    f = click.option("--task-hub-name", default=None, help="Task hub to use (default: host.json hubName, "
                                                           "else TestHubName).")(f)
    f = click.option("--connection-string-setting", default=None,
                     help="Setting holding the storage connection string (default: AzureWebJobsStorage).")(f)
    return f


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output (--output json).")(f)


_OUTPUTS = ("table", "json", "tsv")      # display.OUTPUTS (not imported here: the CLI starts without the SDKs)


def _output_options(f):
    """--output table|json|tsv (and --json), --local-time."""
    f = _json_option(f)
    f = click.option("--output", "-o", "output", type=click.Choice(_OUTPUTS, case_sensitive=False), default=None,
                     help="table (default: aligned columns, a fitted table on a terminal), json or tsv.")(f)
    f = click.option("--local-time", is_flag=True, help="Show times in the local time zone (default: UTC).")(f)
    return f


def _output(output, as_json) -> str:
    return "json" if as_json else (output or "table").lower()


def _emit_json(value) -> None:
    import json as _json
    click.echo(_json.dumps(value, indent=2, default=str))


def _dates(created_after, created_before):
    from .management import parse_date
    try:
        return parse_date(created_after, "--created-after"), parse_date(created_before, "--created-before")
    except ValueError as e:
        raise UserError(str(e)) from None


def _statuses(values):
    from .management import parse_statuses
    try:
        return parse_statuses(list(values))
    except ValueError as e:
        raise UserError(f"--runtime-status: {e}") from None


_DATE_HELP = "(ISO 8601, or Core Tools' '12/01/2026 20:10'; UTC if no zone)."


@click.command("get-instances")
@_common
@click.option("--created-after", default=None, help="Only instances created after this time " + _DATE_HELP)
@click.option("--created-before", default=None, help="Only instances created before this time " + _DATE_HELP)
@click.option("--runtime-status", multiple=True, help="Status filter; repeat or space-separate several.")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Number of records retrieved per request.")
@click.option("--continuation-token", default=None, help="Token printed by the previous page.")
@click.option("--show-input", is_flag=True, help="Include the input.")
@_output_options
def get_instances(task_hub_name, connection_string_setting, created_after, created_before, runtime_status, top,
                  continuation_token, show_input, as_json, output, local_time):
    """Retrieve the status of all orchestration instances. Supports paging via 'top' parameter."""
    from . import display
    output = _output(output, as_json)
    t = _Target(task_hub_name, connection_string_setting)
    after, before = _dates(created_after, created_before)
    statuses = _statuses(runtime_status)

    async def go(hub, client):
        return await hub.instances.query(created_from=after, created_to=before, statuses=statuses, top=top,
                                         continuation=continuation_token or None)
    rows, token = t.run(go)
    if output == "json":
        _emit_json({"instances": [display.row_json(r, show_input=show_input) for r in rows],
                    "continuationToken": token})
        return
    grid = display.instances_grid(rows, show_input=show_input, clock=display.Clock(local_time),
                                  iso=output == "tsv")
    if rows or output == "tsv":
        display.emit(grid, output)
    else:
        click.echo("No instances match.")
    click.secho(f"Continuation token for next set of results: '{token or ''}'", fg="green", err=output == "tsv")


@click.command("get-runtime-status")
@_common
@click.option("--id", "instance_id", required=True, help="Specifies the id of an orchestration instance.")
@click.option("--show-input", is_flag=True, help="Include the input.")
@click.option("--show-output", is_flag=True, help="Include the output.")
@_output_options
def get_runtime_status(task_hub_name, connection_string_setting, instance_id, show_input, show_output, as_json,
                       output, local_time):
    """Retrieve the status of the specified orchestration instance."""
    from . import display
    output = _output(output, as_json)
    t = _Target(task_hub_name, connection_string_setting)
    row = t.run(lambda hub, client: client.get(instance_id))
    if row is None:
        raise UserError(f"Could not find an orchestration instance with id '{instance_id}'")
    if output == "json":
        _emit_json(display.row_json(row, show_input=show_input, show_output=show_output))
    else:
        display.emit_status(display.status_grid(row, show_input=show_input, show_output=show_output,
                                                clock=display.Clock(local_time), iso=output == "tsv"), output)


@click.command("get-history")
@_common
@click.option("--id", "instance_id", required=True, help="Specifies the id of an orchestration instance.")
@_output_options
def get_history(task_hub_name, connection_string_setting, instance_id, as_json, output, local_time):
    """Retrieve the history of the specified orchestration instance."""
    from . import display
    output = _output(output, as_json)
    t = _Target(task_hub_name, connection_string_setting)

    async def go(hub, client):
        return await client.get(instance_id), await client.history(instance_id)
    row, events = t.run(go)
    if row is None and not events:
        raise UserError(f"Could not find an orchestration instance with id '{instance_id}'")
    if output == "json":
        _emit_json(display.history_json(events))
    else:
        display.emit(display.history_grid(events, created=row.created_time if row is not None else None,
                                          clock=display.Clock(local_time), iso=output == "tsv"), output)


@click.command("purge-history")
@_common
@click.option("--created-after", default=None, help="Only instances created after this time " + _DATE_HELP)
@click.option("--created-before", default=None, help="Only instances created before this time " + _DATE_HELP)
@click.option("--runtime-status", multiple=True,
              help="Statuses to purge (default: completed, failed, terminated, canceled; name running/pending "
                   "explicitly to purge those).")
@click.option("--dry-run", is_flag=True, help="Show what would be purged without deleting anything.")
@_output_options
def purge_history(task_hub_name, connection_string_setting, created_after, created_before, runtime_status, dry_run,
                  as_json, output, local_time):
    """Purge orchestration instance state, history, and blob storage for orchestrations older than the specified
    threshold time."""
    from rich.progress import Progress

    from . import display
    from .management import select_for_purge
    output = _output(output, as_json)
    t = _Target(task_hub_name, connection_string_setting)
    after, before = _dates(created_after, created_before)
    statuses = _statuses(runtime_status)

    async def go(hub, client):
        rows = await select_for_purge(hub, created_from=after, created_to=before, statuses=statuses)
        if dry_run or not rows:
            return rows, 0, 0
        import asyncio
        sem = asyncio.Semaphore(16)
        with Progress(console=display.console(stderr=True), transient=True,
                      disable=len(rows) < 20 or output != "table") as p:
            task = p.add_task("Purging", total=len(rows))

            async def one(r):
                async with sem:
                    res = await client.purge(r.instance_id, force=True)
                    p.advance(task)
                    return res
            results = await asyncio.gather(*(one(r) for r in rows))
        return rows, sum(r.instances_deleted for r in results), sum(r.rows_deleted for r in results)
    rows, instances, table_rows = t.run(go)
    if output == "json":
        _emit_json({"dryRun": dry_run, "instancesMatched": len(rows), "instancesDeleted": instances,
                    "rowsDeleted": table_rows, "instanceIds": [r.instance_id for r in rows]})
        return
    if dry_run:
        click.echo(f"Dry run: {len(rows)} instance(s) would be purged.", err=output == "tsv")
        if rows or output == "tsv":
            display.emit(display.instances_grid(rows, clock=display.Clock(local_time), iso=output == "tsv"), output)
        return
    span = f"'{created_after or 'the beginning'}' and '{created_before or 'now'}'"
    named = f" and whose runtime status matched one of the following: [{','.join(s.name for s in statuses)}]" \
        if statuses else ""
    click.secho(f"Purged orchestration history for all instances created between {span}{named}", fg="green")
    click.echo(f"Instances deleted: {instances}")
    click.echo(f"Rows deleted: {table_rows}")


@click.command("raise-event")
@_common
@click.option("--id", "instance_id", required=True, help="Specifies the id of an orchestration instance.")
@click.option("--event-name", default=None, help="Name of the event (default: Event_<new guid>).")
@click.option("--event-data", default=None, help="Data of the event: JSON, a plain string, or @file.json.")
def raise_event(task_hub_name, connection_string_setting, instance_id, event_name, event_data):
    """Raise an event to the specified orchestration instance."""
    import uuid

    from .management import read_value
    t = _Target(task_hub_name, connection_string_setting)
    name = event_name or f"Event_{uuid.uuid4().hex}"
    try:
        value = read_value(event_data, "--event-data")
    except ValueError as e:
        raise UserError(str(e)) from None
    t.run(lambda hub, client: client.raise_event(instance_id, name, value))
    click.secho(f"Raised event '{name}' to instance '{instance_id}'.", fg="green")


def _hosts_of(t) -> list[dict]:
    """Records of the running `durafunc start` processes of this app that serve the target hub."""
    from .hostrecord import running_hosts
    return [h for h in running_hosts(t.root) if str(h.get("hub", "")).lower() == t.hub_name.lower()]


def _known_orchestrators(t) -> list[str] | None:
    """The orchestrator functions of the app: from a running host of this hub, else by loading the app when the
    command runs in its folder. None when that cannot be known (no app here, or it does not load)."""
    for h in _hosts_of(t):
        if isinstance(h.get("orchestrators"), list):
            return h["orchestrators"]
    if t.root is None or t.settings is None:
        return None
    import contextlib
    import os

    from .functions import load_app
    from .settings import export_values
    try:
        export_values(t.settings)
        with contextlib.redirect_stdout(sys.stderr):      # what the app prints at import is not our output
            app = load_app(t.root, env=os.environ)
    except Exception:  # noqa: BLE001 - user code; without its list the start goes ahead unchecked
        return None
    if any(e.function is None for e in app.errors):
        return None
    return app.orchestrator_names


@click.command("start-new")
@_common
@click.option("--function-name", required=True, help="Name of the orchestrator function to start.")
@click.option("--id", "instance_id", default=None, help="Instance id (default: a new GUID).")
@click.option("--input", "input_text", default=None, help="Input: JSON, a plain string, or @file.json.")
def start_new(task_hub_name, connection_string_setting, function_name, instance_id, input_text):
    """Start a new instance of the specified orchestrator function."""
    import json as _json
    import uuid

    from .management import live_leases, read_value
    t = _Target(task_hub_name, connection_string_setting)
    try:
        value = read_value(input_text, "--input")
    except ValueError as e:
        raise UserError(str(e)) from None
    known = _known_orchestrators(t)
    if known is not None and not any(n.lower() == function_name.lower() for n in known):
        listing = ("The following are the known orchestrator functions: " + ", ".join(f"'{n}'" for n in known)
                   + ".") if known else "No orchestrator functions are currently registered!"
        raise UserError(f"The function '{function_name}' doesn't exist, is disabled, or is not an orchestrator "
                        f"function. Additional info: {listing}")
    iid = instance_id or uuid.uuid4().hex

    async def go(hub, client):
        # the JSON text of the input, as the SDK's client sends it (the hub must exist: nothing is created)
        await client.start_new(function_name, iid, None if value is None else _json.dumps(value),
                               has_input=value is not None)
        return await client.get(iid), await live_leases(hub)
    row, leases = t.run(go)
    click.secho(f"Started '{function_name}' at {row.created_time:%Y-%m-%d %H:%M:%S} UTC. Instance ID: '{iid}'.",
                fg="green")
    owners = sorted({owner for _, owner in leases})
    host = next((h for h in _hosts_of(t) if h.get("worker") in owners and h.get("url")), None)
    if host is not None:
        click.echo(f"Status: {host['url']}/runtime/webhooks/durabletask/instances/{iid}")
    elif owners:
        click.echo(f"A host runs task hub '{t.hub_name}' (worker {', '.join(owners)}): it runs the instance.")
    else:
        click.echo(f"No host is running task hub '{t.hub_name}' (no live partition lease): the instance stays "
                   "Pending until 'durafunc start' runs this app.")


def _wait_terminal(t, instance_id, timeout, until):
    from .management import host_is_running

    async def go(hub, client):
        if not await host_is_running(hub):
            return None, False
        row = await client.wait_for(instance_id, timeout, until=until)
        return row, True
    return t.run(go)


@click.command("terminate")
@_common
@click.option("--id", "instance_id", required=True, help="Specifies the id of an orchestration instance.")
@click.option("--reason", default=None, help="Reason for terminating the orchestration.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for it to end.")
def terminate(task_hub_name, connection_string_setting, instance_id, reason, timeout):
    """Terminate the specified orchestration instance."""
    from .storage.schema import OrchestrationStatus
    t = _Target(task_hub_name, connection_string_setting)
    t.run(lambda hub, client: client.terminate(instance_id, reason))
    row, host = _wait_terminal(t, instance_id, timeout, {OrchestrationStatus.Terminated})
    if not host:
        click.echo(f"Sent a termination message to instance '{instance_id}'. No host is running task hub "
                   f"'{t.hub_name}' (no live partition lease): it will be terminated when one starts.")
        return
    if row is None or row.runtime_status != OrchestrationStatus.Terminated:
        raise UserError(f"Instance did not terminate within the given timeout ({timeout:g} s).")
    click.secho(f"Successfully terminated '{instance_id}'", fg="green")


def _simple(name, help_text, method, done):
    @click.command(name, help=help_text)
    @_common
    @click.option("--id", "instance_id", required=True, help="Specifies the id of an orchestration instance.")
    @click.option("--reason", default=None, help="Reason given for the operation.")
    def command(task_hub_name, connection_string_setting, instance_id, reason):
        t = _Target(task_hub_name, connection_string_setting)
        t.run(lambda hub, client: getattr(client, method)(instance_id, reason))
        click.secho(done.format(id=instance_id), fg="green")
    return command


rewind = _simple("rewind", "Rewind the specified (failed) orchestration instance.", "rewind",
                 "Rewind message sent to instance '{id}'.")
suspend = _simple("suspend", "Suspend the specified orchestration instance.", "suspend",
                  "Suspend message sent to instance '{id}'.")
resume = _simple("resume", "Resume the specified suspended orchestration instance.", "resume",
                 "Resume message sent to instance '{id}'.")


@click.command("delete-task-hub")
@_common
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@click.option("--force", is_flag=True, help="Delete it even while a running host holds partition leases on it.")
def delete_task_hub(task_hub_name, connection_string_setting, yes, force):
    """Delete all storage artifacts in the durable task hub."""
    from .management import live_leases
    t = _Target(task_hub_name, connection_string_setting)
    leases = t.run(lambda hub, client: live_leases(hub))          # the hub must exist
    if leases and not force:
        owners = sorted({owner for _, owner in leases})
        raise UserError(f"Task hub '{t.hub_name}' is in use: worker {', '.join(repr(o) for o in owners)} holds "
                        f"{len(leases)} of its partition leases (stop that host first, or pass --force).")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"delete-task-hub asks before deleting, but stdin is not a terminal: pass --yes to "
                            f"delete task hub '{t.hub_name}'.")
        click.confirm(f"Delete task hub '{t.hub_name}' with all its instances and history?", abort=True)
    existed = t.run(lambda hub, client: hub.delete(), need_hub=False)
    if not existed:
        raise UserError(f"Task hub '{t.hub_name}' does not exist.")
    click.secho(f"Task hub '{t.hub_name}' successfully deleted.", fg="green")


@click.command("dashboard")
@_common
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=7072, show_default=True,
              help="Local port to serve the dashboard on.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Local IP address to bind to.")
@click.option("--enable-auth", "--enableAuth", "enable_auth", is_flag=True,
              help="Require the master key (masterKey in .durafunc/keys.json), as `durafunc start --enable-auth`.")
def dashboard(task_hub_name, connection_string_setting, port, address, enable_auth):
    """Serve the dashboard of a task hub (instances, history, actions, entities, partitions) without the app."""
    import asyncio
    import os
    from pathlib import Path

    from .http.dashboard.server import DashboardError, serve
    from .management import describe_storage
    from .settings import SettingsError, find_app_root
    sys.stdout.reconfigure(line_buffering=True)
    t = _Target(task_hub_name, connection_string_setting)
    _configure_logging(False)            # the actions taken from the pages are logged, as by the host
    keys = None
    if enable_auth:
        from .http.keys import Keys
        try:
            root = find_app_root(os.getcwd())
        except SettingsError:
            root = Path.cwd()
        try:
            keys = Keys(Path(root) / ".durafunc" / "keys.json")
        except (SettingsError, OSError) as e:
            raise UserError(str(e)) from None
    try:
        asyncio.run(serve(t.conn, t.hub_name, t.partitions, port=port, address=address,
                          storage=describe_storage(t.conn), keys=keys, echo=click.echo))
    except DashboardError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        pass


main.add_command(dashboard)


MANAGEMENT_COMMANDS = [get_instances, get_runtime_status, get_history, purge_history, raise_event, start_new,
                       terminate, rewind, suspend, resume, delete_task_hub]


@main.group()
def durable() -> None:
    """Commands for working with Durable Functions (the same as the top-level ones, as in `func durable`)."""


for _cmd in MANAGEMENT_COMMANDS:
    main.add_command(_cmd)
    durable.add_command(_cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
