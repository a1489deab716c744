"""`durafunc start` refuses bad configuration with one line naming the file and key (no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys


def run_start(app, *args, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "durafunc", "start", "--no-reload", *args], cwd=app,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def write_app(tmp_path, host=None, local=None):
    (tmp_path / "host.json").write_text(host if isinstance(host, str) else json.dumps(host or {"version": "2.0"}))
    (tmp_path / "local.settings.json").write_text(
        local if isinstance(local, str) else json.dumps(local or {"Values": {"AzureWebJobsStorage": "x"}}))
    return tmp_path


def one_line_error(r, *needles):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_malformed_host_json(tmp_path):
    app = write_app(tmp_path, host='{"version": "2.0",')
    one_line_error(run_start(app), "host.json", "invalid JSON")


def test_malformed_local_settings(tmp_path):
    app = write_app(tmp_path, local='{"Values": ')
    one_line_error(run_start(app), "local.settings.json", "invalid JSON")


def test_bad_hub_name_and_partition_count(tmp_path):
    app = write_app(tmp_path, host={"version": "2.0", "extensions": {"durableTask": {"hubName": "1-bad"}}})
    one_line_error(run_start(app), "host.json", "hubName", "1-bad")
    app = write_app(tmp_path, host={"version": "2.0", "extensions": {"durableTask": {
        "storageProvider": {"partitionCount": 17}}}})
    one_line_error(run_start(app), "partitionCount", "17")


def test_missing_storage_connection(tmp_path):
    app = write_app(tmp_path, local={"Values": {}})
    r = run_start(app, env={"AzureWebJobsStorage": ""})
    one_line_error(r, "AzureWebJobsStorage")


def test_strict_stops_on_a_broken_function(tmp_path):
    app = write_app(tmp_path, local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    (app / "Bad").mkdir()
    (app / "Bad" / "function.json").write_text("{")
    one_line_error(run_start(app, "--strict"), "Bad/function.json", "invalid JSON")
