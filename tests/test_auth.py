"""`--enable-auth`: keys as on Azure for every route family (user functions, the Durable HTTP API, the client
binding's RPC base, /admin, the dashboard), with and without keys; keys.json private (0600)."""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from durafunc.http.durable_api import DurableApi
from durafunc.http.keys import SYSTEM_KEY_NAME, Keys, KeysError
from hostutil import HostProcess

APP = Path(__file__).parent / "hostapps" / "dashapp"
WEBHOOK = "/runtime/webhooks/durabletask"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- keys.json (no host) ---------------------------------------------------------------------------------

def test_new_keys_file_has_every_kind_and_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        keys = Keys(tmp_path / ".durafunc" / "keys.json")
    finally:
        os.umask(old)
    data = json.loads(keys.path.read_text())
    assert set(data) == {"masterKey", "functionKeys", "systemKeys"}
    assert list(data["functionKeys"]) == ["default"] and list(data["systemKeys"]) == [SYSTEM_KEY_NAME]
    assert len({data["masterKey"], data["functionKeys"]["default"], data["systemKeys"][SYSTEM_KEY_NAME]}) == 3
    assert mode_of(keys.path) == 0o600
    again = Keys(keys.path)                                  # stable across starts
    assert (again.master, again.system) == (keys.master, keys.system)


def test_old_keys_file_is_completed_and_made_private(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"masterKey": "m" * 20, "functionKeys": {"default": "f" * 20, "ci": "c" * 20}}))
    os.chmod(path, 0o644)
    keys = Keys(path)
    assert mode_of(path) == 0o600
    assert keys.master == "m" * 20 and keys.function_keys == {"default": "f" * 20, "ci": "c" * 20}
    assert json.loads(path.read_text())["systemKeys"][SYSTEM_KEY_NAME] == keys.system
    # complete already, only too open: the mode is fixed, the content kept
    os.chmod(path, 0o664)
    before = path.read_text()
    Keys(path)
    assert mode_of(path) == 0o600 and path.read_text() == before


def test_azure_shaped_keys_are_read(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"masterKey": {"name": "master", "value": "M" * 20, "encrypted": False},
                                "functionKeys": [{"name": "default", "value": "F" * 20, "encrypted": False}],
                                "systemKeys": [{"name": SYSTEM_KEY_NAME, "value": "S" * 20, "encrypted": False}]}))
    keys = Keys(path)
    assert (keys.master, keys.function_keys["default"], keys.system) == ("M" * 20, "F" * 20, "S" * 20)


@pytest.mark.parametrize("content,message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"masterKey": 42}', "masterKey: must be a non-empty string"),
    ('{"functionKeys": {"default": 7}}', "functionKeys: must map key names to key strings"),
])
def test_bad_keys_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeysError) as e:
        Keys(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)
    assert path.read_text() == content                          # nothing lost


def test_binding_and_management_urls_carry_the_system_key():
    api = DurableApi(None, "MyHub", lambda: [], "http://127.0.0.1:7071")
    plain = json.loads(api.client_binding())
    assert plain["requiredQueryStringParameters"] == "" and "code=" not in plain["managementUrls"]["statusQueryGetUri"]
    api.set_system_key("k/+=ey")
    b = json.loads(api.client_binding())
    assert b["requiredQueryStringParameters"] == "code=k%2F%2B%3Dey"
    assert b["rpcBaseUrl"] == "http://durabletask_extension:k%2F%2B%3Dey@127.0.0.1:7071/durabletask/"
    for name, url in b["managementUrls"].items():
        if name != "id":
            assert url.endswith("taskHub=MyHub&connection=Storage&code=k%2F%2B%3Dey"), (name, url)
    urls = api.check_status("abc", "http://localhost:7071")
    assert urls["statusQueryGetUri"] == ("http://localhost:7071/runtime/webhooks/durabletask/instances/abc"
                                         "?taskHub=MyHub&connection=Storage&code=k%2F%2B%3Dey")


# -- a host with --enable-auth ---------------------------------------------------------------------------

class Raw:
    """HTTP without following redirects (urllib would)."""

    def __init__(self, port: int):
        self.port = port

    def __call__(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), r
        finally:
            c.close()


