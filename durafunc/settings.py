"""host.json + local.settings.json + environment -> one Settings object.

Precedence follows Core Tools: an environment variable that is already set (and not empty) wins over a
`local.settings.json` `Values` entry; host.json supplies the durableTask and http options; CLI flags win over both.
Errors are `SettingsError`s whose text is one line naming the file and the key.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .jsonc import loads_jsonc
from .storage.connection import (DEVELOPMENT_STORAGE, expand_connection_string,  # noqa: F401 - re-exported
                                 parse_connection_string)

DEFAULT_HUB_NAME = "TestHubName"
DEFAULT_CONNECTION_SETTING = "AzureWebJobsStorage"
DEFAULT_PORT = 7071
HUB_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_CPUS = os.cpu_count() or 1


class SettingsError(Exception):
    """A configuration problem; str() is one line naming the file and the key."""


# -- the extensions.durableTask schema (Durable Functions 2.x/3.x, shared/docs/core-tools-cli-surface.md 3.2) ----

@dataclass(frozen=True)
class Option:
    """One known host.json key: its Durable Functions default and how its value is checked."""
    default: Any
    kind: str = "str"                 # bool | int | str | timespan | enum | object
    lo: int = 1
    hi: int = 2**31 - 1
    choices: tuple[str, ...] = ()


DURABLE_TASK_OPTIONS: dict[str, Option] = {
    "hubName": Option(DEFAULT_HUB_NAME),
    "storageProvider": Option({}, "object"),
    "defaultVersion": Option(None),
    "versionMatchStrategy": Option("CurrentOrOlder", "enum", choices=("None", "Strict", "CurrentOrOlder")),
    "versionFailureStrategy": Option("Reject", "enum", choices=("Reject", "Fail")),
    "maxConcurrentActivityFunctions": Option(10 * _CPUS, "int"),
    "maxConcurrentOrchestratorFunctions": Option(10 * _CPUS, "int"),
    "maxConcurrentEntityFunctions": Option(10 * _CPUS, "int"),
    "maxEntityOperationBatchSize": Option(5000, "int"),
    "extendedSessionsEnabled": Option(False, "bool"),
    "extendedSessionIdleTimeoutInSeconds": Option(30, "int"),
    "maxOrchestrationActions": Option(100000, "int"),
    "overridableExistingInstanceStates": Option("NonRunningStates", "enum",
                                                choices=("NonRunningStates", "AnyState")),
    "entityMessageReorderWindowInMinutes": Option(30, "int"),
    "rollbackEntityOperationsOnExceptions": Option(True, "bool"),
    "useAppLease": Option(True, "bool"),
    "appLeaseOptions": Option({}, "object"),
    "useGracefulShutdown": Option(False, "bool"),
    "storeInputsInOrchestrationHistory": Option(False, "bool"),
    "localRpcEndpointEnabled": Option(None, "bool"),
    "notificationUrl": Option(None),
    "tracing": Option({"traceInputsAndOutputs": False, "traceReplayEvents": False}, "object"),
    "notifications": Option({}, "object"),
    "httpSettings": Option({"defaultAsyncRequestSleepTimeMilliseconds": 30000, "useForwardedHost": False}, "object"),
    "customLifeCycleNotificationHelperType": Option(None),
    "webhookUriProviderOverride": Option({}, "object"),
}

STORAGE_PROVIDER_OPTIONS: dict[str, Option] = {
    "type": Option("AzureStorage"),
    "connectionName": Option(None),
    "connectionStringName": Option(None),
    "partitionCount": Option(4, "int", 1, 16),
    "controlQueueBatchSize": Option(32, "int", 1, 32),
    "controlQueueBufferThreshold": Option(256, "int", 1, 1000),
    "controlQueueVisibilityTimeout": Option("00:05:00", "timespan"),
    "workItemQueueVisibilityTimeout": Option("00:05:00", "timespan"),
    "maxQueuePollingInterval": Option("00:00:30", "timespan"),
    "fetchLargeMessagesAutomatically": Option(True, "bool"),
    "trackingStoreConnectionName": Option(None),
    "trackingStoreConnectionStringName": Option(None),
    "trackingStoreNamePrefix": Option("DurableTask"),
    "useLegacyPartitionManagement": Option(False, "bool"),
    "useTablePartitionManagement": Option(True, "bool"),
    "partitionTableOperationTimeout": Option("00:00:02", "timespan"),
    "queueClientMessageEncoding": Option("UTF8", "enum", choices=("UTF8", "Base64")),
    "allowReplayingTerminalInstances": Option(False, "bool"),
    "useInstanceTableEtag": Option(False, "bool"),
    # durafunc's own: dequeues of a failing message before it moves to <queue>-poison
    "poisonMessageMaxDequeueCount": Option(5, "int", 1, 1000),
}

# extensions.queues (the Storage Queues extension 5.x; shared/docs/core-tools-cli-surface.md 3.1). Durations are
# .NET TimeSpan strings or milliseconds; lo/hi of a "duration" are milliseconds.
QUEUES_OPTIONS: dict[str, Option] = {
    "maxPollingInterval": Option("00:00:02", "duration", 100, 7 * 86400 * 1000),   # 2 s locally (Azure: 1 min)
    "visibilityTimeout": Option("00:00:00", "duration", 0, 7 * 86400 * 1000),
    "batchSize": Option(16, "int", 1, 32),
    "maxDequeueCount": Option(5, "int", 1),
    "newBatchThreshold": Option(None, "int", 0),                                 # None: batchSize / 2
    "messageEncoding": Option("base64", "enum", choices=("base64", "none")),
}


@dataclass
class QueuesOptions:
    """host.json extensions.queues as durafunc uses it (seconds for durations)."""
    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_dequeue_count: int = 5
    new_batch_threshold: int | None = None
    message_encoding: str = "base64"

    @property
    def batch_threshold(self) -> int:
        """Fetch a new batch when this many messages or fewer are still running (Azure: batchSize / 2)."""
        return self.batch_size // 2 if self.new_batch_threshold is None else self.new_batch_threshold


# Keys people put at the extensions.durableTask level that belong elsewhere (2.x storage keys, 1.x flat keys).
_MOVED_1X = {
    "azureStorageConnectionStringName": "storageProvider.connectionName",
    "traceInputsAndOutputs": "tracing.traceInputsAndOutputs",
    "logReplayEvents": "tracing.traceReplayEvents",
    "eventGridTopicEndpoint": "notifications.eventGrid.topicEndpoint",
    "eventGridKeySettingName": "notifications.eventGrid.keySettingName",
    "eventGridPublishRetryCount": "notifications.eventGrid.publishRetryCount",
    "eventGridPublishRetryInterval": "notifications.eventGrid.publishRetryInterval",
    "eventGridPublishEventTypes": "notifications.eventGrid.publishEventTypes",
    "defaultAsyncRequestSleepTimeMilliseconds": "httpSettings.defaultAsyncRequestSleepTimeMilliseconds",
    "useForwardedHost": "httpSettings.useForwardedHost",
}
MISPLACED_KEYS: dict[str, str] = {
    **{k.lower(): f"storageProvider.{k}" for k in STORAGE_PROVIDER_OPTIONS if k != "type"},
    **{k.lower(): v for k, v in _MOVED_1X.items()},
}
# kept for callers that only need the names (lower case)
DURABLE_TASK_KEYS = {k.lower() for k in DURABLE_TASK_OPTIONS}
STORAGE_PROVIDER_KEYS = {k.lower() for k in STORAGE_PROVIDER_OPTIONS}

EXTENDED_SESSIONS_WARNING = (
    "Durable Functions does not work with extendedSessions = true for non-.NET languages. "
    "This value is being set to false instead.")


@dataclass
class Settings:
    app_root: Path
    host_json: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)          # local.settings.json Values (as strings)
    local_host: dict = field(default_factory=dict)      # local.settings.json Host
    env: dict = field(default_factory=dict)             # merged view: Values overlaid by non-empty os.environ
    hub_name: str = DEFAULT_HUB_NAME
    connection_setting: str = DEFAULT_CONNECTION_SETTING
    connection_string: str | None = None
    partition_count: int = 4
    route_prefix: str = "api"
    http_port: int = DEFAULT_PORT
    http_address: str = "127.0.0.1"
    cors: list[str] = field(default_factory=list)
    cors_credentials: bool = False
    functions: list[str] | None = None
    max_concurrent_activities: int = 10 * _CPUS
    max_concurrent_orchestrators: int = 10 * _CPUS
    control_queue_batch_size: int = 32
    # None: not set in host.json, the engine's local defaults apply (shorter than Azure's 5 minutes)
    control_queue_visibility: float | None = None
    work_item_visibility: float | None = None
    max_queue_polling_interval: float = 1.0   # local default; Azure's is 30 s
    poison_max_dequeue_count: int = 5
    store_inputs_in_history: bool = False
    # durafunc keeps running orchestrations loaded between episodes (its own extended sessions, on the host side
    # of the protocol: the Python worker's extendedSessionsEnabled stays false); idle ones are dropped after this
    extended_session_idle_seconds: float = 30.0
    http_async_sleep_ms: int = 30000   # httpSettings.defaultAsyncRequestSleepTimeMilliseconds (call_http polling)
    # every known extensions.durableTask key (storageProvider nested): host.json's value, else Durable
    # Functions' default -- what Azure would run with. The typed fields above are what durafunc uses.
    durable_task_options: dict = field(default_factory=dict)
    queues: QueuesOptions = field(default_factory=QueuesOptions)   # extensions.queues
    skipped_values: list[str] = field(default_factory=list)   # Values names an environment variable overrode
    warnings: list[str] = field(default_factory=list)


def _ci_get(d: Mapping | None, key: str, default: Any = None) -> Any:
    """Case-insensitive dict lookup (host.json keys are matched case-insensitively)."""
    if not isinstance(d, Mapping):
        return default
    if key in d:
        return d[key]
    low = key.lower()
    for k, v in d.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def _or_empty(value: Any) -> Any:
    """A missing (null) section reads as {}; anything else is kept, to be type-checked."""
    return {} if value is None else value


# -- files ------------------------------------------------------------------------------------------------

def find_app_root(start: Path | str | None = None) -> Path:
    """Walk up from `start` to the first folder holding host.json or local.settings.json."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "host.json").is_file() or (folder / "local.settings.json").is_file():
            return folder
    raise SettingsError(
        f"Unable to find project root from '{here}'. Expecting to find one of host.json, "
        "local.settings.json in project root."
    )


