"""host.json + local.settings.json + environment -> one Settings object.

Precedence follows Core Tools: an environment variable that is already set wins over a
`local.settings.json` `Values` entry; host.json supplies the durableTask and http options.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
DEFAULT_HUB_NAME = "TestHubName"
DEFAULT_CONNECTION_SETTING = "AzureWebJobsStorage"
DEFAULT_PORT = 7071
HUB_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")

# extensions.durableTask keys known to Durable Functions 2.x/3.x (case-insensitive), with defaults
# where durafunc uses them. See shared/docs/core-tools-cli-surface.md section 3.2.
DURABLE_TASK_KEYS = {
    "hubname", "defaultversion", "versionmatchstrategy", "versionfailurestrategy", "storageprovider",
    "maxconcurrentactivityfunctions", "maxconcurrentorchestratorfunctions", "maxconcurrententityfunctions",
    "maxentityoperationbatchsize", "extendedsessionsenabled", "extendedsessionidletimeoutinseconds",
    "maxorchestrationactions", "tracing", "notifications", "localrpcendpointenabled",
    "storeinputsinorchestrationhistory", "usegracefulshutdown", "useappLease".lower(),
    "uselegacypartitionmanagement", "usetablepartitionmanagement", "overridablereplayeventsallowed",
    "entitymessagereorderwindowinminutes", "rollbackentityoperationsonexceptions", "defaultasyncrequestsleeptimemilliseconds",
    "typenamehandling", "webhookuriproviderOverride".lower(), "httpsettings", "customlifecyclenotificationhelpertype",
}
STORAGE_PROVIDER_KEYS = {
    "type", "connectionname", "connectionstringname", "azurestorageconnectionstringname", "partitioncount",
    "controlqueuebatchsize", "controlqueuebufferthreshold", "controlqueuevisibilitytimeout",
    "workitemqueuevisibilitytimeout", "maxqueuepollinginterval", "fetchlargemessagesautomatically",
    "trackingstoreconnectionname", "trackingstoreconnectionstringname", "trackingstorenameprefix",
    "uselegacypartitionmanagement", "usetablepartitionmanagement", "queueclientmessageencoding",
    "allowreplayingterminalinstances", "maxnumberofmessagesperbatch",
    "poisonmessagemaxdequeuecount",
}
# storageProvider keys users often put one level too high (at durableTask level).
_MISPLACEABLE = STORAGE_PROVIDER_KEYS - {"type"}


class SettingsError(Exception):
    """A configuration problem; str() is one line naming the file and the key."""


@dataclass
class Settings:
    app_root: Path
    host_json: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)          # local.settings.json Values
    local_host: dict = field(default_factory=dict)      # local.settings.json Host
    env: dict = field(default_factory=dict)             # merged view: Values overlaid by os.environ
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
    max_concurrent_activities: int = 10 * (os.cpu_count() or 1)
    max_concurrent_orchestrators: int = 10 * (os.cpu_count() or 1)
    control_queue_batch_size: int = 32
    control_queue_visibility: float = 300.0
    work_item_visibility: float = 300.0
    max_queue_polling_interval: float = 1.0   # local default; Azure's is 30 s
    poison_max_dequeue_count: int = 5
    store_inputs_in_history: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def durable_task(self) -> dict:
        return _ci_get(_ci_get(self.host_json, "extensions") or {}, "durableTask") or {}


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


def read_json_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SettingsError(f"{path}: cannot read file: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object at the top level")
    return data


def expand_connection_string(value: str | None) -> str | None:
    """`UseDevelopmentStorage=true` -> the well-known Azurite connection string."""
    if value is None:
        return None
    parts = parse_connection_string(value)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        proxy = parts.get("developmentstorageproxyuri")
        if proxy:
            return DEVELOPMENT_STORAGE.replace("http://127.0.0.1", proxy.rstrip("/"))
        return DEVELOPMENT_STORAGE
    return value


def parse_connection_string(value: str) -> dict[str, str]:
    """Split `A=b;C=d` into a dict with lower-cased keys (values keep '=' padding)."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _expand_app_settings(value: str, env: Mapping[str, str], where: str) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in env:
            raise SettingsError(f"{where}: app setting '%{name}%' is not defined")
        return env[name]

    return re.sub(r"%([^%]+)%", repl, value)


