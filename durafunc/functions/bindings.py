"""The storage bindings of an invocation: blob and table inputs read before the function runs, queue, blob and
table outputs written after it returns, their properties resolved from app settings and binding expressions.

Errors are the Functions host's: a conversion the worker refuses is a TypeError as the worker raises it; what the
host fails at is `Exception binding parameter 'x'. ...` (inputs) or `Error while handling parameter _binder after
function returned:. ...` (outputs), with the service's message (`Azure.Data.Tables: The specified entity already
exists. Status: 409 (Conflict) ErrorCode: EntityAlreadyExists`)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from azure.core.exceptions import HttpResponseError
from azure.functions import meta

from ..settings import QueuesOptions
from . import blobs, queues, tables
from .clients import StorageClients
from .errors import BindingError, service_message
from .expressions import ExpressionError, blob_pattern, check_resolvable, expand_settings, parse, resolve
from .model import Binding, FunctionInfo

STORAGE_TYPES = ("blob", "table", "queue")
# binding data every trigger provides, and what the triggers with a fixed contract add (lower-case)
SYSTEM_CONTRACT = {"sys", "rand-guid", "datetime"}
TRIGGER_CONTRACTS = {
    "blobtrigger": {"blobtrigger", "uri", "properties", "metadata"},
    "timertrigger": set(),
    "activitytrigger": {"instanceid", "data"},
}


class InvocationBindingError(Exception):
    """The host failed at a binding of one invocation; `type_name` and `message` as the host reports them."""

    def __init__(self, message: str, type_name: str = "FunctionInvocationException"):
        super().__init__(message)
        self.type_name, self.message = type_name, message


def _is_storage(b: Binding) -> bool:
    return b.type.lower() in STORAGE_TYPES and not b.is_trigger


class BindingIO:
    """Reads and writes the storage bindings of every function of a host. `on_queue_write(conn, queue)` and
    `on_blob_write(conn, container)` tell this host's listeners that something just arrived."""

    def __init__(self, clients: StorageClients, env: Mapping[str, str], queues_options: QueuesOptions, *,
                 on_queue_write: Callable[[str, str], None] | None = None,
                 on_blob_write: Callable[[str, str], None] | None = None):
        self.clients, self.env, self.qopt = clients, env, queues_options
        self.on_queue_write, self.on_blob_write = on_queue_write, on_blob_write

    # -- properties ------------------------------------------------------------------------------------------
    def _prop(self, b: Binding, key: str, data: Mapping[str, Any] | None, *, required: bool = True) -> str | None:
        """A binding property with `%AppSetting%` expanded and (given binding data) its expressions resolved."""
        raw = b.raw.get(key)
        if raw is None or raw == "":
            if required:
                raise BindingError(f"'{key}' is required")
            return None
        text = expand_settings(str(raw), self.env)
        if data is None:
            return text
        try:
            return resolve(parse(text), data)
        except ExpressionError as e:
            raise BindingError(f"{key} '{raw}': {e}") from None

    def _conn(self, b: Binding) -> str:
        return self.clients.resolve(b.raw.get("connection"))

    # -- start-time checks -----------------------------------------------------------------------------------
    def problems(self, fn: FunctionInfo) -> tuple[list[str], list[str]]:
        """(errors, warnings) of the function's storage bindings, each one line without the function prefix:
        connection settings, app settings, static paths and names, dataType, annotations, and (for the
        triggers whose binding data is fixed) expressions that cannot be resolved."""
        errors, warnings = [], []
        trigger = fn.trigger.type.lower()
        available = None
        if trigger in TRIGGER_CONTRACTS:
            available = SYSTEM_CONTRACT | TRIGGER_CONTRACTS[trigger]
            if trigger == "blobtrigger":
                try:
                    path = expand_settings(str(fn.trigger.raw.get("path", "")), self.env)
                    available |= {p.lower() for p in blob_pattern(path).parameters}
                except BindingError:
                    available = None          # the trigger's own error is reported by its listener
            if trigger == "activitytrigger":
                available.add(fn.trigger.name.lower())
        if trigger == "blobtrigger":
            hint = blobs.annotation_warning(fn.name, fn.trigger, fn.binding_type(fn.trigger.name))
            if hint:
                warnings.append(hint)
        for b in fn.bindings:
            if not _is_storage(b):
                continue
            where = f"binding '{b.name}' ({b.type})"
            try:
                self._conn(b)
                kind = b.type.lower()
                keys = {"blob": ["path"], "table": ["tableName", "partitionKey", "rowKey", "filter"],
                        "queue": ["queueName"]}[kind]
                for key in keys:
                    text = self._prop(b, key, None, required=key in ("path", "tableName", "queueName"))
                    if text is None:
                        continue
                    template = parse(text)
                    if available is not None:
                        check_resolvable(template, available)
                    if template.is_literal:
                        if kind == "blob":
                            blobs.split_path(text)
                        elif kind == "table" and key == "tableName":
                            tables.check_table_name(text)
                        elif kind == "queue":
                            queues.resolve_queue_name(text, self.env, f"queueName '{text}'")
                if kind == "blob":
                    blobs.data_type(b)
                    hint = blobs.annotation_warning(fn.name, b, fn.binding_type(b.name)) \
                        if b.direction == "in" else None
                    if hint:
                        warnings.append(hint)
                if kind == "table" and b.direction == "in":
                    tables.take_of(b.raw.get("take"))
            except BindingError as e:
                errors.append(f"{where}: {e}")
        return errors, warnings

    # -- inputs ----------------------------------------------------------------------------------------------
    async def read_inputs(self, fn: FunctionInfo, data: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
        """The values of the blob and table input bindings among `names`, as the worker gives them."""
        out = {}
        for b in fn.bindings:
            if b.direction != "in" or not _is_storage(b) or b.name not in names:
                continue
            try:
                out[b.name] = await self._read(fn, b, data)
            except (BindingError, HttpResponseError) as e:
                raise InvocationBindingError(f"Exception binding parameter '{b.name}'. "
                                             f"{_detail(e, b.type.lower())}") from e
        return out

    async def _read(self, fn: FunctionInfo, b: Binding, data: Mapping[str, Any]) -> Any:
        kind = b.type.lower()
        conn = self._conn(b)
        if kind == "blob":
            container, name = blobs.split_path(self._prop(b, "path", data))
            found = await blobs.read(self.clients.account(conn).blobs, container, name)
            datum = blobs.content_datum(found[0] if found else None, b)
            return blobs.input_value(datum, fn.binding_type(b.name))
        if kind == "table":
            table = tables.check_table_name(self._prop(b, "tableName", data))
            pk = self._prop(b, "partitionKey", data, required=False)
            rk = self._prop(b, "rowKey", data, required=False)
            service = self.clients.account(conn).tables
            if pk is not None and rk is not None:
                text = await tables.read_entity(service, table, pk, rk)
            else:
                text = await tables.query(service, table, tables.query_filter(
                    pk, self._prop(b, "filter", data, required=False)), tables.take_of(b.raw.get("take")))
            return meta.Datum(text, "json").value if text is not None else None
        return None        # a queue has no input binding

    # -- outputs ---------------------------------------------------------------------------------------------
    async def write(self, fn: FunctionInfo, b: Binding, value: Any, data: Mapping[str, Any]) -> None:
        """Write one output binding's value (after the function returned)."""
        pytype = fn.binding_type(b.name)
        kind = b.type.lower()
        # the worker's conversion first: a value it refuses fails in the worker, before the host sees it
        if kind == "queue":
            messages = queues.output_messages(value, pytype)
            if not messages:
                return
        elif kind == "blob":
            content = blobs.output_content(value, pytype)
            if content is None:
                return
        elif kind == "table":
            items = tables.parse_output(value, pytype)
            if not items:
                return
        else:
            return
        try:
            conn = self._conn(b)
            if kind == "queue":
                name = queues.resolve_queue_name(b.raw.get("queueName", b.raw.get("queue_name")), self.env,
                                                 f"queueName '{b.raw.get('queueName')}'", data)
                client = self.clients.queue(conn, name)
                for body in messages:
                    await queues.send_text(client, queues.encode_body(body, self.qopt.message_encoding))
                if self.on_queue_write:
                    self.on_queue_write(conn, name)
            elif kind == "blob":
                container, name = blobs.split_path(self._prop(b, "path", data))
                await blobs.write(self.clients.account(conn).blobs, container, name, content)
                if self.on_blob_write:
                    self.on_blob_write(conn, container)
            else:
                table = tables.check_table_name(self._prop(b, "tableName", data))
                pk = self._prop(b, "partitionKey", data, required=False)
                rk = self._prop(b, "rowKey", data, required=False)
                entities = [tables.to_entity(item, pk, rk) for item in items]
                await tables.insert(self.clients.account(conn).tables, table, entities)
        except (BindingError, HttpResponseError) as e:
            raise InvocationBindingError(f"Error while handling parameter _binder after function returned:. "
                                         f"{_detail(e, kind)} ({kind} output binding '{b.name}')") from e


PRODUCTS = {"blob": "Azure.Storage.Blobs", "table": "Azure.Data.Tables", "queue": "Azure.Storage.Queues"}


def _detail(e: Exception, kind: str) -> str:
    return service_message(e, PRODUCTS.get(kind, "Azure")) if isinstance(e, HttpResponseError) else str(e)
