"""Instance operations shared by the HTTP API and the CLI: status payloads, history views, filters."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from .azurite import recorded_azurite  # noqa: F401 - the CLI's view of it
from .storage.instances import InstanceRow
from .storage.schema import EventType, OrchestrationStatus, parse_time

ET = EventType


def parse_stored_json(text: str | None):
    """Stored Input/Output/CustomStatus -> a JSON value; text that is not JSON stays a plain string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def http_time(dt: datetime | None) -> str | None:
    """`yyyy-MM-ddTHH:mm:ssZ` as the Durable HTTP API writes times."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_payload(row: InstanceRow, *, show_input: bool = True, history: list[dict] | None = None,
                   show_history_output: bool = False) -> dict:
    """The status object of the Durable HTTP API (StatusResponsePayload)."""
    custom = parse_stored_json(row.custom_status)
    out = {
        "name": row.name,
        "instanceId": row.instance_id,
        "runtimeStatus": row.runtime_status.name,
        "input": parse_stored_json(row.input) if show_input else None,
        "customStatus": custom,
        "output": parse_stored_json(row.output),
        "createdTime": http_time(row.created_time),
        "lastUpdatedTime": http_time(row.last_updated_time),
    }
    if history is not None:
        out["historyEvents"] = history_view(history, show_output=show_history_output, show_input=show_input)
    return out


def history_view(events: list[dict], *, show_output: bool = False, show_input: bool = False) -> list[dict]:
    """History as the HTTP API shows it: names for EventType, scheduling rows folded into their completions."""
    scheduled = {e.get("EventId"): e for e in events
                 if e.get("EventType") in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated)}
    out = []
    for e in events:
        t = e.get("EventType")
        if t in (ET.OrchestratorStarted, ET.OrchestratorCompleted, ET.TaskScheduled,
                 ET.SubOrchestrationInstanceCreated):
            continue
        item = {"EventType": ET(t).name if t in ET._value2member_map_ else t, "Timestamp": e.get("Timestamp")}
        if t in (ET.TaskCompleted, ET.TaskFailed, ET.SubOrchestrationInstanceCompleted,
                 ET.SubOrchestrationInstanceFailed):
            s = scheduled.get(e.get("TaskScheduledId")) or {}
            item["FunctionName"] = s.get("Name")
            item["ScheduledTime"] = s.get("Timestamp")
        for key in ("Name", "FireAt", "TimerId", "Reason", "Details", "OrchestrationStatus", "InstanceId"):
            if e.get(key) is not None:
                item[key] = e[key]
        if t == ET.ExecutionStarted:
            item["FunctionName"] = e.get("Name")
            item.pop("Name", None)
        if t == ET.ExecutionCompleted and isinstance(item.get("OrchestrationStatus"), int):
            item["OrchestrationStatus"] = OrchestrationStatus(item["OrchestrationStatus"]).name
        if show_output and e.get("Result") is not None:
            item["Result"] = parse_stored_json(e["Result"])
        if show_input and e.get("Input") is not None:
            item["Input"] = parse_stored_json(e["Input"])
        out.append(item)
    return out


def parse_statuses(values: list[str] | str | None) -> list[OrchestrationStatus] | None:
    """`Running,Pending` or ['running completed'] -> statuses; ValueError naming a bad one."""
    if not values:
        return None
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        for token in str(v).replace(",", " ").split():
            out.append(OrchestrationStatus.parse(token))
    return out or None


def parse_date(value: str | None, what: str) -> datetime | None:
    """A date and time as Core Tools takes it (.NET DateTime.Parse, en-US): ISO 8601 (`2026-12-01T20:10:00Z`),
    `12/01/2026 20:10` (month first), `2026-12-01`, `Dec 1 2026 8:10 PM`...; UTC when it names no zone.
    ValueError naming the option and the value."""
    if value is None or value == "":
        return None
    try:
        dt = parse_time(value)
    except (ValueError, TypeError):
        dt = None
    if dt is None:
        from dateutil import parser as dateparser
        try:
            if value.strip().isdigit():
                raise ValueError("a bare number is no date")
            dt = dateparser.parse(value, dayfirst=False, yearfirst=False, fuzzy=False)
        except (ValueError, OverflowError, TypeError):
            raise ValueError(f"{what}: '{value}' is not a date (use ISO 8601 like 2026-12-01T20:10:00Z, or "
                             "'12/01/2026 20:10' as Core Tools takes it)") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
    return dt


# -- for the CLI ------------------------------------------------------------------------------------

def read_value(text: str | None, what: str):
    """`--input` / `--event-data`: `@file.json` reads a JSON file; otherwise JSON if it parses, else the raw
    string. ValueError with a one-line reason."""
    if text is None:
        return None
    if text.startswith("@"):
        from pathlib import Path
        path = Path(text[1:])
        if not path.is_file():
            raise ValueError(f"Could not find input file at '{path}'")
        try:
            return json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError as e:
            raise ValueError(f"{path}: {what} is not valid JSON: {e}") from None
    try:
        return json.loads(text)
    except ValueError:
        return text


async def live_leases(hub) -> list[tuple[str, str]]:
    """(partition, owner) of each partition lease a live host holds on the hub (blob leased, owner named)."""
    leases = hub.partition_leases("durafunc-cli")
    try:
        return [(lease.partition, lease.owner) for lease in await leases.list()
                if lease.leased and not lease.expired]
    except Exception:  # noqa: BLE001 - no lease store: no host ever ran
        return []


async def host_is_running(hub) -> bool:
    """A live host holds partition leases (blob leases) on the hub."""
    return bool(await live_leases(hub))


async def task_hubs(account) -> list[str]:
    """The task hubs of a storage account: names with both a `<hub>History` and a `<hub>Instances` table."""
    names = [t.name async for t in account.table_service.list_tables()]
    lower = {n.lower() for n in names}
    return sorted({n[: -len("History")] for n in names if n.endswith("History") and n[: -len("History")]
                   and (n[: -len("History")] + "instances").lower() in lower}, key=str.lower)


def missing_hub_message(hub_name: str, where: str, hubs: list[str], command: str) -> str:
    """One line: the hub does not exist in that account, and the hubs that do."""
    head = f"Task hub '{hub_name}' does not exist in storage account {where}."
    if not hubs:
        return head + " It has no task hub yet: 'durafunc start' creates one."
    close = [h for h in hubs if h.lower() == hub_name.lower()]
    listing = ", ".join(f"'{h}'" for h in hubs)
    return (f"{head} Task hubs there: {listing}; try 'durafunc {command} --task-hub-name {(close or hubs)[0]}'"
            + (" (task hub names are case-sensitive)" if close else "") + ".")


def account_label(conn: str) -> str:
    """`'devstoreaccount1' (http://127.0.0.1:10002/devstoreaccount1)` for messages."""
    from .storage.connection import parse_connection_string
    parts = parse_connection_string(conn)
    name = parts.get("accountname") or "?"
    endpoint = parts.get("tableendpoint")
    return f"'{name}'" + (f" ({endpoint})" if endpoint else "")


async def select_for_purge(hub, *, created_from, created_to, statuses, progress=None) -> list[InstanceRow]:
    """Instances a purge would delete: the filter, and never Running/Pending/Suspended ones unless
    `statuses` names those statuses."""
    from .storage.schema import ACTIVE_STATUSES
    token, out = None, []
    while True:
        rows, token = await hub.instances.query(created_from=created_from, created_to=created_to,
                                                statuses=statuses, top=500, continuation=token)
        for r in rows:
            if statuses is None and r.runtime_status in ACTIVE_STATUSES:
                continue
            out.append(r)
        if not token:
            return out


# -- for the dashboard (and any other reader of many instances) ------------------------------------------

class InstanceFilter:
    """The filters of an instance list: statuses, created range, id prefix, name prefix (all optional)."""

    def __init__(self, *, statuses=None, created_from=None, created_to=None, prefix: str | None = None,
                 name: str | None = None):
        self.statuses = statuses or None
        self.created_from = created_from
        self.created_to = created_to
        self.prefix = prefix or None
        self.name = name or None

    def without_status(self) -> "InstanceFilter":
        return InstanceFilter(created_from=self.created_from, created_to=self.created_to, prefix=self.prefix,
                              name=self.name)

    def odata(self) -> str:
        """The Instances-table $filter of these conditions (as `InstancesTable.query` builds it)."""
        from .storage.instances import InstancesTable
        return InstancesTable.filter_text(created_from=self.created_from, created_to=self.created_to,
                                          statuses=self.statuses, prefix=self.prefix, name_prefix=self.name)


async def query_instances(hub, flt: InstanceFilter, *, top: int, continuation: str | None = None):
    """(rows, continuation token) of one page of instances in id order; the token is the Instances-table
    continuation (the same form as the HTTP API's `x-ms-continuation-token` and `get-instances`); a missing
    table (a hub never used) is an empty page."""
    from azure.core.exceptions import ResourceNotFoundError
    try:
        return await hub.instances.query(created_from=flt.created_from, created_to=flt.created_to,
                                         statuses=flt.statuses, prefix=flt.prefix, name_prefix=flt.name, top=top,
                                         continuation=continuation)
    except ResourceNotFoundError:
        return [], None


async def count_by_status(hub, flt: InstanceFilter, *, limit: int = 100_000) -> tuple[dict[str, int], bool]:
    """({status name: count}, complete) of the instances matching `flt` (its statuses ignored), reading only the
    RuntimeStatus column; stops after `limit` rows (complete is then False)."""
    from azure.core.exceptions import ResourceNotFoundError

    from .storage.errors import StorageUnavailableError, is_unavailable
    counts = {s.name: 0 for s in OrchestrationStatus}
    seen = 0
    odata = flt.without_status().odata()
    try:
        async for e in hub.instances.client.query_entities(odata, select=["RuntimeStatus"],
                                                           results_per_page=1000):
            name = e.get("RuntimeStatus")
            counts[name] = counts.get(name, 0) + 1
            seen += 1
            if seen >= limit:
                return counts, False
    except ResourceNotFoundError:
        pass
    except Exception as e:
        if is_unavailable(e):
            raise StorageUnavailableError(f"storage unavailable: {type(e).__name__}: {e}") from e
        raise
    return counts, True


async def list_entities(hub, *, top: int, continuation: str | None = None, name: str | None = None):
    """(entities, token): [{instanceId, name, key, lastOperationTime, exists, state (JSON text)}] in id order."""
    from azure.core.exceptions import ResourceNotFoundError

    from .durable.entities import EntityState, parse_entity_id
    prefix = f"@{name.lower()}@" if name else "@"
    try:
        rows, token = await hub.instances.query(prefix=prefix, top=top, continuation=continuation,
                                                resolve_large=True)
    except ResourceNotFoundError:
        return [], None
    out = []
    for r in rows:
        ename, key = parse_entity_id(r.instance_id)
        st = EntityState.from_row_input(r.input)
        out.append({"instanceId": r.instance_id, "name": ename, "key": key, "lastOperationTime": r.last_updated_time,
                    "exists": st.exists, "state": st.state, "row": r})
    return out, token


async def hub_overview(hub, *, peek: int = 5) -> dict:
    """What a task hub looks like now: whether it exists, each partition's lease (owner, leased, epoch) and
    control-queue depth, the work-item queue depth, and the hub's poison queues with their first messages."""
    import asyncio

    from azure.core.exceptions import ResourceNotFoundError

    from .storage.queues import POISON_SUFFIX

    async def depth(queue) -> int | None:
        try:
            return await queue.peek_count()
        except ResourceNotFoundError:
            return None

    async def leases():
        try:
            return {lease.partition: lease for lease in await hub.partition_leases("durafunc-dashboard").list()}
        except ResourceNotFoundError:
            return {}

    async def poison_queues():
        service = hub.account.queue_service
        low = hub.names.hub.lower() + "-"
        out = []
        async for q in service.list_queues(name_starts_with=low):
            if not q.name.endswith(POISON_SUFFIX):
                continue
            client = service.get_queue_client(q.name)
            props = await client.get_queue_properties()
            messages = [m.content for m in await client.peek_messages(max_messages=peek)] if peek else []
            out.append({"name": q.name, "depth": props.approximate_message_count or 0, "messages": messages})
        return out

    exists = await hub.exists()
    lease_map, depths, work_depth, poison = await asyncio.gather(
        leases(), asyncio.gather(*(depth(q) for q in hub.control_queues)), depth(hub.work_items), poison_queues())
    partitions = []
    for q, d in zip(hub.control_queues, depths):
        lease = lease_map.get(q.name)
        partitions.append({"partition": q.name, "depth": d,
                           "owner": lease.owner if lease is not None else None,
                           "leased": bool(lease and lease.leased), "epoch": lease.epoch if lease else None})
    return {"exists": exists, "partitions": partitions, "workItems": {"name": hub.work_items.name,
                                                                      "depth": work_depth},
            "poison": poison, "workers": sorted({p["owner"] for p in partitions if p["owner"] and p["leased"]})}


async def restart_instance(client, instance_id: str, *, new_instance_id: bool = True) -> str:
    """Start the instance's orchestrator again with its input (the HTTP API's restart): under a new id, or under
    the same id after terminating it if it still runs. Returns the id of the new execution."""
    from .durable.client import ClientError
    from .storage.schema import ACTIVE_STATUSES
    row = await client.get(instance_id)
    if row is None:
        raise ClientError("InstanceId does not match a valid orchestration instance.")   # 400, as on Azure
    value = json.loads(row.input) if row.input is not None else None
    if not new_instance_id and row.runtime_status in ACTIVE_STATUSES:
        await client.terminate(instance_id, "restarted")
        await client.wait_for(instance_id, 10)
    return await client.start_new(row.name, None if new_instance_id else instance_id, value,
                                  has_input=row.input is not None)


def describe_storage(conn: str) -> str:
    """Where a connection string points, for headers and logs: its table endpoint, else the account name."""
    from .settings import parse_connection_string
    try:
        parts = parse_connection_string(conn) if conn else {}
    except Exception:  # noqa: BLE001 - only a label
        parts = {}
    return parts.get("tableendpoint") or parts.get("accountname") or "storage"
