"""One orchestration episode, with its I/O: load (and repair) the instance, admit its messages, call the SDK,
and checkpoint in DTFx's order — outbound messages, history (the commit point), instance row, then the deletes of
the messages it consumed."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ..storage.errors import SplitBrainError
from ..storage.schema import TERMINAL_STATUSES, EventType, OrchestrationStatus, parse_time, utcnow
from .delivery import Item
from .episode import InstanceState, begin, decide, needs_orchestrator, rewind_history, triage
from .extended import ExtendedSession, OrchestratorCall
from .protocol import OrchestratorOutput, context_json, parse_failure, parse_output
from .reconcile import implied_status, row_repair, start_gate
from .replay import HTTP_ACTIVITY
from .worker import UserCodeError

log = logging.getLogger("durafunc.engine")
ET = EventType


def unknown_function(kind: str, name: str, known: list[str]) -> str:
    listing = (f"The following are the known {kind} functions: " + ", ".join(f"'{n}'" for n in known) + "."
               if known else f"No {kind} functions are currently registered!")
    return f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. " \
           f"Additional info: {listing}"


class OrchestrationEpisodes:
    def __init__(self, engine):
        self.engine = engine
        self._loading: dict[str, asyncio.Future] = {}

    # -- loading ---------------------------------------------------------------------------------
    async def load(self, instance_id: str, items: list[Item]) -> tuple[InstanceState, bool]:
        """The instance as this host knows it, else read from storage (history and row), with its row
        repaired when a crash left it behind the history. Returns (state, read now)."""
        e = self.engine
        state = e.states.get(instance_id)
        if state is not None:
            return state, False
        loading = self._loading.get(instance_id)
        if loading is not None:           # another task of this host is reading it: share what it reads
            return await asyncio.shield(loading), False
        future = self._loading[instance_id] = asyncio.get_running_loop().create_future()
        try:
            state = await self._read(instance_id, items)
        except BaseException as err:
            future.set_exception(err)
            future.exception()        # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(state)
        finally:
            del self._loading[instance_id]
        return state, True

    async def _read(self, instance_id: str, items: list[Item]) -> InstanceState:
        e = self.engine
        fresh = next((i for i in items if i.row is not None and i.row_checked), None)
        if fresh is not None and fresh.fresh:
            state = InstanceState(instance_id, stored_rows=0, row=fresh.row)
            e.rows.know(instance_id, fresh.row.etag)
            e.states[instance_id] = state
            return state
        if e.rows.holds(instance_id) or e.rows.writing(instance_id):
            await e._storage_call(e.rows.settle(instance_id), "write instance row")
        snap, row = await e._storage_call(asyncio.gather(e.hub.history.load(instance_id),
                                                         e.hub.instances.get(instance_id)), "load instance")
        state = InstanceState(instance_id, snap.execution_id, list(snap.events), snap.etag,
                              implied_status(snap.events), stored_rows=snap.row_count, row=row)
        e.rows.know(instance_id, row.etag if row is not None else None)
        fix = row_repair(state.history, state.execution_id, row)
        if fix is not None:
            log.warning("instance %s: repairing its row: history says %s, the row said %s", instance_id,
                        fix["RuntimeStatus"], row.runtime_status.name if row is not None and row.runtime_status
                        is not None else "nothing (no row)")
            e.stats["repaired"] += 1
            await e.rows.write(instance_id, {**fix, "Worker": e.opt.worker_id}, final=True,
                               history_etag=snap.etag)
            state.row = None            # re-read when a start needs it
        e.states[instance_id] = state
        return state

    # -- the episode -----------------------------------------------------------------------------
    async def run(self, instance_id: str, items: list[Item]) -> None:
        e = self.engine
        state, cold = await self.load(instance_id, items)
        items = await self._gate_starts(state, items, row_read=cold)
        items.sort(key=lambda i: (i.event.get("EventType") != ET.ExecutionStarted, i.inserted_on,
                                  getattr(getattr(i.raw, "data", None), "sequence_number", 0)))
        if not items:
            return
        t = triage(state, [i.message for i in items])
        for idx, why in t.dropped:
            log.debug("instance %s: dropped %s: %s", instance_id, items[idx].describe(), why)
        for i in t.deferred:
            e.defer(items[i], min(2 ** max(0, items[i].dequeue_count - 1) * 0.5, 10.0))
        if not t.accepted:
            await e.delete_items([items[i] for i, _ in t.dropped])
            return
        now = utcnow()
        if state.history and now <= parse_time(state.history[-1]["Timestamp"]):
            now = parse_time(state.history[-1]["Timestamp"]) + timedelta(microseconds=1)
        rewind_ids = None
        rewrite = False
        if any(ev.get("EventType") == ET.ExecutionRewound for ev in t.accepted):
            state.history, rewind_ids = rewind_history(state.history)
            state.status = OrchestrationStatus.Running
            rewrite = True
        episode_events, reset = begin(state, t.accepted, now)
        # the SDK objects kept from this instance's last episode, if they match its committed history
        session = None if reset or rewrite else e.extended.take(
            instance_id, history_len=len(state.history), etag=state.etag, execution_id=state.execution_id)
        start = episode_events[1] if reset else state.started_event
        name = (start or {}).get("Name") or ""
        output = None
        known = True
        if needs_orchestrator(state, t.accepted) and start is not None:
            names = e.functions.orchestrator_names()
            known = any(n.lower() == name.lower() for n in names)
            if not known:
                output = OrchestratorOutput({}, unknown_function("orchestrator", name, names))
            else:
                output, session = await self._call(instance_id, state, episode_events, reset, start, session)
        replayer = session.replayer if session is not None and session.replayed == len(state.history) else None
        d = decide(state, episode_events, reset, output, now, store_inputs=e.opt.store_inputs,
                   known_orchestrator=known, rewind_ids=rewind_ids, missing_function=self._missing,
                   replayer=replayer, check=e.opt.session_check)
        for line in d.log:
            log.info("instance %s: %s", instance_id, line)
        await self._commit(state, d, items, t, rewrite)
        if session is not None and d.status not in TERMINAL_STATUSES and not rewrite:
            session.replayer, session.replayed = None, -1
            if d.replayer is not None:
                d.replayer.walk(d.new_events[len(episode_events):])    # what the checkpoint added: walked now
                session.replayer, session.replayed = d.replayer, len(state.history)
            e.extended.keep(instance_id, session, history_len=len(state.history), etag=state.etag,
                            execution_id=state.execution_id)

    async def _gate_starts(self, state: InstanceState, items: list[Item], *, row_read: bool) -> list[Item]:
        """One execution per instance id: a client's start counts only once its Pending row names it."""
        e = self.engine
        keep = []
        row, fresh_row = state.row, row_read and state.row is not None
        for item in items:
            event = item.event
            if event.get("EventType") != ET.ExecutionStarted:
                keep.append(item)
                continue
            args = dict(sender=item.sender, history_execution=state.execution_id, status=state.status,
                        row_checked=item.row_checked, deferrals=item.dequeue_count)
            gate = start_gate(event, row=row, **args)
            if gate.verdict != "accept" and not fresh_row:
                row, fresh_row = await e.hub.instances.get(state.instance_id), True   # never decide on a stale row
                state.row = row
                gate = start_gate(event, row=row, **args)
            if gate.verdict == "accept":
                keep.append(item)
            elif gate.verdict == "defer":
                log.debug("instance %s: %s waits: %s", state.instance_id, item.describe(), gate.reason)
                e.defer(item, min(0.2 * 2 ** item.dequeue_count, 5.0))
            else:
                log.warning("instance %s: dropped %s: %s", state.instance_id, item.describe(), gate.reason)
                await e.delete_items([item])
        return keep

    async def _call(self, instance_id, state, episode_events, reset, start, session: ExtendedSession | None):
        """The SDK's answer to this episode, and the session to keep for the next one (None: none)."""
        e = self.engine
        history = ([] if reset else state.history) + episode_events
        parent = ((start.get("ParentInstance") or {}).get("OrchestrationInstance") or {}).get("InstanceId")
        call = OrchestratorCall(
            instance_id, history, lambda: context_json(
                instance_id=instance_id, history=history, input_text=start.get("Input"), parent_instance_id=parent,
                is_replaying=bool(state.history) and not reset),
            session=session, want_session=e.extended.enabled, check=e.opt.session_check)
        try:
            answer = parse_output(await e.functions.run_orchestrator(start.get("Name"), call))
        except UserCodeError as err:
            state.failure_trace = err.traceback_text     # logged once, if the instance fails of it
            return parse_failure(err.message), None
        except ValueError as err:
            log.exception("orchestrator %s returned an unreadable answer", start.get("Name"))
            return parse_failure(str(err)), None
        if call.opened is not None:
            session = ExtendedSession(call.opened)
            e.extended.stats["opened"] += 1
        elif session is not None:
            e.extended.stats["continued"] += 1
        if session is not None and session.sdk.done:
            session = None              # returned, failed or continued as new
        if session is not None:
            session.fed = len(history)
        return answer, session

    def _missing(self, kind: str, name: str | None) -> str | None:
        functions = self.engine.functions
        if kind == "activity" and name != HTTP_ACTIVITY:   # the host runs call_http's built-in activity
            names = functions.activity_names()
            if not any(n.lower() == (name or "").lower() for n in names):
                return unknown_function("activity", name, names)
        if kind == "suborch":
            names = functions.orchestrator_names()
            if not any(n.lower() == (name or "").lower() for n in names):
                return unknown_function("orchestrator", name, names)
        return None

    # -- the checkpoint --------------------------------------------------------------------------
    async def _commit(self, state: InstanceState, d, items: list[Item], t, rewrite: bool) -> None:
        e = self.engine
        iid = state.instance_id
        episode_no = sum(1 for ev in state.history if ev.get("EventType") == ET.OrchestratorStarted) + 1
        sender = {"InstanceId": iid, "ExecutionId": d.execution_id}
        # 1. outbound messages, none of them acted on before the commit
        sent = await e.outbox.send(d.outbound, episode_no, sender)
        # 2. history: the commit point
        if d.reset_history:
            base, start_index = [], 0
        elif rewrite:
            base, start_index = state.history, 0
        else:
            base, start_index = state.history, len(state.history)
        to_write = (base + d.new_events) if rewrite else d.new_events
        try:
            if to_write:
                state.etag = await e.hub.history.append(iid, d.execution_id, to_write, start_index, state.etag,
                                                        known_rows=state.stored_rows)
                if state.stored_rows is not None:
                    state.stored_rows = max(state.stored_rows, start_index + len(to_write))
        except SplitBrainError as err:
            committed = getattr(err, "committed", False)
            if committed:
                # a retried batch whose first attempt committed: the checkpoint is durable, so is what it sent;
                # the instance is read again from storage and its messages are processed against that history
                e.outbox.release(sent)
            elif committed is None:
                # nobody can tell whether it committed: what it sent goes through the queues, where a host
                # acts on it only as far as the history says (a work item runs only if its task is there as sent)
                await e.outbox.release_to_queues(sent)
            else:
                await e.outbox.abort(sent)
            raise
        except BaseException:
            await e.outbox.abort(sent)
            raise
        before = state.status
        state.history = base + d.new_events
        state.execution_id = d.execution_id
        state.status = d.status
        # 3. the instance row, 4. the deletes of what this episode consumed: after the row when the instance is
        #    new, finished or its status changed; else at once (the row then only lags in times and custom status)
        row = dict(d.row)
        row["Worker"] = e.opt.worker_id
        final = d.status in TERMINAL_STATUSES
        consumed = [items[i] for i in t.consumed] + [items[i] for i, _ in t.dropped]
        if final:
            # a finished instance leaves memory (a late message or a rewind loads it again); its row is final
            # before its parent or a waiting client hears of it
            e.states.pop(iid, None)
            await e.rows.write(iid, row, final=True, history_etag=state.etag, after=consumed)
            e.outbox.release(sent)
            if d.status == OrchestrationStatus.Failed:
                # once, when it fails; one line: the host logged the user's traceback with the run that raised,
                # and what no run shows (non-determinism, an unknown function) is a warning
                head = str(row.get("Output") or "").splitlines()[0] if row.get("Output") else "failed"
                log.log(logging.INFO if state.failure_trace else logging.WARNING,
                        "Orchestration instance %s (%s) failed: %s", iid, state.name, head)
            else:
                log.info("instance %s (%s) %s", iid, state.name, d.status.name.lower())
        else:
            e.outbox.release(sent)
            changed = d.reset_history or rewrite or before != d.status
            await e.rows.write(iid, row, final=False, history_etag=state.etag, after=consumed if changed else [])
            if not changed and consumed:
                # awaited: the messages that arrive meanwhile make the next episode's batch (fewer, larger
                # episodes: measured faster for a stream of events, even with extended sessions)
                await e.delete_items(consumed)
