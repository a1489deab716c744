"""`durafunc init`, `durafunc new`, `durafunc templates list` (and that what they write runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from durafunc.cli import main
from durafunc.scaffold import TEMPLATE_NAMES, hub_name_for
from durafunc.settings import HUB_NAME_RE
from hostutil import HostProcess


def cli(cwd, *args):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def index(app):
    """Index the app the way `durafunc start` does, in a fresh process: {name: kind}."""
    code = ("import json, os, sys; from pathlib import Path; from durafunc.functions import load_app; "
            "a = load_app(Path('.'), env=os.environ); "
            "print(json.dumps({'f': {n: f.kind for n, f in a.functions.items()}, 'e': [e.reason for e in a.errors]}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=app, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name,hub", [("my-app", "myapp"), ("42things", "t42things"), ("x", "xHub"),
                                      ("---", "DefaultTaskHub"), ("A" * 60, "A" * 45)])
def test_hub_names(name, hub):
    assert hub_name_for(name) == hub and HUB_NAME_RE.match(hub)


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_init_writes_a_runnable_app(tmp_path, model):
    r = cli(tmp_path, "init", "shop-app", "--model", model)
    assert r.exit_code == 0, r.output
    app = tmp_path / "shop-app"
    for f in ("host.json", "local.settings.json", "requirements.txt", ".gitignore", ".funcignore"):
        assert (app / f).is_file(), f
    host = json.loads((app / "host.json").read_text())
    assert host["version"] == "2.0" and host["extensions"]["durableTask"]["hubName"] == "shopapp"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    local = json.loads((app / "local.settings.json").read_text())
    assert local["Values"]["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert ".durafunc/" in (app / ".gitignore").read_text() and "__azurite_db_*" in (app / ".gitignore").read_text()
    req = (app / "requirements.txt").read_text()
    assert "azure-functions\n" in req and "azure-functions-durable" in req
    found = index(app)
    assert found["e"] == []
    expected = {"http_start", "hello_orchestrator", "hello"} if model == "v2" else \
        {"DurableFunctionsHttpStart", "DurableFunctionsOrchestrator", "Hello"}
    assert set(found["f"]) == expected


def test_init_never_overwrites_without_force(tmp_path):
    cli(tmp_path, "init", "app")
    (tmp_path / "app" / "function_app.py").write_text("# mine\n")
    r = cli(tmp_path, "init", "app")
    assert r.exit_code == 0 and "Skipped function_app.py (exists; use --force to overwrite)" in r.output
    assert (tmp_path / "app" / "function_app.py").read_text() == "# mine\n"
    r = cli(tmp_path, "init", "app", "--force")
    assert "Writing function_app.py" in r.output and "DFApp" in (tmp_path / "app" / "function_app.py").read_text()


def test_init_says_what_it_skipped(tmp_path):
    cli(tmp_path, "init", "app")
    r = cli(tmp_path, "init", "app")
    assert r.exit_code == 0 and "Created" not in r.output and "Writing" not in r.output
    assert "Nothing written: all 6 files of the app already exist in" in r.output and "--force" in r.output
    (tmp_path / "app" / "host.json").unlink()
    r = cli(tmp_path, "init", "app")
    assert "Writing host.json" in r.output and "(1 written, 5 kept as they were)" in r.output


def test_queue_trigger_template(tmp_path):
    r = cli(tmp_path, "templates", "list")
    assert "Queue trigger" in r.output
    for model in ("v1", "v2"):
        cli(tmp_path, "init", model, "--model", model)
        r = cli(tmp_path / model, "new", "--template", "Azure Queue Storage trigger", "--name", "orders")
        assert r.exit_code == 0 and 'from the template "Queue trigger"' in r.output, r.output
        found = index(tmp_path / model)
        assert found["e"] == [] and found["f"]["orders"] == "other"


def test_templates_list(tmp_path):
    r = cli(tmp_path, "templates", "list")
    assert r.exit_code == 0 and all(t in r.output for t in TEMPLATE_NAMES)


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_new_every_template(tmp_path, model):
    cli(tmp_path, "init", "app", "--model", model)
    app = tmp_path / "app"
    names = {}
    for i, t in enumerate(TEMPLATE_NAMES):
        name = f"fn{i}"
        r = cli(app, "new", "--template", t.lower(), "--name", name, "--authlevel", "anonymous")
        assert r.exit_code == 0, r.output
        names[name] = t
    if model == "v2":
        compile((app / "function_app.py").read_text(), "function_app.py", "exec")
        r = cli(app, "new", "-t", "Durable Functions activity", "-n", "bp_act", "--file", "extra.py")
        assert r.exit_code == 0, r.output
        assert "app.register_functions(extra_bp)" in (app / "function_app.py").read_text()
    found = index(app)
    assert found["e"] == [], found
    kinds = {"Durable Functions orchestrator": "orchestrator", "Durable Functions activity": "activity",
             "Durable Functions HTTP starter": "http", "Durable Functions entity": "entity", "HTTP trigger": "http",
             "Timer trigger": "other", "Blob trigger": "other", "Queue trigger": "other"}
    for name, t in names.items():
        assert found["f"][name] == kinds[t], (name, t)
    if model == "v2":
        assert found["f"]["bp_act"] == "activity"
    r = cli(app, "new", "-t", "HTTP trigger", "-n", "fn0")
    assert r.exit_code == 1 and "already exists" in r.output
    r = cli(app, "new", "-t", "Cron job", "-n", "x")
    assert r.exit_code == 1 and "unknown template 'Cron job'. Valid templates:" in r.output


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_scaffolded_app_runs(tmp_path, connection_string, model):
    cli(tmp_path, "init", "app", "--model", model)
    app = tmp_path / "app"
    for args in (("Durable Functions orchestrator", "Orch"), ("Durable Functions activity", "Greet"),
                 ("Durable Functions HTTP starter", "Starter")):
        assert cli(app, "new", "-t", args[0], "-n", args[1]).exit_code == 0
    host = HostProcess(app, connection_string, "Sc" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        for path, expected in (("/api/Starter/Orch", None), ("/api/orchestrators/" + (
                "hello_orchestrator" if model == "v2" else "DurableFunctionsOrchestrator"), None)):
            r = host.request("POST", path)
            assert r.status == 202, r.text
            s = host.wait_status(r.json()["statusQueryGetUri"])
            assert s["runtimeStatus"] == "Completed", s
            assert len(s["output"]) == 3 and s["output"][0].startswith("Hello Tokyo")
    finally:
        host.stop()


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_a_scaffolded_blob_trigger_fires(tmp_path, connection_string, model):
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient
    cli(tmp_path, "init", "app", "--model", model)
    app = tmp_path / "app"
    assert cli(app, "new", "-t", "Blob trigger", "-n", "OnBlob").exit_code == 0
    host = HostProcess(app, connection_string, "Sc" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        service = BlobServiceClient.from_connection_string(connection_string)
        try:
            service.create_container("samples-workitems")
        except ResourceExistsError:
            pass
        name = f"scaffold-{uuid.uuid4().hex[:8]}.txt"
        service.get_blob_client("samples-workitems", name).upload_blob(b"12345")
        expected = f"Python blob trigger function processed blob\nName: samples-workitems/{name}\nBlob Size: 5 bytes"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and expected not in host.log():
            time.sleep(0.1)
        assert expected in host.log()
        assert "OnBlob: blobTrigger" in host.log()
    finally:
        host.stop()


def test_the_wheel_carries_every_template(tmp_path):
    """`pip install durafunc` must bring the templates: the top-level templates/ folder goes into the wheel as
    durafunc/templates/, where the installed scaffold finds it."""
    import zipfile
    from pathlib import Path
    from durafunc.scaffold import TEMPLATES
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("durafunc-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"durafunc/templates/{p.relative_to(TEMPLATES).as_posix()}" for p in TEMPLATES.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert {"durafunc/templates/app/host.json", "durafunc/templates/v2/function_app.py",
            "durafunc/templates/v1/Durable Functions orchestrator/function.json"} <= expected
    assert expected <= names, sorted(expected - names)
    assert {"durafunc/functions/triggers/blob.py", "durafunc/functions/bindings.py"} <= names   # every package