def _parse_timespan(value: Any, where: str) -> float:
    """host.json TimeSpan 'hh:mm:ss[.fff]' or 'd.hh:mm:ss' -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", str(value).strip())
    if not m:
        raise SettingsError(f"{where}: '{value}' is not a time span (expected hh:mm:ss)")
    days, h, mi, s = m.groups()
    return int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)


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
        s.host_json = read_json_file(host_path)
    local_path = root / "local.settings.json"
    if local_path.is_file():
        local = read_json_file(local_path)
        values = local.get("Values") or {}
        if not isinstance(values, dict):
            raise SettingsError(f"{local_path}: 'Values' must be an object")
        s.values = {str(k): ("" if v is None else str(v) if not isinstance(v, bool) else str(v).lower())
                    for k, v in values.items() if k}
        s.local_host = local.get("Host") or {}
        if not isinstance(s.local_host, dict):
            raise SettingsError(f"{local_path}: 'Host' must be an object")

    s.env = {**s.values, **environ}
    hp = str(host_path)

    version = s.host_json.get("version")
    if s.host_json and version != "2.0":
        s.warnings.append(f"{hp}: 'version' should be \"2.0\" (found {version!r}); reading it as 2.0 anyway")

    extensions = _ci_get(s.host_json, "extensions") or {}
    if not isinstance(extensions, dict):
        raise SettingsError(f"{hp}: 'extensions' must be an object")
    http = _ci_get(extensions, "http") or {}
    prefix = _ci_get(http, "routePrefix", "api")
    if not isinstance(prefix, str):
        raise SettingsError(f"{hp}: extensions.http.routePrefix must be a string")
    s.route_prefix = prefix.strip("/")

    dt = _ci_get(extensions, "durableTask") or {}
    if not isinstance(dt, dict):
        raise SettingsError(f"{hp}: extensions.durableTask must be an object")
    if _ci_get(s.host_json, "durableTask") is not None:
        s.warnings.append(f"{hp}: 'durableTask' at the root is the Functions 1.x schema; "
                          "move it under 'extensions' (ignored)")
    sp = _ci_get(dt, "storageProvider") or {}
    if not isinstance(sp, dict):
        raise SettingsError(f"{hp}: extensions.durableTask.storageProvider must be an object")
    for key in dt:
        low = key.lower()
        if low in DURABLE_TASK_KEYS:
            continue
        if low in _MISPLACEABLE:
            s.warnings.append(f"{hp}: extensions.durableTask.{key} belongs under storageProvider (ignored here)")
        else:
            s.warnings.append(f"{hp}: unknown key extensions.durableTask.{key} (ignored)")
    for key in sp:
        if key.lower() not in STORAGE_PROVIDER_KEYS:
            s.warnings.append(f"{hp}: unknown key extensions.durableTask.storageProvider.{key} (ignored)")
    ptype = _ci_get(sp, "type", "AzureStorage")
    if str(ptype).lower() not in ("azurestorage", "azure_storage"):
        raise SettingsError(f"{hp}: extensions.durableTask.storageProvider.type '{ptype}' is not supported "
                            "(durafunc emulates the AzureStorage provider)")

    # task hub name: CLI flag > host.json (with %AppSetting% expansion) > WEBSITE_SITE_NAME > TestHubName
    where_hub = f"{hp}: extensions.durableTask.hubName"
    raw_hub = hub_name if hub_name is not None else _ci_get(dt, "hubName")
    if raw_hub is None:
        raw_hub = s.env.get("WEBSITE_SITE_NAME") or DEFAULT_HUB_NAME
        where_hub = "WEBSITE_SITE_NAME" if s.env.get("WEBSITE_SITE_NAME") else where_hub
    elif hub_name is not None:
        where_hub = "--task-hub-name"
    if not isinstance(raw_hub, str):
        raise SettingsError(f"{where_hub}: must be a string")
    hub = _expand_app_settings(raw_hub, s.env, where_hub)
    if not HUB_NAME_RE.match(hub):
        raise SettingsError(f"{where_hub}: task hub name '{hub}' should contain only alphanumeric characters, "
                            "start with a letter, and have length between 3 and 45.")
    s.hub_name = hub

    if "partitionCount" in sp or _ci_get(sp, "partitionCount") is not None:
        s.partition_count = _int_in_range(_ci_get(sp, "partitionCount"), 1, 16,
                                          f"{hp}: extensions.durableTask.storageProvider.partitionCount")
    if _ci_get(sp, "controlQueueBatchSize") is not None:
        s.control_queue_batch_size = _int_in_range(_ci_get(sp, "controlQueueBatchSize"), 1, 32,
                                                   f"{hp}: extensions.durableTask.storageProvider.controlQueueBatchSize")
    for key, attr in (("controlQueueVisibilityTimeout", "control_queue_visibility"),
                      ("workItemQueueVisibilityTimeout", "work_item_visibility"),
                      ("maxQueuePollingInterval", "max_queue_polling_interval")):
        if _ci_get(sp, key) is not None:
            secs = _parse_timespan(_ci_get(sp, key), f"{hp}: extensions.durableTask.storageProvider.{key}")
            if secs <= 0:
                raise SettingsError(f"{hp}: extensions.durableTask.storageProvider.{key} must be greater than zero")
            setattr(s, attr, secs)
    if _ci_get(sp, "poisonMessageMaxDequeueCount") is not None:
        s.poison_max_dequeue_count = _int_in_range(_ci_get(sp, "poisonMessageMaxDequeueCount"), 1, 1000,
                                                   f"{hp}: extensions.durableTask.storageProvider.poisonMessageMaxDequeueCount")
    for key, attr in (("maxConcurrentActivityFunctions", "max_concurrent_activities"),
                      ("maxConcurrentOrchestratorFunctions", "max_concurrent_orchestrators")):
        if _ci_get(dt, key) is not None:
            setattr(s, attr, _int_in_range(_ci_get(dt, key), 1, 10000, f"{hp}: extensions.durableTask.{key}"))
    s.store_inputs_in_history = bool(_ci_get(dt, "storeInputsInOrchestrationHistory", False))

    # connection: CLI flag > storageProvider.connectionName/connectionStringName > AzureWebJobsStorage
    conn_setting = connection_setting or next(
        (v for v in (_ci_get(sp, "connectionName"), _ci_get(sp, "connectionStringName"),
                     _ci_get(sp, "azureStorageConnectionStringName"),
                     _ci_get(dt, "azureStorageConnectionStringName")) if v),
        DEFAULT_CONNECTION_SETTING,
    )
    s.connection_setting = conn_setting
    raw_conn = s.env.get(conn_setting)
    if raw_conn is None:  # Core Tools matches Values keys case-insensitively
        raw_conn = next((v for k, v in s.env.items() if k.lower() == conn_setting.lower()), None)
    s.connection_string = expand_connection_string(raw_conn) if raw_conn else None

    port = s.local_host.get("LocalHttpPort")
    if port is not None:
        s.http_port = _int_in_range(port, 1, 65535, f"{local_path}: Host.LocalHttpPort")
    if s.local_host.get("LocalHttpAddress"):
        s.http_address = str(s.local_host["LocalHttpAddress"])
    cors = s.local_host.get("CORS")
    if cors:
        s.cors = [c for c in str(cors).split(",") if c]
    s.cors_credentials = str(s.local_host.get("CORSCredentials", "")).lower() == "true"

    funcs = _ci_get(s.host_json, "functions")
    if funcs is not None:
        if not isinstance(funcs, list) or not all(isinstance(f, str) for f in funcs):
            raise SettingsError(f"{hp}: 'functions' must be a list of function names")
        s.functions = funcs
    return s


def export_values(settings: Settings, environ: dict | None = None) -> list[str]:
    """Export local.settings.json Values into the process environment for user code.

    An already-set variable wins (as in Core Tools). Returns the names that were skipped.
    """
    environ = os.environ if environ is None else environ
    skipped = []
    for k, v in settings.values.items():
        if k in environ:
            if environ[k] != v:
                skipped.append(k)
            continue
        environ[k] = v
    environ.setdefault("AzureWebJobsScriptRoot", str(settings.app_root))
    environ.setdefault("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
    return skipped
