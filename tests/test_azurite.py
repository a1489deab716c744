"""Managed Azurite: start when absent, reuse when present, stop only what it started; the azurite commands.

Every Azurite started here listens on free ports (never 10000-10002) and is stopped by the test that started it.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import durafunc.azurite as az
from durafunc.azurite import (MISSING_MESSAGE, NODE_MISSING_MESSAGE, AzuriteConfig, AzuriteError, ManagedAzurite,
                              azurite_connection_string, ensure_azurite, find_binary, port_answers,
                              running_azurites)
from durafunc.cli import main
from durafunc.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def free_ports(n=3):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def make_app(tmp_path, conn, azurite_json=None):
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"AzureWebJobsStorage": conn}}))
    if azurite_json is not None:
        (tmp_path / "azurite.json").write_text(json.dumps(azurite_json))
    return load_settings(tmp_path, environ={})


def tables(conn):
    from azure.data.tables.aio import TableServiceClient

    async def go():
        async with TableServiceClient.from_connection_string(conn) as svc:
            return {t.name async for t in svc.list_tables()}
    return asyncio.run(go())


def create_table(conn, name):
    from azure.data.tables.aio import TableServiceClient

    async def go():
        async with TableServiceClient.from_connection_string(conn) as svc:
            await svc.create_table(name)
    asyncio.run(go())


def gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not az.is_azurite_process(pid):
            return True
        time.sleep(0.05)
    return False


# -- ManagedAzurite ---------------------------------------------------------------------------------------

def test_on_disk_on_port_0_data_survives_a_restart(tmp_path):
    m = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, location="data"), tmp_path)
    conn = m.start()
    try:
        assert set(m.ports) == {"blob", "queue", "table"}
        assert all(port_answers("127.0.0.1", p) for p in m.ports.values())
        record = json.loads(m.record_path.read_text())
        assert record["pid"] == m.pid and record["owner"] == os.getpid() and record["ports"] == m.ports
        assert record["location"] == str(tmp_path / "data")
        create_table(conn, "Kept")
    finally:
        m.stop()
    assert not m.running and not any(port_answers("127.0.0.1", p) for p in m.ports.values())
    assert list((tmp_path / ".durafunc" / "run").iterdir()) == []
    assert (tmp_path / "data" / "__azurite_db_table__.json").exists()
    conn = m.start()
    try:
        assert "Kept" in tables(conn)
    finally:
        m.stop()


def test_in_memory_on_port_0(tmp_path):
    m = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True), tmp_path)
    conn = m.start()
    try:
        assert all(port_answers("127.0.0.1", p) for p in m.ports.values())
        assert f"TableEndpoint=http://127.0.0.1:{m.ports['table']}/devstoreaccount1" in conn
        assert json.loads(m.record_path.read_text())["location"] is None
        assert "--inMemoryPersistence" in m.command() and "--location" not in m.command()
    finally:
        m.stop()
    assert not any(port_answers("127.0.0.1", p) for p in m.ports.values())
    assert not (tmp_path / ".durafunc" / "azurite").exists()


def test_dies_with_the_process_that_started_it(tmp_path):
    """A `durafunc start` killed with SIGKILL leaves no Azurite behind (Linux: PR_SET_PDEATHSIG)."""
    code = ("import sys, pathlib; from durafunc.azurite import *; "
            "m = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True), "
            "pathlib.Path(sys.argv[1])); m.start(); print(m.pid, m.ports['table'], flush=True); "
            "import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        pid, table_port = map(int, parent.stdout.readline().split())
        assert az.is_azurite_process(pid) and port_answers("127.0.0.1", table_port)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert gone(pid), "Azurite outlived the process that started it"
    assert running_azurites(tmp_path) == []      # its stale record is dropped


def test_missing_binary_message(tmp_path, monkeypatch):
    """No Azurite in ./node_modules/.bin, the app folder, durafunc's folder or PATH."""
    monkeypatch.setattr(az, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    b, q, t = free_ports()
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t))
    assert find_binary(tmp_path) is None
    with pytest.raises(AzuriteError) as e:
        ensure_azurite(settings, echo=lambda s: None)
    assert str(e.value) == MISSING_MESSAGE
    assert "'npm install azurite'" in MISSING_MESSAGE and "'durafunc azurite install'" in MISSING_MESSAGE
    r = CliRunner().invoke(main, ["azurite", "start", "--blob-port", str(b), "--queue-port", str(q),
                                  "--table-port", str(t)])
    assert r.exit_code == 1 and r.output == f"Error: {MISSING_MESSAGE}\n"