def read_json_file(path: Path, *, allow_empty: bool = True) -> dict:
    """A JSON object from a file (BOM, `//` and `/* */` comments and trailing commas allowed, as the Functions
    host reads it; an empty file = {} unless `allow_empty` is False); one-line SettingsError otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SettingsError(f"{path}: cannot read file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: invalid JSON: the file is not UTF-8 text") from None
    if not text.strip() and not allow_empty:
        raise SettingsError(f"{path}: the file is empty; it needs at least {{\"version\": \"2.0\"}}")
    try:
        data = loads_jsonc(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object at the top level")
    return data


def _plain_json(path: Path) -> bool:
    """Does the file parse as strict JSON (no comments, no trailing commas)?"""
    try:
        json.loads(path.read_text(encoding="utf-8-sig"))
        return True
    except (OSError, ValueError):
        return False


# -- connection strings -----------------------------------------------------------------------------------

# -- value checks -----------------------------------------------------------------------------------------

def _expand_app_settings(value: str, env: Mapping[str, str], where: str) -> str:
    """`%Name%` -> the app setting's value (as the Functions name resolver does)."""
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in env:
            raise SettingsError(f"{where}: app setting '%{name}%' is not defined")
        return env[name]

    return re.sub(r"%([^%]+)%", repl, value)


