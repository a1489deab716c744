"""`durafunc start` reloads the app when its code changes, and keeps serving the old code if the new one breaks."""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from hostutil import HostProcess

HELLO = Path(__file__).resolve().parent.parent / "samples" / "hello"


def wait_log(host, text, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in host.log():
            return
        time.sleep(0.1)
    raise AssertionError(f"'{text}' not in log:\n{host.log()}")


def run_hello(host):
    r = host.request("POST", "/api/orchestrators/hello_orchestrator")
    return host.wait_status(r.json()["statusQueryGetUri"])["output"]


def test_reload_on_change(tmp_path, connection_string):
    app = tmp_path / "hello"
    shutil.copytree(HELLO, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    host = HostProcess(app, connection_string, "Hr" + uuid.uuid4().hex[:10], reload=True).wait_ready()
    try:
        assert run_hello(host)[0] == "Hello Tokyo"
        code = (app / "function_app.py").read_text()
        (app / "function_app.py").write_text(code.replace('f"Hello {city}"', 'f"Bonjour {city}"'))
        wait_log(host, "Reloaded 3 functions")
        assert run_hello(host)[0] == "Bonjour Tokyo"
        (app / "function_app.py").write_text(code + "\nthis is not python\n")
        wait_log(host, "Reload failed, still running the previous code.")
        assert "function_app.py: import failed: NameError" in host.log()
        assert run_hello(host)[0] == "Bonjour Tokyo"   # still serving the last good code
    finally:
        host.stop()


def test_one_reload_per_change_also_for_a_save_by_rename(tmp_path, connection_string):
    """Reading the app's files (the reload's own import) is no change; an editor that saves by renaming a
    temporary file over the .py file is one."""
    app = tmp_path / "hello"
    shutil.copytree(HELLO, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    host = HostProcess(app, connection_string, "Hr" + uuid.uuid4().hex[:10], reload=True).wait_ready()
    try:
        code = (app / "function_app.py").read_text()
        temp = app / ".function_app.py.swp"
        temp.write_text(code.replace('f"Hello {city}"', 'f"Hola {city}"'))
        temp.replace(app / "function_app.py")
        wait_log(host, "Reloaded 3 functions")
        assert run_hello(host)[0] == "Hola Tokyo"
        time.sleep(2)
        assert host.log().count("Reloaded 3 functions") == 1
    finally:
        host.stop()


def test_a_managed_azurite_in_the_app_folder_makes_no_noise(tmp_path):
    """With reload on, a managed Azurite writing its data inside the app folder must not reload the app, nor
    print warnings (watchdog's about folders appearing quickly under a recursive watch come only now and then)."""
    from durafunc.azurite import azurite_connection_string
    from test_azurite import free_ports
    app = tmp_path / "hello"
    shutil.copytree(HELLO, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    conn = azurite_connection_string("127.0.0.1", *free_ports())       # nothing listens: durafunc starts one
    host = HostProcess(app, conn, "Hr" + uuid.uuid4().hex[:10], reload=True).wait_ready()
    try:
        assert run_hello(host)[0] == "Hello Tokyo"
        time.sleep(1)
        log = host.log()
    finally:
        host.stop()
    assert "Started Azurite" in log and (app / ".durafunc" / "azurite").is_dir()
    assert "Warning" not in log and "Reloaded" not in log, log


def test_verbose_shows_no_file_events_and_durafunc_folder_is_not_watched(tmp_path):
    """--verbose with reload on and a managed Azurite in the app folder: no watchdog lines at all; files written
    under .durafunc/ (or a virtual environment) never reload; a new top-level function folder does."""
    from durafunc.azurite import azurite_connection_string
    from test_azurite import free_ports
    app = tmp_path / "hello"
    shutil.copytree(HELLO, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    conn = azurite_connection_string("127.0.0.1", *free_ports())
    host = HostProcess(app, conn, "Hv" + uuid.uuid4().hex[:10], "--verbose", reload=True).wait_ready()
    try:
        assert run_hello(host)[0] == "Hello Tokyo"
        (app / ".durafunc" / "notes.py").write_text("x = 1\n")
        (app / ".venv" / "lib").mkdir(parents=True)
        (app / ".venv" / "lib" / "pkg.py").write_text("y = 2\n")
        time.sleep(1.5)
        assert "Reloaded" not in host.log()
        (app / "extra.py").write_text("z = 3\n")                   # a change to the app: one reload
        wait_log(host, "Reloaded")
        log = host.log()
    finally:
        host.stop()
    assert "DEBUG" in log                                           # --verbose is on
    assert "watchdog" not in log and "in-event" not in log and "InotifyEvent" not in log, log
    assert log.count("Reloaded") == 1