def test_missing_node_message(tmp_path, monkeypatch):
    binary = find_binary(REPO)
    monkeypatch.setenv("PATH", str(tmp_path))      # `#!/usr/bin/env node` finds no node
    m = ManagedAzurite(AzuriteConfig(blob_port=0, queue_port=0, table_port=0, in_memory=True), tmp_path, binary)
    with pytest.raises(AzuriteError) as e:
        m.start(timeout=10)
    assert str(e.value) == NODE_MISSING_MESSAGE


# -- ensure_azurite (what `durafunc start` does) ----------------------------------------------------------

def test_reuses_an_answering_azurite_and_leaves_it_running(azurite, tmp_path):
    p = azurite.ports
    conn = azurite_connection_string("127.0.0.1", p["blob"], p["queue"], p["table"])
    out = []
    assert ensure_azurite(make_app(tmp_path, conn), echo=out.append) == (conn, None)
    assert out == [] and azurite.running and port_answers("127.0.0.1", p["table"])
    # localhost means this machine too
    conn = conn.replace("127.0.0.1", "localhost")
    assert ensure_azurite(make_app(tmp_path, conn), echo=out.append) == (conn, None) and out == []


def test_starts_when_absent_and_stops_only_that_one(azurite, tmp_path, monkeypatch):
    b, q, t = free_ports()
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t))
    out = []
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert conn == settings.connection_string and managed is not None
        assert managed.ports == {"blob": b, "queue": q, "table": t}
        assert all(port_answers("127.0.0.1", x) for x in (b, q, t))
        assert out == [f"Started Azurite (pid {managed.pid}; blob {b}, queue {q}, table {t}; data in "
                       f"{tmp_path / '.durafunc' / 'azurite'}). It stops when durafunc exits."]
        create_table(conn, "Works")
        # the commands see it, and leave it to the `durafunc start` that owns it
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()
        r = runner.invoke(main, ["azurite", "status"])
        assert r.exit_code == 0 and f"Azurite running (pid {managed.pid}, started by 'durafunc start' " \
                                    f"(pid {os.getpid()})): blob {b}, queue {q}, table {t}" in r.output
        r = runner.invoke(main, ["azurite", "stop"])
        assert r.exit_code == 1 and r.output == (f"Error: the Azurite running here (pid {managed.pid}) belongs to "
                                                 f"'durafunc start' (pid {os.getpid()}) and stops when it exits\n")
        r = runner.invoke(main, ["azurite", "clean"])
        assert r.exit_code == 1 and f"Azurite is running (pid {managed.pid}); stop it first" in r.output
        assert managed.running
    finally:
        managed.stop()
    assert not any(port_answers("127.0.0.1", x) for x in (b, q, t))
    assert azurite.running and port_answers("127.0.0.1", azurite.ports["table"])   # the session's: untouched
    # a second start of the app finds its data again
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert "Works" in tables(conn)
    finally:
        managed.stop()


def test_in_memory_and_port_note_from_azurite_json(tmp_path):
    b, q, t = free_ports()
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t),
                        {"inMemoryPersistence": True, "blobPort": 10000})
    out = []
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert out[0] == f"Note: azurite.json blobPort ignored: AzureWebJobsStorage points at ports {b}/{q}/{t}."
        assert "; in memory). It stops when durafunc exits." in out[1] and managed.ports["blob"] == b
        assert not (tmp_path / ".durafunc" / "azurite").exists()
    finally:
        managed.stop()


def test_some_ports_answering_is_an_error(tmp_path):
    b, q, t = free_ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", q))
        busy.listen()
        settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t))
        with pytest.raises(AzuriteError) as e:
            ensure_azurite(settings)
    assert str(e.value) == (f"AzureWebJobsStorage points at this machine, but only some of its storage ports answer "
                            f"(queue 127.0.0.1:{q} answer; blob 127.0.0.1:{b}, table 127.0.0.1:{t} do not): stop "
                            "whatever listens there, or start a complete Azurite ('durafunc azurite start').")