def _parse_timespan(value: Any, where: str) -> float:
    """A .NET TimeSpan string ('hh:mm', 'hh:mm:ss[.fff]', 'd.hh:mm:ss[.fff]') -> seconds."""
    m = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?", str(value).strip()) \
        if isinstance(value, str) else None
    if not m:
        raise SettingsError(f"{where}: '{value}' is not a time span (expected hh:mm:ss)")
    days, h, mi, s = m.groups()
    return int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s or 0)


def _duration(value: Any, lo_ms: int, hi_ms: int, where: str) -> float:
    """A .NET TimeSpan string or a number of milliseconds -> seconds, within lo_ms..hi_ms."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingsError(f"{where}: expected a time span (hh:mm:ss) or milliseconds, got {value!r}")
    seconds = value / 1000 if isinstance(value, (int, float)) else _parse_timespan(value, where)
    if not lo_ms / 1000 <= seconds <= hi_ms / 1000:
        raise SettingsError(f"{where}: must be from {_ms_text(lo_ms)} to {_ms_text(hi_ms)}, got {value!r}")
    return seconds


def _ms_text(ms: int) -> str:
    if ms and ms % 86400000 == 0:
        return f"{ms // 86400000} days"
    return f"{ms} ms" if ms < 1000 or ms % 1000 else f"{ms // 1000} s"


def _int_in_range(value: Any, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError(f"{where}: expected a whole number from {lo} to {hi}, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise SettingsError(f"{where}: expected a whole number from {lo} to {hi}, got {value!r}") from None
    if not lo <= n <= hi:
        raise SettingsError(f"{where}: must be from {lo} to {hi}, got {n}")
    return n


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SettingsError(f"{where}: expected true or false, got {value!r}")


def _check_option(opt: Option, value: Any, where: str) -> Any:
    """host.json value -> checked value (time spans stay strings here; see _parse_timespan)."""
    if opt.kind == "bool":
        return _bool(value, where)
    if opt.kind == "int":
        return _int_in_range(value, opt.lo, opt.hi, where)
    if opt.kind == "duration":
        return _duration(value, opt.lo, opt.hi, where)
    if opt.kind == "timespan":
        if _parse_timespan(value, where) <= 0:
            raise SettingsError(f"{where}: must be greater than zero, got '{value}'")
        return value
    if opt.kind == "enum":
        match = next((c for c in opt.choices if isinstance(value, str) and c.lower() == value.lower()), None)
        if match is None:
            raise SettingsError(f"{where}: '{value}' is not one of {', '.join(opt.choices)}")
        return match
    if opt.kind == "object":
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: must be an object")
        return value
    if value is not None and not isinstance(value, str):
        raise SettingsError(f"{where}: must be a string, got {value!r}")
    return value


def _read_section(section: dict, schema: dict[str, Option], path: str, where: str,
                  warnings: list[str], misplaced: Mapping[str, str] = {}) -> dict:
    """Check one host.json object against its schema: {canonical key: value} for the known keys present;
    misplaced and unknown keys become warnings naming the key."""
    by_lower = {k.lower(): k for k in schema}
    out = {}
    for key, value in section.items():
        canonical = by_lower.get(key.lower())
        if canonical is not None:
            out[canonical] = _check_option(schema[canonical], value, f"{path}: {where}.{key}")
        elif key.lower() in misplaced:
            warnings.append(f"{path}: {where}.{key} belongs at extensions.durableTask.{misplaced[key.lower()]} "
                            "(ignored here)")
        else:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.8)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            warnings.append(f"{path}: unknown key {where}.{key} (ignored{hint})")
    return out


def sanitize_hub_name(name: str) -> str:
    """What Durable Functions makes of a default hub name (WEBSITE_SITE_NAME) that is not a valid one."""
    chars = [c for c in name if c.isascii() and c.isalnum()]
    if not chars:
        return "DefaultTaskHub"
    if chars[0].isdigit():
        chars.insert(0, "t")
    out = "".join(chars[:45])
    return out + "Hub" if len(out) < 3 else out


# -- loading ----------------------------------------------------------------------------------------------

def _read_local_settings(path: Path, s: Settings) -> None:
    local = read_json_file(path)
    if _ci_get(local, "IsEncrypted") is True:
        raise SettingsError(f"{path}: IsEncrypted is true; durafunc reads plain values only "
                            "(decrypt them with 'func settings decrypt' and set IsEncrypted to false)")
    values = _or_empty(local.get("Values"))
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    for k, v in values.items():
        if not k or v is None:
            continue
        if isinstance(v, (dict, list)):
            raise SettingsError(f"{path}: Values.{k} must be a string, not an "
                                f"{'object' if isinstance(v, dict) else 'array'}")
        s.values[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    s.local_host = _or_empty(local.get("Host"))
    if not isinstance(s.local_host, dict):
        raise SettingsError(f"{path}: 'Host' must be an object")


def _merge_env(values: Mapping[str, str], environ: Mapping[str, str]) -> tuple[dict, list[str]]:
    """Values overlaid by the environment; an empty environment variable does not count (Core Tools)."""
    merged = dict(values)
    skipped = []
    for k, v in environ.items():
        if v == "" and k in values:
            continue
        if k in values:
            skipped.append(k)
        merged[k] = v
    return merged, skipped


def _resolve_hub_name(s: Settings, dt: dict, hp: str, cli_value: str | None) -> str:
    """CLI flag > host.json hubName (%AppSetting% expanded) > WEBSITE_SITE_NAME (sanitized) > TestHubName."""
    if cli_value is not None:
        raw, where = cli_value, "--task-hub-name"
    elif _ci_get(dt, "hubName") is not None:
        raw, where = _ci_get(dt, "hubName"), f"{hp}: extensions.durableTask.hubName"
    else:
        site = s.env.get("WEBSITE_SITE_NAME")
        return sanitize_hub_name(site) if site else DEFAULT_HUB_NAME
    if not isinstance(raw, str):
        raise SettingsError(f"{where}: must be a string, got {raw!r}")
    hub = _expand_app_settings(raw, s.env, where)
    if not HUB_NAME_RE.match(hub):
        raise SettingsError(f"{where}: task hub name '{hub}' should contain only alphanumeric characters, "
                            "start with a letter, and have length between 3 and 45.")
    return hub


def _apply_durable_task(s: Settings, dt_raw: dict, hp: str) -> dict:
    """Check extensions.durableTask, fill the typed fields durafunc uses; return the effective options."""
    dt = _read_section(dt_raw, DURABLE_TASK_OPTIONS, hp, "extensions.durableTask", s.warnings, MISPLACED_KEYS)
    sp = _read_section(dt.get("storageProvider", {}), STORAGE_PROVIDER_OPTIONS, hp,
                       "extensions.durableTask.storageProvider", s.warnings)
    ptype = sp.get("type", "AzureStorage")
    if str(ptype).lower() not in ("azurestorage", "azure_storage"):
        raise SettingsError(f"{hp}: extensions.durableTask.storageProvider.type '{ptype}' is not supported "
                            "(durafunc emulates the AzureStorage provider)")

    s.partition_count = sp.get("partitionCount", s.partition_count)
    s.control_queue_batch_size = sp.get("controlQueueBatchSize", s.control_queue_batch_size)
    s.poison_max_dequeue_count = sp.get("poisonMessageMaxDequeueCount", s.poison_max_dequeue_count)
    for key, attr in (("controlQueueVisibilityTimeout", "control_queue_visibility"),
                      ("workItemQueueVisibilityTimeout", "work_item_visibility"),
                      ("maxQueuePollingInterval", "max_queue_polling_interval")):
        if key in sp:
            setattr(s, attr, _parse_timespan(sp[key], key))
    s.max_concurrent_activities = dt.get("maxConcurrentActivityFunctions", s.max_concurrent_activities)
    s.max_concurrent_orchestrators = dt.get("maxConcurrentOrchestratorFunctions", s.max_concurrent_orchestrators)
    s.store_inputs_in_history = dt.get("storeInputsInOrchestrationHistory", False)
    s.extended_session_idle_seconds = dt.get("extendedSessionIdleTimeoutInSeconds", s.extended_session_idle_seconds)
    sleep = _ci_get(dt.get("httpSettings"), "defaultAsyncRequestSleepTimeMilliseconds")
    if sleep is not None:
        s.http_async_sleep_ms = _int_in_range(sleep, 0, 2**31 - 1, f"{hp}: extensions.durableTask.httpSettings."
                                                                    "defaultAsyncRequestSleepTimeMilliseconds")

    threshold = sp.get("controlQueueBufferThreshold", 256)
    if s.control_queue_batch_size > threshold:
        s.warnings.append(f"{hp}: ControlQueueBatchSize cannot be larger than ControlQueueBufferThreshold. "
                          "Please adjust these values in your `host.json` settings for predictable performance")
    if dt.get("extendedSessionsEnabled") and s.env.get("FUNCTIONS_WORKER_RUNTIME", "python").lower() != "dotnet":
        s.warnings.append(f"{hp}: {EXTENDED_SESSIONS_WARNING}")
        dt["extendedSessionsEnabled"] = False

    effective = {k: o.default for k, o in DURABLE_TASK_OPTIONS.items()}
    effective.update(dt)
    effective["storageProvider"] = {**{k: o.default for k, o in STORAGE_PROVIDER_OPTIONS.items()}, **sp}
    return effective


def _read_queues(section: dict, hp: str, warnings: list[str]) -> QueuesOptions:
    """extensions.queues -> QueuesOptions (unknown keys are warnings, bad values one-line errors)."""
    q = _read_section(section, QUEUES_OPTIONS, hp, "extensions.queues", warnings)
    defaults = QueuesOptions()
    return QueuesOptions(
        max_polling_interval=q.get("maxPollingInterval", defaults.max_polling_interval),
        visibility_timeout=q.get("visibilityTimeout", defaults.visibility_timeout),
        batch_size=q.get("batchSize", defaults.batch_size),
        max_dequeue_count=q.get("maxDequeueCount", defaults.max_dequeue_count),
        new_batch_threshold=q.get("newBatchThreshold"),
        message_encoding=q.get("messageEncoding", defaults.message_encoding))


def load_settings(
    app_root: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    hub_name: str | None = None,
    connection_setting: str | None = None,
) -> Settings:
    """Read the app's configuration. `hub_name`/`connection_setting` override host.json (CLI flags)."""
    root = Path(app_root).resolve() if app_root else find_app_root()
    environ = dict(os.environ if environ is None else environ)
    s = Settings(app_root=root)

    host_path = root / "host.json"
    if host_path.is_file():
        s.host_json = read_json_file(host_path, allow_empty=False)
        if not _plain_json(host_path):
            s.warnings.append(f"{host_path}: comments or trailing commas: the Functions host accepts them, but "
                              "azure-functions-durable reads host.json with json.loads when it is imported, and "
                              "that fails (function_app.py: import failed: JSONDecodeError)")
    local_path = root / "local.settings.json"
    if local_path.is_file():
        _read_local_settings(local_path, s)
    s.env, s.skipped_values = _merge_env(s.values, environ)
    for k in s.skipped_values:
        if s.values[k] != environ[k]:
            s.warnings.append(f"Skipping '{k}' from local settings as it's already defined in current "
                              "environment variables.")
    hp = str(host_path)

    version = s.host_json.get("version")
    if s.host_json and version != "2.0":
        s.warnings.append(f"{hp}: 'version' should be \"2.0\" (found {version!r}); reading it as 2.0 anyway")

    extensions = _or_empty(_ci_get(s.host_json, "extensions"))
    if not isinstance(extensions, dict):
        raise SettingsError(f"{hp}: 'extensions' must be an object")
    http = _or_empty(_ci_get(extensions, "http"))
    if not isinstance(http, dict):
        raise SettingsError(f"{hp}: extensions.http must be an object")
    prefix = _ci_get(http, "routePrefix", "api")
    if not isinstance(prefix, str):
        raise SettingsError(f"{hp}: extensions.http.routePrefix must be a string")
    s.route_prefix = prefix.strip("/")

    dt = _or_empty(_ci_get(extensions, "durableTask"))
    if not isinstance(dt, dict):
        raise SettingsError(f"{hp}: extensions.durableTask must be an object")
    if _ci_get(s.host_json, "durableTask") is not None:
        s.warnings.append(f"{hp}: 'durableTask' at the root is the Functions 1.x schema; "
                          "move it under 'extensions' (ignored)")
    s.durable_task_options = _apply_durable_task(s, dt, hp)
    queues = _or_empty(_ci_get(extensions, "queues"))
    if not isinstance(queues, dict):
        raise SettingsError(f"{hp}: extensions.queues must be an object")
    s.queues = _read_queues(queues, hp, s.warnings)
    s.hub_name = _resolve_hub_name(s, dt, hp, hub_name)
    s.durable_task_options["hubName"] = s.hub_name

    # connection: CLI flag > storageProvider.connectionName/connectionStringName > AzureWebJobsStorage
    sp = s.durable_task_options["storageProvider"]
    s.connection_setting = connection_setting or sp.get("connectionName") or sp.get("connectionStringName") \
        or DEFAULT_CONNECTION_SETTING
    raw_conn = s.env.get(s.connection_setting)
    if raw_conn is None:  # Core Tools matches Values keys case-insensitively
        raw_conn = next((v for k, v in s.env.items() if k.lower() == s.connection_setting.lower()), None)
    s.connection_string = expand_connection_string(raw_conn) if raw_conn else None

    _apply_local_host(s, local_path)

    funcs = _ci_get(s.host_json, "functions")
    if funcs is not None:
        if not isinstance(funcs, list) or not all(isinstance(f, str) for f in funcs):
            raise SettingsError(f"{hp}: 'functions' must be a list of function names")
        s.functions = funcs
    return s


