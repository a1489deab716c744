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


def _configure_logging(verbose: bool) -> None:
    import logging

    from .functions.logcontext import InvocationFilter
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(InvocationFilter())
    handler.setFormatter(_HostFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger("durafunc.engine").setLevel(logging.WARNING)


@main.command()
@click.option("-p", "--port", type=int, default=None, help="Local port to listen on. Default: 7071")
@click.option("--address", default=None, help="Local IP address to bind to. Default: 127.0.0.1")
@click.option("--cors", default=None, help="A comma separated list of CORS origins with no spaces.")
@click.option("--cors-credentials", is_flag=True, default=None, help="Allow cross-origin authenticated requests.")
@click.option("--functions", multiple=True, help="A function to load (repeat, or space separated).")
@click.option("--strict", is_flag=True, help="Stop if any function fails to load.")
@click.option("--enable-auth", "--enableAuth", "enable_auth", is_flag=True,
              help="Require function keys (kept in .durafunc/keys.json).")
@click.option("--no-reload", is_flag=True, help="Do not reload when files of the app change.")
@click.option("--task-hub-name", default=None, help="Task hub to use instead of host.json's hubName.")
@click.option("--worker-id", default=None, help="Name of this host in the task hub (default: hostname-pid).")
@click.option("--script-root", "--prefix", "script_root", type=click.Path(file_okay=False), default=None,
              help="Path to the root of the function app (default: the current folder).")
@click.option("--verbose", is_flag=True, help="Show engine and host logs.")
def start(port, address, cors, cors_credentials, functions, strict, enable_auth, no_reload, task_hub_name,
          worker_id, script_root, verbose):
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
    _configure_logging(verbose)
    names = [n for item in functions for n in item.split()] or None
    opts = StartOptions(port=port, address=address, cors=cors, cors_credentials=cors_credentials,
                        functions=names, strict=strict, enable_auth=enable_auth, watch=not no_reload,
                        worker_id=worker_id, verbose=verbose, echo=click.echo)
    from .functions import AppLoadError
    try:
        asyncio.run(Host(settings, opts).run())
    except (HostError, AzuriteError, SettingsError, AppLoadError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        pass

# == azurite ==================================================================================

def _azurite_root():
    import os
    from pathlib import Path

    from .settings import SettingsError, find_app_root
    try:
        return find_app_root(os.getcwd())
    except SettingsError:
        return Path.cwd()


@main.group()
def azurite() -> None:
    """Run the Azure Storage emulator (Azurite) on its own: start, stop, status, clean, install."""


@azurite.command("start")
@click.option("--in-memory", is_flag=True, default=None, help="Keep data in memory only.")
@click.option("--location", default=None, help="Data folder (default: .durafunc/azurite of the app).")
@click.option("--blob-port", type=int, default=None)
@click.option("--queue-port", type=int, default=None)
@click.option("--table-port", type=int, default=None)
def azurite_start(in_memory, location, blob_port, queue_port, table_port):
    """Start Azurite in the background with the settings of azurite.json."""
    from . import azurite as az
    root = _azurite_root()
    try:
        cfg = az.AzuriteConfig.load(root)
        for attr, value in (("in_memory", in_memory), ("location", location), ("blob_port", blob_port),
                            ("queue_port", queue_port), ("table_port", table_port)):
            if value is not None:
                setattr(cfg, attr, value)
        data = az.start_detached(root, cfg)
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    ports = data["ports"]
    verb = "already running" if data.get("already") else "started"
    click.echo(f"Azurite {verb} (pid {data['pid']}): blob {ports['blob']}, queue {ports['queue']}, "
               f"table {ports['table']}; " + (f"data in {data['location']}" if data.get("location") else "in memory"))


@azurite.command("stop")
def azurite_stop():
    """Stop the Azurite started with `durafunc azurite start` (only that one)."""
    from . import azurite as az
    if az.stop_detached(_azurite_root()):
        click.echo("Azurite stopped.")
    else:
        click.echo("No Azurite started by durafunc is running here.")


@azurite.command("status")
def azurite_status():
    """Is a durafunc-started Azurite running here, and do the storage ports answer?"""
    from . import azurite as az
    root = _azurite_root()
    data = az.read_pid(root)
    cfg = az.AzuriteConfig.load(root)
    if data:
        ports = data["ports"]
        click.echo(f"Azurite running (pid {data['pid']}): blob {ports['blob']}, queue {ports['queue']}, "
                   f"table {ports['table']}; " + (f"data in {data['location']}" if data.get("location")
                                                  else "in memory"))
    else:
        ports = {"blob": cfg.blob_port, "queue": cfg.queue_port, "table": cfg.table_port}
        click.echo("No Azurite started by durafunc is running here.")
    answering = {k: az.port_answers("127.0.0.1", p) for k, p in ports.items()}
    click.echo("Ports: " + ", ".join(f"{k} {p} {'answers' if answering[k] else 'closed'}" for k, p in ports.items()))
    sys.exit(0 if data else 1)


@azurite.command("clean")
def azurite_clean():
    """Delete Azurite's data folder (refuses while it runs)."""
    from . import azurite as az
    root = _azurite_root()
    try:
        path = az.clean(root, az.AzuriteConfig.load(root))
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    click.echo(f"Removed {path}")


@azurite.command("install")
def azurite_install():
    """Install Azurite from npm into ./node_modules of the app."""
    from . import azurite as az
    try:
        az.install(_azurite_root())
    except az.AzuriteError as e:
        raise UserError(str(e)) from None
    click.echo(f"Installed azurite@{az.AZURITE_VERSION}.")

# == scaffolding: init, new, templates ========================================================

# == instance management (func durable ...) ===================================================


if __name__ == "__main__":
    main(sys.argv[1:])
