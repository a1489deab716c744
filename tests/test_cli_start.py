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


def test_bad_queues_batch_size(tmp_path):
    app = write_app(tmp_path, host={"version": "2.0", "extensions": {"queues": {"batchSize": 64}}})
    one_line_error(run_start(app), "host.json", "extensions.queues.batchSize: must be from 1 to 32, got 64")


def test_missing_storage_connection(tmp_path):
    app = write_app(tmp_path, local={"Values": {}})
    r = run_start(app, env={"AzureWebJobsStorage": ""})
    one_line_error(r, "AzureWebJobsStorage")


def test_strict_stops_on_a_broken_function(tmp_path):
    app = write_app(tmp_path, local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    (app / "Bad").mkdir()
    (app / "Bad" / "function.json").write_text("{")
    one_line_error(run_start(app, "--strict"), "Bad/function.json", "invalid JSON")


def test_core_tools_start_options(tmp_path):
    """--useHttps is refused in one line; --timeout bounds the start (storage that never answers)."""
    import socket
    app = write_app(tmp_path)
    one_line_error(run_start(app, "--useHttps"), "--useHttps is not supported")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)           # accepts connections (the kernel does) but never answers a request
    port = silent.getsockname()[1]
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1"
            "OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            + "".join(f"{k}Endpoint=http://127.0.0.1:{port}/devstoreaccount1;" for k in ("Blob", "Queue", "Table")))
    try:
        r = run_start(app, "--timeout", "2", "--port", "0", env={"AzureWebJobsStorage": conn})
    finally:
        silent.close()
    one_line_error(r, "did not start within 2 seconds")


def test_user_log_level_hides_the_apps_info_logs(connection_string):
    import uuid
    from hostutil import HERE, HostProcess
    host = HostProcess(HERE / "hostapps" / "v2app", connection_string, "L" + uuid.uuid4().hex[:12],
                       "--user-log-level", "Warning").wait_ready()
    try:
        r = host.request("POST", "/api/orchestrators/chaining")
        assert r.status == 202
        host.wait_status(r.json()["statusQueryGetUri"])
        log = host.log()
    finally:
        host.stop()
    assert "Executed 'Functions.http_start'" in log          # system logs stay
    assert "Started orchestration with ID" not in log        # the app's logging.info is below Warning
    assert log.splitlines()[0].startswith("durafunc ") and "azure-functions-durable" in log.splitlines()[0]
