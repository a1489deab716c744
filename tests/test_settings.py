"""Settings: host.json + local.settings.json + environment (pure, no Azurite)."""
from __future__ import annotations

import json
import os

import pytest

from durafunc.settings import (DEVELOPMENT_STORAGE, EXTENDED_SESSIONS_WARNING, SettingsError, export_values,
                               find_app_root, load_settings, sanitize_hub_name)

CPUS = os.cpu_count() or 1


def app(tmp_path, host=None, local=None):
    if host is not None:
        (tmp_path / "host.json").write_text(host if isinstance(host, str) else json.dumps(host))
    if local is not None:
        (tmp_path / "local.settings.json").write_text(local if isinstance(local, str) else json.dumps(local))
    return tmp_path


def dt(**kw):
    return {"version": "2.0", "extensions": {"durableTask": kw}}


def sp(**kw):
    return dt(storageProvider=kw)


# -- defaults and precedence ------------------------------------------------------------------------------

def test_defaults(tmp_path):
    s = load_settings(app(tmp_path, host={"version": "2.0"}), environ={})
    assert s.hub_name == "TestHubName" and s.partition_count == 4 and s.route_prefix == "api"
    assert s.http_port == 7071 and s.http_address == "127.0.0.1" and s.cors == [] and not s.cors_credentials
    assert s.connection_setting == "AzureWebJobsStorage" and s.connection_string is None
    assert s.control_queue_batch_size == 32 and s.poison_max_dequeue_count == 5 and s.warnings == []
    assert s.max_concurrent_activities == s.max_concurrent_orchestrators == 10 * CPUS
    # not set: the engine's local defaults apply; polling is 1 s locally (Azure: 30 s)
    assert s.control_queue_visibility is None and s.work_item_visibility is None
    assert s.max_queue_polling_interval == 1.0 and s.store_inputs_in_history is False and s.functions is None


def test_durable_task_options_carry_durable_functions_defaults(tmp_path):
    s = load_settings(app(tmp_path, host=dt(maxOrchestrationActions=7, storageProvider={"partitionCount": 2})),
                      environ={})
    o = s.durable_task_options
    assert (o["hubName"], o["maxOrchestrationActions"], o["extendedSessionsEnabled"], o["useAppLease"],
            o["versionMatchStrategy"], o["overridableExistingInstanceStates"]) == \
        ("TestHubName", 7, False, True, "CurrentOrOlder", "NonRunningStates")
    p = o["storageProvider"]
    assert (p["type"], p["partitionCount"], p["controlQueueBatchSize"], p["controlQueueBufferThreshold"],
            p["controlQueueVisibilityTimeout"], p["workItemQueueVisibilityTimeout"], p["maxQueuePollingInterval"],
            p["queueClientMessageEncoding"]) == ("AzureStorage", 2, 32, 256, "00:05:00", "00:05:00", "00:00:30", "UTF8")


