"""Managed Azurite: start when absent, reuse when present, stop only what it started; the azurite commands."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from durafunc.azurite import (MISSING_MESSAGE, AzuriteConfig, AzuriteError, ManagedAzurite, azurite_connection_string,
                              ensure_azurite, port_answers)
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


async def _tables(conn):
    from azure.data.tables.aio import TableServiceClient
    async with TableServiceClient.from_connection_string(conn) as svc:
        return {t.name async for t in svc.list_tables()}


async def _create_table(conn, name):
    from azure.data.tables.aio import TableServiceClient
    async with TableServiceClient.from_connection_string(conn) as svc:
        await svc.create_table(name)


def test_reuses_an_answering_azurite_and_leaves_it_running(azurite, tmp_path):
    p = azurite.ports
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", p["blob"], p["queue"], p["table"]))
    out = []
    conn, managed = ensure_azurite(settings, echo=out.append)
    assert managed is None and out == []
    assert port_answers("127.0.0.1", p["table"])


def test_starts_when_absent_on_disk_and_data_survives_a_restart(azurite, tmp_path):
    b, q, t = free_ports()
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t))
    out = []
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert managed is not None and all(port_answers("127.0.0.1", x) for x in (b, q, t))
        assert f"blob {b}, queue {q}, table {t}" in out[0] and ".durafunc/azurite" in out[0]
        asyncio.run(_create_table(conn, "Kept"))
    finally:
        managed.stop()
    assert not port_answers("127.0.0.1", t)
    # the other Azurite (the session's) was not touched
    assert port_answers("127.0.0.1", azurite.ports["table"])
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert "Kept" in asyncio.run(_tables(conn))
    finally:
        managed.stop()


def test_in_memory_from_azurite_json(tmp_path):
    b, q, t = free_ports()
    settings = make_app(tmp_path, azurite_connection_string("127.0.0.1", b, q, t), {"inMemoryPersistence": True})
    out = []
    conn, managed = ensure_azurite(settings, echo=out.append)
    try:
        assert "in memory" in out[0] and not (tmp_path / ".durafunc" / "azurite").exists()
    finally:
        managed.stop()


def test_config_and_connection_errors(tmp_path):
    (tmp_path / "azurite.json").write_text(json.dumps({"blobPort": "ten"}))
    with pytest.raises(AzuriteError, match="'blobPort' must be a port number, got 'ten'"):
        AzuriteConfig.load(tmp_path)
    (tmp_path / "azurite.json").write_text(json.dumps({"colour": 1}))
    with pytest.raises(AzuriteError, match="unknown key 'colour'"):
        AzuriteConfig.load(tmp_path)
    settings = make_app(tmp_path, "UseDevelopmentStorage=true")
    settings.connection_string = None
    with pytest.raises(AzuriteError, match="Missing value for AzureWebJobsStorage"):
        ensure_azurite(settings)


def test_missing_binary_message(tmp_path):
    m = ManagedAzurite(AzuriteConfig(), tmp_path, binary="")
    m.binary = None
    with pytest.raises(AzuriteError) as e:
        m.command()
    assert str(e.value) == MISSING_MESSAGE


def run_cli(app, *args):
    env = {**os.environ, "PATH": f"{REPO / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "durafunc", "azurite", *args], cwd=app, capture_output=True,
                          text=True, timeout=60, env=env)


def test_azurite_commands(tmp_path):
    b, q, t = free_ports()
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "azurite.json").write_text(json.dumps({"blobPort": b, "queuePort": q, "tablePort": t}))
    r = run_cli(tmp_path, "start")
    try:
        assert r.returncode == 0, r.stderr
        assert f"blob {b}, queue {q}, table {t}" in r.stdout and port_answers("127.0.0.1", t)
        r = run_cli(tmp_path, "status")
        assert r.returncode == 0 and "Azurite running" in r.stdout and f"table {t} answers" in r.stdout
        r = run_cli(tmp_path, "clean")
        assert r.returncode == 1 and "Azurite is running; stop it first" in r.stderr
    finally:
        r = run_cli(tmp_path, "stop")
    assert r.returncode == 0 and "Azurite stopped." in r.stdout
    assert not port_answers("127.0.0.1", t)
    r = run_cli(tmp_path, "status")
    assert r.returncode == 1 and "No Azurite started by durafunc" in r.stdout
    assert (tmp_path / ".durafunc" / "azurite").exists()
    r = run_cli(tmp_path, "clean")
    assert r.returncode == 0 and not (tmp_path / ".durafunc" / "azurite").exists()
