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


def _v1_function(app, name, bindings, code="def main(req):\n    return 'ok'\n"):
    folder = app / name
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps({"bindings": bindings}))
    (folder / "__init__.py").write_text(code)


HTTP_IN = {"name": "req", "type": "httpTrigger", "direction": "in"}
HTTP_OUT = {"name": "$return", "type": "http", "direction": "out"}


def test_bad_port_and_address(tmp_path):
    app = write_app(tmp_path)
    one_line_error(run_start(app, "--port", "99999"), "--port: '99999' is not a port number (0 to 65535")
    one_line_error(run_start(app, "-p", "http"), "--port: 'http' is not a port number")
    one_line_error(run_start(app, "--address", "999.1.1.1"), "--address: '999.1.1.1' is not a valid IP address")
    app = write_app(tmp_path, local={"Values": {"AzureWebJobsStorage": "x"}, "Host": {"LocalHttpAddress": "1.2.3"}})
    one_line_error(run_start(app), "local.settings.json: Host.LocalHttpAddress: '1.2.3' is not a valid IP address")


def test_an_address_of_another_machine(tmp_path, connection_string):
    app = write_app(tmp_path)
    r = run_start(app, "--address", "192.0.2.1", "--port", "0", env={"AzureWebJobsStorage": connection_string})
    one_line_error(r, "--address: cannot listen on '192.0.2.1': it is not an address of this machine")


def test_empty_host_json_is_named(tmp_path):
    app = write_app(tmp_path, host="")
    one_line_error(run_start(app), "host.json: the file is empty")


def test_unknown_function_in_functions_flag(tmp_path, connection_string):
    app = write_app(tmp_path)
    _v1_function(app, "Hello", [HTTP_IN, HTTP_OUT])
    _v1_function(app, "Other", [HTTP_IN, HTTP_OUT])
    r = run_start(app, "--functions", "nosuch", "Hello", env={"AzureWebJobsStorage": connection_string})
    one_line_error(r, "--functions: no function named 'nosuch' in this app (its functions: Hello, Other)")


def test_malformed_route_and_methods_string(tmp_path, connection_string):
    """A route with an unclosed brace names the function and route; "methods": "get" means ["get"]."""
    import uuid
    from hostutil import HostProcess
    app = write_app(tmp_path, local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    _v1_function(app, "Broken", [{**HTTP_IN, "route": "x/{id:int"}, HTTP_OUT])
    _v1_function(app, "GetOnly", [{**HTTP_IN, "methods": "get"}, HTTP_OUT])
    one_line_error(run_start(app, "--strict", env={"AzureWebJobsStorage": connection_string}),
                   "Broken/function.json: function 'Broken': route 'x/{id:int': There is an incomplete parameter")
    host = HostProcess(app, connection_string, "R" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        log = host.log()
        assert "Broken/function.json: function 'Broken': route 'x/{id:int': There is an incomplete parameter in " \
               "the route template." in log and "(function 'Broken' not loaded)" in log
        assert f"GetOnly: [GET] http://localhost:{host.port}/api/GetOnly" in log
        assert host.request("GET", "/api/GetOnly").status == 200
        r = host.request("POST", "/api/GetOnly")
        assert r.status == 405 and r.json()["allowed"] == ["GET"]
        assert host.request("GET", "/api/x/{id:int").status == 404          # not served as a literal route
    finally:
        host.stop()


def test_make_start_takes_overrides():
    """`make start PORT=... HUB=... APP=... START_ARGS=...` reaches `durafunc start`."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(["make", "-n", "start", "PORT=7299", "HUB=MakeHub", "APP=samples/hello",
                        "START_ARGS=--verbose --no-reload"], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = " ".join(r.stdout.replace("\\\n", " ").split())
    assert "cd samples/hello && " in line and "/.venv/bin/durafunc start --port 7299 --task-hub-name MakeHub " \
        "--verbose --no-reload" in line