def test_env_wins_over_local_settings(tmp_path):
    root = app(tmp_path, host={"version": "2.0"},
               local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "A": "from-file",
                                 "B": "file-only", "E": "file-wins-over-empty"}})
    s = load_settings(root, environ={"A": "from-env", "E": ""})
    assert s.env["A"] == "from-env" and s.env["B"] == "file-only" and s.env["E"] == "file-wins-over-empty"
    assert s.warnings == ["Skipping 'A' from local settings as it's already defined in current environment "
                          "variables."]
    environ = {"A": "from-env", "E": ""}
    skipped = export_values(s, environ)
    assert skipped == ["A"]
    assert environ["A"] == "from-env" and environ["B"] == "file-only" and environ["E"] == "file-wins-over-empty"
    assert environ["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"     # exported as written
    assert environ["AzureWebJobsScriptRoot"] == str(tmp_path.resolve())
    assert environ["AZURE_FUNCTIONS_ENVIRONMENT"] == "Development"


def test_connection_from_env_wins_and_is_expanded(tmp_path):
    root = app(tmp_path, local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    assert load_settings(root, environ={}).connection_string == DEVELOPMENT_STORAGE
    assert load_settings(root, environ={"AzureWebJobsStorage": "AccountName=x"}).connection_string == "AccountName=x"


def test_use_development_storage_expansion(tmp_path):
    root = app(tmp_path, local={"Values": {"AzureWebJobsStorage": "usedevelopmentstorage=TRUE"}})
    conn = load_settings(root, environ={}).connection_string
    assert conn == DEVELOPMENT_STORAGE
    assert "AccountName=devstoreaccount1" in conn and "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in conn


def test_connection_from_custom_setting_name_and_proxy(tmp_path):
    root = app(tmp_path, host=sp(connectionName="MyStorage"))
    proxied = "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://10.1.2.3"
    s = load_settings(root, environ={"MyStorage": proxied})
    assert s.connection_setting == "MyStorage"
    assert "BlobEndpoint=http://10.1.2.3:10000/devstoreaccount1" in s.connection_string
    s = load_settings(app(tmp_path, host=sp(connectionStringName="Old")), environ={"Old": "AccountName=o"})
    assert (s.connection_setting, s.connection_string) == ("Old", "AccountName=o")
    s = load_settings(root, environ={"Flag": "AccountName=f"}, connection_setting="Flag")
    assert s.connection_string == "AccountName=f"
    # Values keys are matched case-insensitively, as Core Tools does
    root = app(tmp_path, host={"version": "2.0"}, local={"Values": {"azurewebjobsstorage": "AccountName=c"}})
    s = load_settings(root, environ={})
    assert s.connection_string == "AccountName=c"


def test_local_values_are_strings(tmp_path):
    s = load_settings(app(tmp_path, local={"Values": {"N": 7, "B": True, "Z": None, "S": "x"}}), environ={})
    assert s.values == {"N": "7", "B": "true", "S": "x"}


def test_route_prefix_port_and_cors(tmp_path):
    root = app(tmp_path, host={"version": "2.0", "extensions": {"http": {"routePrefix": "/v1/"}}},
               local={"Values": {}, "Host": {"LocalHttpPort": 7199, "CORS": "http://a.test, http://b.test",
                                             "CORSCredentials": True, "LocalHttpAddress": "0.0.0.0"}})
    s = load_settings(root, environ={})
    assert s.route_prefix == "v1" and s.http_port == 7199 and s.http_address == "0.0.0.0"
    assert s.cors == ["http://a.test", "http://b.test"] and s.cors_credentials
    s = load_settings(app(tmp_path, host={"extensions": {"http": {"routePrefix": ""}}},
                          local={"Host": {"LocalHttpPort": "7300", "CORS": "*"}}), environ={})
    assert s.route_prefix == "" and s.http_port == 7300 and s.cors == ["*"]


# -- task hub name ----------------------------------------------------------------------------------------

def test_hub_name_app_setting_expansion_and_overrides(tmp_path):
    root = app(tmp_path, host=dt(hubName="%HUB%"), local={"Values": {"HUB": "FromSetting"}})
    assert load_settings(root, environ={}).hub_name == "FromSetting"
    assert load_settings(root, environ={"HUB": "FromEnv"}).hub_name == "FromEnv"
    assert load_settings(root, environ={}, hub_name="Flag123").hub_name == "Flag123"
    root = app(tmp_path, host=dt(hubName="Hub%N%x"), local={"Values": {"N": "7"}})
    assert load_settings(root, environ={}).hub_name == "Hub7x"


def test_hub_name_from_site_name_is_sanitized_like_durable_functions(tmp_path):
    root = app(tmp_path, host={"version": "2.0"})
    assert load_settings(root, environ={"WEBSITE_SITE_NAME": "mysite"}).hub_name == "mysite"
    assert load_settings(root, environ={"WEBSITE_SITE_NAME": "my-func-app"}).hub_name == "myfuncapp"
    assert sanitize_hub_name("1st-app") == "t1stapp" and sanitize_hub_name("a-") == "aHub"
    assert sanitize_hub_name("--") == "DefaultTaskHub" and len(sanitize_hub_name("x" * 60)) == 45
    # an explicit hubName is never sanitized
    assert load_settings(app(tmp_path, host=dt(hubName="Explicit")),
                         environ={"WEBSITE_SITE_NAME": "site"}).hub_name == "Explicit"


# -- warnings ---------------------------------------------------------------------------------------------

def test_misplaced_and_unknown_keys_warn_by_name(tmp_path):
    s = load_settings(app(tmp_path, host=dt(partitionCount=8, hubNmae="Typo", traceInputsAndOutputs=True,
                                            storageProvider={"colour": 1})), environ={})
    hp = str(tmp_path.resolve() / "host.json")
    assert s.partition_count == 4 and s.hub_name == "TestHubName"
    assert s.warnings == [
        f"{hp}: extensions.durableTask.partitionCount belongs at extensions.durableTask.storageProvider."
        "partitionCount (ignored here)",
        f"{hp}: unknown key extensions.durableTask.hubNmae (ignored; did you mean 'hubName'?)",
        f"{hp}: extensions.durableTask.traceInputsAndOutputs belongs at extensions.durableTask.tracing."
        "traceInputsAndOutputs (ignored here)",
        f"{hp}: unknown key extensions.durableTask.storageProvider.colour (ignored)",
    ]


def test_other_warnings(tmp_path):
    s = load_settings(app(tmp_path, host={"durableTask": {"hubName": "Old"}}), environ={})
    assert any("'version' should be \"2.0\" (found None)" in w for w in s.warnings)
    assert any("'durableTask' at the root is the Functions 1.x schema" in w for w in s.warnings)
    assert s.hub_name == "TestHubName"
    s = load_settings(app(tmp_path, host=dt(extendedSessionsEnabled=True)), environ={})
    assert any(EXTENDED_SESSIONS_WARNING in w for w in s.warnings)
    assert s.durable_task_options["extendedSessionsEnabled"] is False
    s = load_settings(app(tmp_path, host=sp(controlQueueBatchSize=32, controlQueueBufferThreshold=16)), environ={})
    assert any("ControlQueueBatchSize cannot be larger than ControlQueueBufferThreshold" in w for w in s.warnings)


def test_keys_are_case_insensitive(tmp_path):
    s = load_settings(app(tmp_path, host={"version": "2.0", "Extensions": {"DurableTask": {
        "HubName": "CaseHub", "StorageProvider": {"PartitionCount": 3}}}}), environ={})
    assert (s.hub_name, s.partition_count, s.warnings) == ("CaseHub", 3, [])


def test_durable_task_values_and_timespans(tmp_path):
    s = load_settings(app(tmp_path, host=dt(maxConcurrentActivityFunctions=3, maxConcurrentOrchestratorFunctions="2",
                                            storeInputsInOrchestrationHistory="true", storageProvider={
        "partitionCount": 2, "controlQueueVisibilityTimeout": "00:00:07", "maxQueuePollingInterval": "00:00:00.5",
        "workItemQueueVisibilityTimeout": "1.00:00:00", "poisonMessageMaxDequeueCount": 9,
        "controlQueueBatchSize": 16})), environ={})
    assert (s.partition_count, s.max_concurrent_activities, s.max_concurrent_orchestrators,
            s.control_queue_visibility, s.max_queue_polling_interval, s.work_item_visibility,
            s.poison_max_dequeue_count, s.control_queue_batch_size, s.store_inputs_in_history) == \
        (2, 3, 2, 7.0, 0.5, 86400.0, 9, 16, True)


def test_call_http_polling_interval_from_http_settings(tmp_path):
    assert load_settings(app(tmp_path, host={"version": "2.0"}), environ={}).http_async_sleep_ms == 30000
    s = load_settings(app(tmp_path, host=dt(httpSettings={"DefaultAsyncRequestSleepTimeMilliseconds": "250"})),
                      environ={})
    assert s.http_async_sleep_ms == 250 and s.warnings == []
    s = load_settings(app(tmp_path, host=dt(httpSettings={"useForwardedHost": True})), environ={})
    assert s.http_async_sleep_ms == 30000


def qs(**kw):
    return {"version": "2.0", "extensions": {"queues": kw}}


def test_queues_defaults(tmp_path):
    q = load_settings(app(tmp_path, host={"version": "2.0"}), environ={}).queues
    assert (q.max_polling_interval, q.visibility_timeout, q.batch_size, q.max_dequeue_count, q.batch_threshold,
            q.message_encoding) == (2.0, 0.0, 16, 5, 8, "base64")


def test_queues_values_timespans_and_milliseconds(tmp_path):
    s = load_settings(app(tmp_path, host=qs(maxPollingInterval="00:00:05", visibilityTimeout=1500, batchSize=3,
                                            MaxDequeueCount="2", messageEncoding="None", other=1)), environ={})
    q = s.queues
    assert (q.max_polling_interval, q.visibility_timeout, q.batch_size, q.max_dequeue_count, q.batch_threshold,
            q.message_encoding) == (5.0, 1.5, 3, 2, 1, "none")
    assert s.warnings == [f"{tmp_path.resolve() / 'host.json'}: unknown key extensions.queues.other (ignored)"]
    q = load_settings(app(tmp_path, host=qs(batchSize=1, newBatchThreshold=0, maxPollingInterval=100)),
                      environ={}).queues
    assert (q.batch_size, q.batch_threshold, q.max_polling_interval) == (1, 0, 0.1)


def test_functions_list(tmp_path):
    assert load_settings(app(tmp_path, host={"version": "2.0", "functions": ["a", "b"]}), environ={}).functions \
        == ["a", "b"]


# -- errors: one line naming the file and the key ---------------------------------------------------------

HOST_ERRORS = [
    (dt(hubName="ab"), "extensions.durableTask.hubName: task hub name 'ab' should contain only alphanumeric "
                       "characters, start with a letter, and have length between 3 and 45."),
    (dt(hubName=5), "extensions.durableTask.hubName: must be a string, got 5"),
    (dt(hubName="%NOPE%"), "extensions.durableTask.hubName: app setting '%NOPE%' is not defined"),
    (sp(partitionCount=0), "extensions.durableTask.storageProvider.partitionCount: must be from 1 to 16, got 0"),
    (sp(partitionCount=17), "extensions.durableTask.storageProvider.partitionCount: must be from 1 to 16, got 17"),
    (sp(partitionCount="x"), "extensions.durableTask.storageProvider.partitionCount: expected a whole number from "
                             "1 to 16, got 'x'"),
    (sp(partitionCount=2.5), "extensions.durableTask.storageProvider.partitionCount: expected a whole number "
                             "from 1 to 16, got 2.5"),
    (sp(controlQueueBatchSize=33), "extensions.durableTask.storageProvider.controlQueueBatchSize: must be from 1 "
                                   "to 32, got 33"),
    (sp(controlQueueBufferThreshold=1001), "controlQueueBufferThreshold: must be from 1 to 1000, got 1001"),
    (sp(poisonMessageMaxDequeueCount=0), "storageProvider.poisonMessageMaxDequeueCount: must be from 1 to 1000, "
                                         "got 0"),
    (sp(maxQueuePollingInterval="soon"), "extensions.durableTask.storageProvider.maxQueuePollingInterval: 'soon' "
                                         "is not a time span (expected hh:mm:ss)"),
    (sp(maxQueuePollingInterval=30), "storageProvider.maxQueuePollingInterval: '30' is not a time span"),
    (sp(controlQueueVisibilityTimeout="00:00:00"), "storageProvider.controlQueueVisibilityTimeout: must be greater "
                                                   "than zero, got '00:00:00'"),
    (sp(queueClientMessageEncoding="utf16"), "storageProvider.queueClientMessageEncoding: 'utf16' is not one of "
                                             "UTF8, Base64"),
    (sp(type="Netherite"), "extensions.durableTask.storageProvider.type 'Netherite' is not supported (durafunc "
                           "emulates the AzureStorage provider)"),
    (sp(connectionName=["x"]), "extensions.durableTask.storageProvider.connectionName: must be a string, "
                               "got ['x']"),
    (dt(storageProvider=[]), "extensions.durableTask.storageProvider: must be an object"),
    (dt(maxConcurrentActivityFunctions=0), "extensions.durableTask.maxConcurrentActivityFunctions: must be from 1 "
                                           "to 2147483647, got 0"),
    (dt(extendedSessionsEnabled="yes"), "extensions.durableTask.extendedSessionsEnabled: expected true or false, "
                                        "got 'yes'"),
    (dt(versionMatchStrategy="Loose"), "extensions.durableTask.versionMatchStrategy: 'Loose' is not one of None, "
                                       "Strict, CurrentOrOlder"),
    (dt(tracing=True), "extensions.durableTask.tracing: must be an object"),
    (dt(httpSettings={"defaultAsyncRequestSleepTimeMilliseconds": -1}),
     "extensions.durableTask.httpSettings.defaultAsyncRequestSleepTimeMilliseconds: must be from 0 to 2147483647, "
     "got -1"),
    (qs(batchSize=0), "extensions.queues.batchSize: must be from 1 to 32, got 0"),
    (qs(batchSize=33), "extensions.queues.batchSize: must be from 1 to 32, got 33"),
    (qs(batchSize="many"), "extensions.queues.batchSize: expected a whole number from 1 to 32, got 'many'"),
    (qs(maxDequeueCount=0), "extensions.queues.maxDequeueCount: must be from 1 to 2147483647, got 0"),
    (qs(newBatchThreshold=-1), "extensions.queues.newBatchThreshold: must be from 0 to 2147483647, got -1"),
    (qs(maxPollingInterval=50), "extensions.queues.maxPollingInterval: must be from 100 ms to 7 days, got 50"),
    (qs(maxPollingInterval="soon"), "extensions.queues.maxPollingInterval: 'soon' is not a time span"),
    (qs(visibilityTimeout=True), "extensions.queues.visibilityTimeout: expected a time span (hh:mm:ss) or "
                                 "milliseconds, got True"),
    (qs(visibilityTimeout="8.00:00:00"), "extensions.queues.visibilityTimeout: must be from 0 ms to 7 days, "
                                         "got '8.00:00:00'"),
    (qs(messageEncoding="utf8"), "extensions.queues.messageEncoding: 'utf8' is not one of base64, none"),
    ({"version": "2.0", "extensions": {"queues": 16}}, "extensions.queues must be an object"),
    ({"version": "2.0", "extensions": []}, "'extensions' must be an object"),
    ({"version": "2.0", "extensions": {"http": 1}}, "extensions.http must be an object"),
    ({"version": "2.0", "extensions": {"http": {"routePrefix": 1}}}, "extensions.http.routePrefix must be a string"),
    ({"version": "2.0", "extensions": {"durableTask": "x"}}, "extensions.durableTask must be an object"),
    ({"version": "2.0", "functions": "a"}, "'functions' must be a list of function names"),
    ('{"version": "2.0",\n  oops}', "invalid JSON at line 2 column 3: Expecting property name enclosed in double "
                                    "quotes"),
    ("[1]", "expected a JSON object at the top level"),
]


@pytest.mark.parametrize("host,text", HOST_ERRORS, ids=[t[:40] for _, t in HOST_ERRORS])
def test_host_json_errors(tmp_path, host, text):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host=host), environ={})
    msg = str(e.value)
    assert msg.startswith(str(tmp_path.resolve() / "host.json") + ": ") and text in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["ab", "1abc", "has-dash", "x" * 46, ""])