def test_remote_storage_is_used_as_is_and_missing_connection_is_an_error(tmp_path):
    remote = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    assert ensure_azurite(make_app(tmp_path, remote)) == (remote, None)
    settings = make_app(tmp_path, "")
    assert settings.connection_string is None
    with pytest.raises(AzuriteError) as e:
        ensure_azurite(settings)
    assert str(e.value).startswith("Missing value for AzureWebJobsStorage in local.settings.json. This is required "
                                   "by Durable Functions: set it to 'UseDevelopmentStorage=true'")


CONFIG_ERRORS = [
    ({"blobPort": "ten"}, "'blobPort' must be a port number, got 'ten'"),
    ({"tablePort": 70000}, "'tablePort' must be a port number, got 70000"),
    ({"inMemoryPersistence": "yes"}, "'inMemoryPersistence' must be true or false, got 'yes'"),
    ({"location": ""}, "'location' must be a non-empty string, got ''"),
    ({"args": "--debug"}, "'args' must be a list of strings, got '--debug'"),
    ({"colour": 1}, "unknown key 'colour' (known: host, blobPort, queuePort, tablePort, inMemoryPersistence, "
                    "location, skipApiVersionCheck, loose, silent, args)"),
]


@pytest.mark.parametrize("data,text", CONFIG_ERRORS, ids=[t[:30] for _, t in CONFIG_ERRORS])
def test_azurite_json_errors(tmp_path, data, text):
    (tmp_path / "azurite.json").write_text(json.dumps(data))
    with pytest.raises(AzuriteError) as e:
        AzuriteConfig.load(tmp_path)
    assert str(e.value) == f"{tmp_path / 'azurite.json'}: {text}"


def test_azurite_json_values(tmp_path):
    (tmp_path / "azurite.json").write_text(json.dumps({"blobPort": 1, "location": "/tmp/x", "loose": False,
                                                       "args": ["--debug", "d.log"]}))
    cfg = AzuriteConfig.load(tmp_path)
    assert (cfg.blob_port, cfg.queue_port, cfg.data_dir(tmp_path), cfg.loose, cfg.explicit) == \
        (1, 10001, Path("/tmp/x"), False, {"blobPort", "location", "loose", "args"})
    cmd = ManagedAzurite(cfg, tmp_path, binary="azurite").command()
    assert cmd[-2:] == ["--debug", "d.log"] and "--loose" not in cmd and "--skipApiVersionCheck" in cmd
    assert cmd[cmd.index("--location") + 1] == "/tmp/x" and "--disableTelemetry" in cmd


# -- durafunc azurite start|status|stop|clean -------------------------------------------------------------

def run_cli(app, *args):
    return subprocess.run([sys.executable, "-m", "durafunc", "azurite", *args], cwd=app, capture_output=True,
                          text=True, timeout=60)


def test_azurite_commands(tmp_path):
    b, q, t = free_ports()
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "azurite.json").write_text(json.dumps({"blobPort": b, "queuePort": q}))
    (tmp_path / "sub").mkdir()
    r = run_cli(tmp_path / "sub", "start", "--table-port", str(t))      # works from below the app root
    try:
        assert r.returncode == 0, r.stderr
        pid = int(r.stdout.split("(pid ")[1].split(")")[0])
        assert r.stdout.splitlines()[0] == (f"Azurite started (pid {pid}): blob {b}, queue {q}, table {t}; data in "
                                            f"{tmp_path / '.durafunc' / 'azurite'}")
        assert f"TableEndpoint=http://127.0.0.1:{t}/devstoreaccount1" in r.stdout
        assert port_answers("127.0.0.1", t)        # outlives the command that started it
        create_table(azurite_connection_string("127.0.0.1", b, q, t), "Persisted")
        r = run_cli(tmp_path, "start")
        assert r.returncode == 0 and r.stdout.startswith(f"Azurite already running (pid {pid})")
        r = run_cli(tmp_path, "status")
        assert r.returncode == 0 and r.stdout.splitlines()[:2] == [
            f"Azurite running (pid {pid}, started by 'durafunc azurite start'): blob {b}, queue {q}, table {t}; "
            f"data in {tmp_path / '.durafunc' / 'azurite'}",
            f"Ports: blob {b} answers, queue {q} answers, table {t} answers"]
        r = run_cli(tmp_path, "clean")
        assert r.returncode == 1 and r.stderr == (f"Error: Azurite is running (pid {pid}); stop it first with "
                                                  "'durafunc azurite stop'\n")
    finally:
        r = run_cli(tmp_path, "stop")
    assert r.returncode == 0 and r.stdout == f"Azurite stopped (pid {pid}).\n"
    assert not port_answers("127.0.0.1", t) and not az.is_azurite_process(pid)
    r = run_cli(tmp_path, "stop")
    assert r.returncode == 0 and r.stdout == "No Azurite started by durafunc is running here.\n"
    r = run_cli(tmp_path, "status")
    assert r.returncode == 1 and r.stdout.splitlines() == [
        "No Azurite started by durafunc is running here.",
        f"azurite.json: blob {b}, queue {q}, table 10002; data in {tmp_path / '.durafunc' / 'azurite'}",
        f"Ports: blob {b} closed, queue {q} closed, table 10002 "
        f"{'answers' if port_answers('127.0.0.1', 10002) else 'closed'}"]
    assert (tmp_path / ".durafunc" / "azurite" / "__azurite_db_table__.json").exists()
    r = run_cli(tmp_path, "clean")
    assert r.returncode == 0 and r.stdout.startswith(f"Removed Azurite data in {tmp_path / '.durafunc' / 'azurite'}")
    assert not (tmp_path / ".durafunc" / "azurite").exists()