@pytest.fixture(scope="module")
def authed(connection_string, tmp_path_factory):
    app = tmp_path_factory.mktemp("auth") / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    keys_file = app / ".durafunc" / "keys.json"
    keys_file.parent.mkdir()
    keys_file.write_text(json.dumps({"masterKey": "master-" + uuid.uuid4().hex,
                                     "functionKeys": {"default": "fn-" + uuid.uuid4().hex}}))
    os.chmod(keys_file, 0o644)                    # as durafunc wrote it before: world-readable
    hub = "Au" + uuid.uuid4().hex[:12]
    h = HostProcess(app, connection_string, hub, "--enable-auth").wait_ready()
    h.hub = hub.encode()
    keys = json.loads(keys_file.read_text())
    h.keys = {"master": keys["masterKey"], "function": keys["functionKeys"]["default"],
              "system": keys["systemKeys"][SYSTEM_KEY_NAME]}
    h.keys_file = keys_file
    h.raw = Raw(h.port)
    yield h
    h.stop()


def test_host_keeps_the_master_key_adds_the_system_key_and_makes_the_file_private(authed):
    assert authed.keys["master"].startswith("master-") and authed.keys["function"].startswith("fn-")
    assert authed.keys["system"] not in (authed.keys["master"], authed.keys["function"])
    assert mode_of(authed.keys_file) == 0o600


def test_user_functions_by_auth_level(authed):
    k = authed.keys
    assert authed.request("GET", "/api/secret").status == 401
    assert authed.request("GET", f"/api/secret?code={k['function']}").text == "function level"
    assert authed.request("GET", "/api/secret", headers={"x-functions-key": k["master"]}).status == 200
    assert authed.request("GET", f"/api/secret?code={k['system']}").status == 401    # not a function key
    assert authed.request("GET", f"/api/adminonly?code={k['function']}").status == 401
    assert authed.request("GET", f"/api/adminonly?code={k['master']}").text == "admin level"


def _start(authed, name: str, body=None) -> dict:
    r = authed.request("POST", f"/api/orchestrators/{name}", body)      # anonymous starter: the SDK's client
    assert r.status == 202, r.text
    return r.json()


def test_durable_http_api_needs_the_system_or_master_key(authed):
    k = authed.keys
    done = _start(authed, "parent", 2)
    iid = done["id"]
    authed.wait_status(done["statusQueryGetUri"])
    r = authed.request("GET", f"{WEBHOOK}/instances/{iid}")
    assert r.status == 401 and "durabletask_extension" in r.json()["error"]
    assert authed.request("GET", f"{WEBHOOK}/instances/{iid}?code={k['function']}").status == 401
    assert authed.request("GET", f"{WEBHOOK}/instances/{iid}?code={k['system']}").json()["runtimeStatus"] == \
        "Completed"
    assert authed.request("GET", f"{WEBHOOK}/instances/{iid}",
                          headers={"x-functions-key": k["master"]}).status == 200
    # the purge of issue 11: without a key nothing is deleted
    assert authed.request("DELETE", f"{WEBHOOK}/instances?createdTimeFrom=2000-01-01").status == 401
    assert authed.request("DELETE", f"{WEBHOOK}/instances/{iid}").status == 401
    assert authed.request("GET", f"{WEBHOOK}/instances/{iid}?code={k['system']}").status == 200


def test_rpc_base_needs_a_key_and_takes_it_as_basic_auth(authed):
    k = authed.keys
    prefix = "rpc" + uuid.uuid4().hex[:8]
    r = authed.request("POST", f"/durabletask/orchestrators/approval/{prefix}-none")
    assert r.status == 401
    assert authed.request("GET", f"{WEBHOOK}/instances?instanceIdPrefix={prefix}&code={k['system']}").json() == []

    def basic(user, key):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}
    assert authed.request("POST", f"/durabletask/orchestrators/approval/{prefix}-bad",
                          headers=basic("durabletask_extension", "wrong")).status == 401
    assert authed.request("POST", f"/durabletask/orchestrators/approval/{prefix}-basic",
                          headers=basic("durabletask_extension", k["system"])).status == 202
    assert authed.request("POST", f"/durabletask/orchestrators/approval/{prefix}-code?code={k['system']}").status \
        == 202
    listed = authed.request("GET", f"{WEBHOOK}/instances?instanceIdPrefix={prefix}&code={k['system']}").json()
    assert sorted(i["instanceId"] for i in listed) == [f"{prefix}-basic", f"{prefix}-code"]