def test_bad_hub_names(tmp_path, name):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host=dt(hubName=name)), environ={})
    assert str(e.value) == (f"{tmp_path.resolve() / 'host.json'}: extensions.durableTask.hubName: task hub name "
                            f"'{name}' should contain only alphanumeric characters, start with a letter, and have "
                            "length between 3 and 45.")


def test_bad_hub_name_from_app_setting_or_flag(tmp_path):
    with pytest.raises(SettingsError, match=r"hubName: task hub name 'my-hub' should contain"):
        load_settings(app(tmp_path, host=dt(hubName="%H%")), environ={"H": "my-hub"})
    with pytest.raises(SettingsError, match=r"^--task-hub-name: task hub name 'x' should contain"):
        load_settings(app(tmp_path, host={"version": "2.0"}), environ={}, hub_name="x")


LOCAL_ERRORS = [
    ('{"Values": ', "invalid JSON at line 1 column 12: Expecting value"),
    ('{"Values": {"A": 1 "B": 2}}', "invalid JSON at line 1 column 20: Expecting ',' delimiter"),
    ('{\n  // a comment\n  "Values": {"A": 1,,}}', "invalid JSON at line 3 column 22"),
    ({"Values": []}, "'Values' must be an object"),
    ({"Values": {"A": {"b": 1}}}, "Values.A must be a string, not an object"),
    ({"Values": {"A": [1]}}, "Values.A must be a string, not an array"),
    ({"Host": "x"}, "'Host' must be an object"),
    ({"Host": {"LocalHttpPort": "high"}}, "Host.LocalHttpPort: expected a whole number from 1 to 65535, got 'high'"),
    ({"Host": {"LocalHttpPort": 70000}}, "Host.LocalHttpPort: must be from 1 to 65535, got 70000"),
    ({"Host": {"CORS": ["a"]}}, "Host.CORS must be a comma-separated string of origins"),
    ({"Host": {"CORSCredentials": "maybe"}}, "Host.CORSCredentials: expected true or false, got 'maybe'"),
    ({"IsEncrypted": True, "Values": {}}, "IsEncrypted is true; durafunc reads plain values only"),
]


