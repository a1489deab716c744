"""Settings: host.json + local.settings.json + environment (pure, no Azurite)."""
from __future__ import annotations

import json

import pytest

from durafunc.settings import (DEVELOPMENT_STORAGE, SettingsError, export_values, find_app_root,
                               load_settings)


def app(tmp_path, host=None, local=None):
    if host is not None:
        (tmp_path / "host.json").write_text(host if isinstance(host, str) else json.dumps(host))
    if local is not None:
        (tmp_path / "local.settings.json").write_text(local if isinstance(local, str) else json.dumps(local))
    return tmp_path


def dt(**kw):
    return {"version": "2.0", "extensions": {"durableTask": kw}}


def test_defaults(tmp_path):
    s = load_settings(app(tmp_path, host={"version": "2.0"}), environ={})
    assert s.hub_name == "TestHubName" and s.partition_count == 4 and s.route_prefix == "api"
    assert s.http_port == 7071 and s.connection_setting == "AzureWebJobsStorage" and s.connection_string is None
    assert s.control_queue_batch_size == 32 and s.poison_max_dequeue_count == 5 and s.warnings == []


def test_env_wins_over_local_settings(tmp_path):
    root = app(tmp_path, host={"version": "2.0"},
               local={"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "A": "from-file",
                                 "B": "file-only"}})
    s = load_settings(root, environ={"A": "from-env"})
    assert s.env["A"] == "from-env" and s.env["B"] == "file-only"
    assert s.connection_string == DEVELOPMENT_STORAGE
    environ = {"A": "from-env"}
    skipped = export_values(s, environ)
    assert environ["A"] == "from-env" and environ["B"] == "file-only" and skipped == ["A"]


def test_connection_from_env_and_custom_setting_name(tmp_path):
    root = app(tmp_path, host=dt(storageProvider={"connectionName": "MyStorage"}))
    s = load_settings(root, environ={"MyStorage": "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://10.1.2.3"})
    assert s.connection_setting == "MyStorage"
    assert "BlobEndpoint=http://10.1.2.3:10000/devstoreaccount1" in s.connection_string


def test_hub_name_with_app_setting_and_overrides(tmp_path):
    root = app(tmp_path, host=dt(hubName="%HUB%"), local={"Values": {"HUB": "FromSetting"}})
    assert load_settings(root, environ={}).hub_name == "FromSetting"
    assert load_settings(root, environ={}, hub_name="Flag123").hub_name == "Flag123"
    with pytest.raises(SettingsError, match=r"app setting '%NOPE%' is not defined"):
        load_settings(app(tmp_path, host=dt(hubName="%NOPE%")), environ={})
    assert load_settings(app(tmp_path, host={"version": "2.0"}), environ={"WEBSITE_SITE_NAME": "mysite"}).hub_name \
        == "mysite"


@pytest.mark.parametrize("name", ["ab", "1abc", "has-dash", "x" * 46, ""])
def test_bad_hub_names(tmp_path, name):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host=dt(hubName=name)), environ={})
    msg = str(e.value)
    assert "host.json: extensions.durableTask.hubName" in msg
    assert f"task hub name '{name}' should contain only alphanumeric characters, start with a letter, and have " \
           "length between 3 and 45." in msg


@pytest.mark.parametrize("value,text", [(0, "must be from 1 to 16, got 0"), (17, "must be from 1 to 16, got 17"),
                                        ("x", "expected a whole number from 1 to 16, got 'x'")])
def test_bad_partition_count(tmp_path, value, text):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host=dt(storageProvider={"partitionCount": value})), environ={})
    assert "extensions.durableTask.storageProvider.partitionCount" in str(e.value) and text in str(e.value)


def test_invalid_json_names_file_and_position(tmp_path):
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host='{"version": "2.0",\n  oops}'), environ={})
    assert "host.json: invalid JSON at line 2 column 3" in str(e.value)
    with pytest.raises(SettingsError) as e:
        load_settings(app(tmp_path, host={"version": "2.0"}, local="[1, 2"), environ={})
    assert "local.settings.json: invalid JSON" in str(e.value)
    with pytest.raises(SettingsError, match="expected a JSON object"):
        load_settings(app(tmp_path, host="[1]"), environ={})


def test_unknown_and_misplaced_keys_warn(tmp_path):
    s = load_settings(app(tmp_path, host=dt(partitionCount=8, hubNmae="Typo", storageProvider={"colour": 1})),
                      environ={})
    assert s.partition_count == 4
    assert any("extensions.durableTask.partitionCount belongs under storageProvider" in w for w in s.warnings)
    assert any("unknown key extensions.durableTask.hubNmae" in w for w in s.warnings)
    assert any("unknown key extensions.durableTask.storageProvider.colour" in w for w in s.warnings)


def test_durable_task_values_and_timespans(tmp_path):
    s = load_settings(app(tmp_path, host=dt(maxConcurrentActivityFunctions=3, storageProvider={
        "partitionCount": 2, "controlQueueVisibilityTimeout": "00:00:07", "maxQueuePollingInterval": "00:00:00.5",
        "poisonMessageMaxDequeueCount": 9})), environ={})
    assert (s.partition_count, s.max_concurrent_activities, s.control_queue_visibility,
            s.max_queue_polling_interval, s.poison_max_dequeue_count) == (2, 3, 7.0, 0.5, 9)
    with pytest.raises(SettingsError, match="'soon' is not a time span"):
        load_settings(app(tmp_path, host=dt(storageProvider={"maxQueuePollingInterval": "soon"})), environ={})
    with pytest.raises(SettingsError, match="storageProvider.type 'Netherite' is not supported"):
        load_settings(app(tmp_path, host=dt(storageProvider={"type": "Netherite"})), environ={})


def test_route_prefix_port_and_cors(tmp_path):
    root = app(tmp_path, host={"version": "2.0", "extensions": {"http": {"routePrefix": ""}}},
               local={"Values": {}, "Host": {"LocalHttpPort": 7199, "CORS": "http://a.test,http://b.test",
                                             "CORSCredentials": True}})
    s = load_settings(root, environ={})
    assert s.route_prefix == "" and s.http_port == 7199
    assert s.cors == ["http://a.test", "http://b.test"] and s.cors_credentials
    with pytest.raises(SettingsError, match="Host.LocalHttpPort"):
        load_settings(app(tmp_path, local={"Host": {"LocalHttpPort": "high"}}), environ={})


def test_find_app_root_walks_up(tmp_path):
    app(tmp_path, host={"version": "2.0"})
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_app_root(deep) == tmp_path.resolve()
    with pytest.raises(SettingsError, match="Unable to find project root"):
        find_app_root("/")