def test_the_sdk_client_works_and_its_urls_carry_the_system_key(authed):
    k = authed.keys
    links = _start(authed, "approval", 300)          # start_new through the RPC base, from inside the function
    iid = links["id"]
    for name in ("statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri",
                 "restartPostUri", "suspendPostUri", "resumePostUri"):
        assert f"code={k['system']}" in links[name], (name, links[name])
    assert authed.request("GET", links["statusQueryGetUri"]).status in (200, 202)
    url = links["sendEventPostUri"].replace("{eventName}", "Approval")
    assert authed.request("POST", url, True).status == 202                 # following the URL works
    s = authed.wait_status(links["statusQueryGetUri"])
    assert s["runtimeStatus"] == "Completed" and s["output"] == {"greeting": "Hello reviewer", "approved": True}
    r = authed.request("GET", f"/api/status/{iid}")                          # get_status through the RPC base
    assert r.status == 200 and r.json() == {"runtimeStatus": "Completed", "output": s["output"]}
    other = _start(authed, "waits")
    terminate = other["terminatePostUri"].replace("{text}", "enough")
    assert authed.request("POST", terminate).status == 202
    assert authed.wait_status(other["statusQueryGetUri"])["runtimeStatus"] == "Terminated"


def test_admin_needs_the_master_key(authed):
    k = authed.keys
    assert authed.request("POST", "/admin/functions/greet", {"input": "x"}).status == 401
    assert authed.request("POST", f"/admin/functions/greet?code={k['system']}", {"input": "x"}).status == 401
    assert authed.request("POST", f"/admin/functions/greet?code={k['function']}", {"input": "x"}).status == 401
    assert authed.request("POST", f"/admin/functions/greet?code={k['master']}", {"input": "x"}).status == 202
    assert authed.request("GET", "/admin/host/status").status == 401
    assert authed.request("GET", "/admin/host/status", headers={"x-functions-key": k["master"]}).json()["state"] \
        == "Running"
    assert authed.request("GET", "/admin/host/ping").status == 200                      # as on Azure
    keys = authed.request("GET", f"/admin/host/systemkeys?code={k['master']}").json()["keys"]
    assert keys == [{"name": SYSTEM_KEY_NAME, "value": k["system"]}]
    assert authed.request("GET", f"/admin/host/keys?code={k['system']}").status == 401


def test_dashboard_needs_the_master_key_then_a_cookie(authed):
    k = authed.keys
    status, body, _ = authed.raw("GET", "/_durafunc/")
    assert status == 401 and b"The master key is required" in body and authed.hub not in body
    status, body, _ = authed.raw("GET", f"/_durafunc/?code={k['function']}")
    assert status == 401 and b"not the master key" in body
    status, _, r = authed.raw("GET", f"/_durafunc/?status=Completed&code={k['master']}")
    assert status == 303 and r.getheader("Location") == "/_durafunc/?status=Completed"
    cookie = r.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and k["master"] not in cookie
    session = cookie.split(";")[0]
    status, body, _ = authed.raw("GET", "/_durafunc/?status=Completed", headers={"Cookie": session})
    assert status == 200 and authed.hub in body
    assert authed.raw("GET", "/_durafunc/hub", headers={"x-functions-key": k["master"]})[0] == 200
    assert authed.raw("GET", "/_durafunc/hub", headers={"Cookie": session + "x"})[0] == 401
    assert authed.raw("GET", "/_durafunc/api/counts")[0] == 401
    assert authed.raw("GET", "/_durafunc/static/dashboard.css")[0] == 200      # assets are not secret
    status, _, _ = authed.raw("POST", "/_durafunc/instance/terminate", b"id=x",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401


def test_without_auth_every_family_is_open(connection_string, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    h = HostProcess(app, connection_string, "Na" + uuid.uuid4().hex[:12]).wait_ready()
    try:
        links = _start(h, "parent", 1)
        assert "code=" not in links["statusQueryGetUri"]
        assert h.wait_status(links["statusQueryGetUri"])["runtimeStatus"] == "Completed"
        assert h.request("GET", "/api/secret").status == 200
        assert h.request("GET", "/admin/host/status").status == 200
        assert h.request("GET", f"{WEBHOOK}/instances/{links['id']}").status == 200
        assert h.request("GET", "/_durafunc/").status == 200
        assert not (app / ".durafunc" / "keys.json").exists()
    finally:
        h.stop()


def test_keys_file_that_is_broken_stops_the_host_with_one_line(connection_string, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns(".durafunc", "__pycache__"))
    (app / ".durafunc").mkdir()
    (app / ".durafunc" / "keys.json").write_text("{oops")
    h = HostProcess(app, connection_string, "Kb" + uuid.uuid4().hex[:12], "--enable-auth")
    assert h.proc.wait(60) == 1
    log = h.log()
    assert f"Error: {app / '.durafunc' / 'keys.json'}: invalid JSON" in log and "Traceback" not in log
