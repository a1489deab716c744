"""`durafunc dashboard`: the dashboard of any task hub, without running the app."""
from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from ...durable.client import DurableClient
from ...storage.taskhub import TaskHub
from .routes import PREFIX, Dashboard, HubSource


class DashboardError(Exception):
    """A one-line reason the dashboard cannot be served."""


def build_app(source: HubSource, keys=None) -> web.Application:
    dashboard = Dashboard(source, keys)
    app = web.Application()
    app.add_routes([web.get("/", dashboard.to_index, allow_head=True), *dashboard.routes()])
    return app


async def serve(conn: str, hub_name: str, partitions: int, *, port: int, address: str, storage: str, keys=None,
                echo=print) -> None:
    """Serve until SIGINT/SIGTERM. Checks first that storage answers (DashboardError otherwise)."""
    from ...storage.errors import StorageUnavailableError
    hub = TaskHub(conn, hub_name, partitions)
    runner = None
    try:
        try:
            exists = await hub.exists()
        except StorageUnavailableError as e:
            raise DashboardError(f"{e} (is Azurite running? try 'durafunc azurite start')") from None
        source = HubSource(client=DurableClient(hub), hub_name=hub_name, partition_count=partitions, storage=storage)
        runner = web.AppRunner(build_app(source, keys), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, address, port, reuse_address=True).start()
        except OSError:
            raise DashboardError(f"Port {port} is unavailable. Close the process using that port, or specify "
                                 "another port using --port [-p].") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        shown = "localhost" if address in ("127.0.0.1", "0.0.0.0", "::") else address
        if not exists:
            echo(f"Task hub '{hub_name}' does not exist yet: the dashboard shows it once a host has run it.")
        echo(f"Dashboard of task hub '{hub_name}': http://{shown}:{port}{PREFIX}/" +
             (" (master key required: ?code=<masterKey from .durafunc/keys.json>)" if keys is not None else ""))
        echo("Press Ctrl+C to stop.")
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await hub.close()