@pytest.mark.parametrize("local,text", LOCAL_ERRORS, ids=[t[:40] for _, t in LOCAL_ERRORS])
def test_local_settings_errors(tmp_path, local, text):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host={"version": "2.0"}, local=local), environ={})
    msg = str(e.value)
    assert msg.startswith(str(tmp_path.resolve() / "local.settings.json") + ": ") and text in msg
    assert "\n" not in msg


def test_empty_local_settings_and_bom_are_fine_an_empty_host_json_is_not(tmp_path):
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "local.settings.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"Values": {"A": "1"}}).encode())
    s = load_settings(tmp_path, environ={})
    assert s.values == {"A": "1"} and s.hub_name == "TestHubName"
    (tmp_path / "local.settings.json").write_text("")
    assert load_settings(tmp_path, environ={}).values == {}
    (tmp_path / "host.json").write_text(" \n")
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path, environ={})
    assert str(e.value) == f"{tmp_path.resolve() / 'host.json'}: the file is empty; it needs at least " \
                           '{"version": "2.0"}'


def test_comments_and_trailing_commas_as_visual_studio_writes_them(tmp_path):
    """Json.NET (the Functions host, Core Tools) reads `//` and `/* */` comments and trailing commas."""
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "local.settings.json").write_text(
        '{\n  "IsEncrypted": false,\n  "Values": {\n    // storage\n    "AzureWebJobsStorage": '
        '"UseDevelopmentStorage=true", /* the worker */ "FUNCTIONS_WORKER_RUNTIME": "python",\n'
        '    "URL": "http://example.com//path", "Q": "a /* b */ c",\n  },\n}\n')
    s = load_settings(tmp_path, environ={})
    assert s.values == {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "FUNCTIONS_WORKER_RUNTIME": "python",
                        "URL": "http://example.com//path", "Q": "a /* b */ c"}
    assert s.warnings == []
    # host.json with comments works too, with a warning: the durable SDK itself reads it with json.loads
    (tmp_path / "host.json").write_text('{\n  // mine\n  "version": "2.0",\n}')
    s = load_settings(tmp_path, environ={})
    assert [w for w in s.warnings if "comments or trailing commas" in w and "json.loads" in w]


def test_find_app_root_walks_up(tmp_path, monkeypatch):
    app(tmp_path, local={"Values": {"HUB": "Walked"}}, host=dt(hubName="%HUB%"))
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_app_root(deep) == tmp_path.resolve()
    monkeypatch.chdir(deep)
    s = load_settings(environ={})
    assert s.app_root == tmp_path.resolve() and s.hub_name == "Walked"
    with pytest.raises(SettingsError, match="Unable to find project root from '/'. Expecting to find one of "
                                            "host.json, local.settings.json in project root."):
        find_app_root("/")