def test_start_refuses_busy_ports(tmp_path, monkeypatch):
    b, q, t = free_ports()
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", t))
        busy.listen()
        r = CliRunner().invoke(main, ["azurite", "start", "--in-memory", "--blob-port", str(b), "--queue-port",
                                      str(q), "--table-port", str(t)])
    assert r.exit_code == 1 and r.output == (f"Error: something already listens on the Azurite ports (table {t}); "
                                             "stop it or choose other ports (azurite.json, or "
                                             "--blob-port/--queue-port/--table-port)\n")
    r = CliRunner().invoke(main, ["azurite", "start", "--in-memory", "--location", "x"])
    assert r.exit_code == 1 and r.output == ("Error: --in-memory and --location exclude each other (in memory there "
                                             "is no data folder)\n")
    r = CliRunner().invoke(main, ["azurite", "start", "--blob-port", "70000"])
    assert r.exit_code == 2 and "70000 is not in the range 0<=x<=65535" in r.output


def test_stop_never_kills_a_process_that_is_not_its_azurite(tmp_path, monkeypatch):
    """A record whose pid now belongs to something else (pid reuse) is dropped, the process left alone."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        run = tmp_path / ".durafunc" / "run"
        run.mkdir(parents=True)
        (run / f"azurite-{stranger.pid}.json").write_text(json.dumps(
            {"pid": stranger.pid, "owner": None, "ports": {"blob": 1, "queue": 2, "table": 3}, "location": None}))
        monkeypatch.chdir(tmp_path)
        r = CliRunner().invoke(main, ["azurite", "stop"])
        assert r.exit_code == 0 and r.output == "No Azurite started by durafunc is running here.\n"
        assert stranger.poll() is None and list(run.iterdir()) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_clean_deletes_only_azurite_files(tmp_path, monkeypatch):
    """With location "." (the app folder itself) clean must not touch the app."""
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "azurite.json").write_text(json.dumps({"location": "."}))
    (tmp_path / "function_app.py").write_text("# user code\n")
    for name in ("__azurite_db_blob__.json", "__azurite_db_table__.json", "azurite_db_queue.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "__blobstorage__").mkdir()
    (tmp_path / "__blobstorage__" / "extent").write_text("x")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["azurite", "clean"])
    assert r.exit_code == 0 and r.output == f"Removed Azurite data in {tmp_path} (4 items).\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["azurite.json", "function_app.py", "host.json"]
    r = CliRunner().invoke(main, ["azurite", "clean", "--location", "elsewhere"])
    assert r.exit_code == 0 and r.output == f"No Azurite data in {tmp_path / 'elsewhere'}.\n"


def test_install_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["azurite", "install"])
    assert r.exit_code == 1 and r.output == ("Error: npm was not found: install Node.js 18+ with npm "
                                             "(https://nodejs.org), then run 'durafunc azurite install'\n")


def test_commands_report_a_bad_azurite_json_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "azurite.json").write_text('{"blobPort": ')
    monkeypatch.chdir(tmp_path)
    for cmd in ("start", "status", "clean"):
        r = CliRunner().invoke(main, ["azurite", cmd])
        assert r.exit_code == 1, cmd
        assert r.output == f"Error: {tmp_path / 'azurite.json'}: invalid JSON at line 1 column 14: Expecting value\n"
