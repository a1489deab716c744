"""One batch of entity operations, with its I/O. The entity's Instances row holds its state and the ids of the
requests it processed lately (with their answers), written If-Match: a request that shows up again after a crash
is answered again, never run twice, and two hosts can never both apply a batch."""
from __future__ import annotations

import json
import logging

from ..storage.errors import SplitBrainError
from ..storage.schema import utcnow
from . import events as ev
from .delivery import Item
from .entities import EntityState, batch_context, parse_entity_id, response_message
from .episode import Outbound
from .orchestrations import unknown_function
from .worker import UserCodeError

log = logging.getLogger("durafunc.engine")


class EntityEpisodes:
    def __init__(self, engine):
        self.engine = engine
        self._known: dict[str, tuple[EntityState, str | None, bool]] = {}   # iid -> (state, row etag, row exists)

    def forget(self) -> None:
        """Read the entities' rows again before their next batch (a partition moved)."""
        self._known.clear()

    async def _state(self, instance_id: str) -> tuple[EntityState, str | None, bool]:
        known = self._known.get(instance_id)
        if known is not None:
            return known
        row = await self.engine.hub.instances.get(instance_id)
        return EntityState.from_row_input(row.input if row else None), row.etag if row else None, row is not None

    async def run(self, instance_id: str, items: list[Item]) -> None:
        e = self.engine
        name, key = parse_entity_id(instance_id)
        requests: list[tuple[Item, dict]] = []
        for item in items:
            try:
                req = json.loads(item.event.get("Input") or "")
                if not isinstance(req, dict) or "op" not in req:
                    raise ValueError
                requests.append((item, req))
            except ValueError:
                await e.poison(item, "entity request is not a RequestMessage")
        if not requests:
            return
        state, etag, exists = await self._state(instance_id)
        fresh, answers = [], []       # answers: (request, response text) to send
        for item, req in requests:
            seen, response = state.response_for(req.get("id") or "")
            if seen:
                log.debug("entity %s: request %s was processed already; answering it again", instance_id,
                          req.get("id"))
                if response is not None:
                    answers.append((req, response))
            else:
                fresh.append(req)
        now = utcnow()
        if fresh:
            results = await self._execute(instance_id, name, key, state, fresh)
            for req, res in zip(fresh, results):
                answer = None if req.get("signal") or not req.get("parent") else response_message(res)
                state.remember(req.get("id") or "", answer)
                if answer is not None:
                    answers.append((req, answer))
                if res.get("isError"):     # the host logs a failed operation with its function's run
                    log.debug("entity %s: operation '%s' failed: %s", instance_id, req.get("op"), res.get("result"))
            fields = {"Name": name, "RuntimeStatus": "Running", "Input": state.to_row_input(), "LastUpdatedTime": now,
                      "Worker": e.opt.worker_id}
            if not exists:
                fields["CreatedTime"] = now
            new_etag = await e.hub.instances.write(instance_id, fields, etag)
            if new_etag is None:
                self._known.pop(instance_id, None)
                raise SplitBrainError(f"the row of entity {instance_id} changed while its batch ran")
            self._known[instance_id] = (state, new_etag, True)
        # the state is durable: answer the callers, then forget the requests
        outbound = [Outbound(False, req["parent"], ev.task_message(ev.event_raised(now, req["id"], text),
                                                                   req["parent"], req.get("parentExecution")))
                    for req, text in answers]
        sent = await e.outbox.send(outbound, None, None)
        e.outbox.release(sent)
        await e.delete_items([item for item, _ in requests])

    async def _execute(self, instance_id: str, name: str, key: str, state: EntityState, requests: list[dict]):
        """Run the batch through the SDK; updates `state`; returns one result per request."""
        functions = self.engine.functions
        known = next((n for n in functions.entity_names() if n.lower() == name.lower()), None)
        if known is None:
            text = json.dumps(unknown_function("entity", name, functions.entity_names()))
            return [{"isError": True, "result": text} for _ in requests]
        try:
            out = json.loads(await functions.run_entity(known, batch_context(name, key, state, requests)))
        except UserCodeError as err:
            log.debug("entity %s failed: %s: %s", instance_id, err.type_name, err.message)   # the host logged it
            return [{"isError": True, "result": json.dumps(f"{err.type_name}: {err.message}")} for _ in requests]
        state.exists, state.state = bool(out.get("entityExists")), out.get("entityState")
        results = out.get("results") or []
        return results + [{"isError": True, "result": json.dumps("no result")}] * (len(requests) - len(results))