def _apply_local_host(s: Settings, local_path: Path) -> None:
    """local.settings.json Host: LocalHttpPort, LocalHttpAddress, CORS, CORSCredentials."""
    port = s.local_host.get("LocalHttpPort")
    if port is not None:
        s.http_port = _int_in_range(port, 1, 65535, f"{local_path}: Host.LocalHttpPort")
    if s.local_host.get("LocalHttpAddress"):
        s.http_address = str(s.local_host["LocalHttpAddress"])
    cors = s.local_host.get("CORS")
    if cors:
        if not isinstance(cors, str):
            raise SettingsError(f"{local_path}: Host.CORS must be a comma-separated string of origins")
        s.cors = [c.strip() for c in cors.split(",") if c.strip()]
    if s.local_host.get("CORSCredentials") is not None:
        s.cors_credentials = _bool(s.local_host["CORSCredentials"], f"{local_path}: Host.CORSCredentials")


def export_values(settings: Settings, environ: dict | None = None) -> list[str]:
    """Export local.settings.json Values into the process environment for user code.

    An already-set, non-empty variable wins (as in Core Tools). Returns the names that were skipped.
    """
    environ = os.environ if environ is None else environ
    skipped = []
    for k, v in settings.values.items():
        if environ.get(k):
            if environ[k] != v:
                skipped.append(k)
            continue
        environ[k] = v
    environ.setdefault("AzureWebJobsScriptRoot", str(settings.app_root))
    environ.setdefault("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
    return skipped
