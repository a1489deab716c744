"""Run one engine in its own process (for crash and scale-out tests).

usage: python engine_proc.py CONNECTION HUB WORKER_ID
Prints 'ready' once started; SIGTERM stops it gracefully, SIGKILL is the crash under test.
"""
import asyncio
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))

import engine_apps  # noqa: E402
from durafunc.durable.engine import Engine, EngineOptions  # noqa: E402
from durafunc.storage.taskhub import TaskHub  # noqa: E402


async def main(conn, hub_name, worker_id):
    logging.basicConfig(level=logging.WARNING, format=f"[{worker_id}] %(levelname)s %(name)s: %(message)s")
    vis = float(os.environ.get("DURAFUNC_TEST_VISIBILITY", "3"))
    hub = TaskHub(conn, hub_name, 4)
    engine = Engine(hub, engine_apps.function_table(),
                    EngineOptions(max_polling_interval=0.2, control_visibility=vis, work_item_visibility=vis,
                                  lease_duration=15, worker_id=worker_id))
    await engine.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await engine.stop(grace=5)
    await hub.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
