"""An in-memory driver for the pure engine logic: real SDK orchestrators, no storage.

Messages are delivered to instances in order; activities run inline; timers fire when reached.
Used by the unit tests of replay/episode; the real engine does the same with queues and tables.
"""
from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timedelta, timezone

import azure.functions as func

from durafunc.durable import events as ev
from durafunc.durable.activities import activity_input
from durafunc.durable.episode import InstanceState, begin, decide, new_execution_id, rewind_history, triage
from durafunc.durable.protocol import context_json, parse_failure, parse_output
from durafunc.storage.schema import EventType, OrchestrationStatus


class MemoryHub:
    def __init__(self, orchestrators: dict, activities: dict):
        self.orchestrators = {k.lower(): v for k, v in orchestrators.items()}
        self.activities = {k.lower(): v for k, v in activities.items()}
        self.states: dict[str, InstanceState] = {}
        self.rows: dict[str, dict] = {}
        self.queue: deque = deque()
        self.timers: list = []
        self.clock = datetime(2024, 1, 1, tzinfo=timezone.utc)
        self.activity_calls: list = []
        self.episodes = 0
        self.replayers: dict = {}      # instance id -> (Replayer, history length it has walked)
        self.incremental = 0           # episodes decided by an incremental host-side replay (each one checked)

    def now(self):
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def start(self, name, instance_id, input_value=None):
        exec_id = new_execution_id()
        inp = None if input_value is None else json.dumps(json.dumps(input_value))
        started = ev.execution_started(self.now(), instance_id=instance_id, execution_id=exec_id, name=name,
                                       input=inp)
        self.rows[instance_id] = {"RuntimeStatus": "Pending"}
        self.states.setdefault(instance_id, InstanceState(instance_id, status=OrchestrationStatus.Pending))
        self.queue.append((instance_id, ev.task_message(started, instance_id, exec_id)))

    def raise_event(self, instance_id, name, data):
        e = ev.event_raised(self.now(), name, json.dumps(data))
        self.queue.append((instance_id, ev.task_message(e, instance_id, None)))

    def send(self, instance_id, event):
        self.queue.append((instance_id, ev.task_message(event, instance_id, None)))

    def run(self, max_steps=10000):
        steps = 0
        while steps < max_steps:
            steps += 1
            if not self.queue:
                if not self.timers:
                    return
                self.timers.sort(key=lambda t: t[0])
                fire_at, inst, msg = self.timers.pop(0)
                if fire_at > self.clock:
                    self.clock = fire_at
                self.queue.append((inst, msg))
            # batch all queued messages of the first instance
            inst = self.queue[0][0]
            batch = [m for (i, m) in self.queue if i == inst]
            self.queue = deque((i, m) for (i, m) in self.queue if i != inst)
            self.episode(inst, batch)

    def episode(self, instance_id, messages):
        state = self.states.setdefault(instance_id, InstanceState(instance_id))
        t = triage(state, messages)
        for i in t.deferred:
            self.queue.append((instance_id, messages[i]))
        if not t.accepted:
            return
        self.episodes += 1
        now = self.now()
        rewind_ids = None
        if any(e["EventType"] == EventType.ExecutionRewound for e in t.accepted):
            state.history, rewind_ids = rewind_history(state.history)
        episode_events, reset = begin(state, t.accepted, now)
        start = episode_events[1] if reset else state.started_event
        output = None
        kinds = {e["EventType"] for e in t.accepted}
        if EventType.ExecutionTerminated not in kinds and kinds - {EventType.ExecutionSuspended, EventType.ExecutionResumed}:
            history = ([] if reset else state.history) + episode_events
            body = context_json(instance_id=instance_id, history=history, input_text=start.get("Input"),
                                parent_instance_id=((start.get("ParentInstance") or {}).get("OrchestrationInstance") or {}).get("InstanceId"),
                                is_replaying=False)
            fn = self.orchestrators[start["Name"].lower()]
            try:
                output = parse_output(fn(func.OrchestrationContext(body)))
            except Exception as e:  # noqa: BLE001
                output = parse_failure(str(e))
        # the host-side replay goes on from the last episode's (as the engine's extended sessions do), checked
        # against a full one every episode
        kept = self.replayers.pop(instance_id, None)
        replayer = kept[0] if kept and kept[1] == len(state.history) and not reset and rewind_ids is None else None
        d = decide(state, episode_events, reset, output, now, rewind_ids=rewind_ids, replayer=replayer,
                   check=True)
        if d.replayer is not None and rewind_ids is None:
            d.replayer.walk(d.new_events[len(episode_events):])
            self.replayers[instance_id] = (d.replayer, (0 if d.reset_history else len(state.history))
                                           + len(d.new_events))
            self.incremental += replayer is not None
        if d.reset_history:
            state.history = []
            state.execution_id = d.execution_id
        state.history = state.history + d.new_events
        state.status = d.status
        self.rows.setdefault(instance_id, {}).update(d.row)
        for o in d.outbound:
            if o.to_work_items:
                self.run_activity(o)
            elif o.delay > 0:
                self.timers.append((self.clock + timedelta(seconds=o.delay), o.instance_id, o.message))
            else:
                self.queue.append((o.instance_id, o.message))

    def run_activity(self, o):
        e = o.message["Event"]
        name = e["Name"]
        text = activity_input(e["Input"])
        arg = None if text is None else json.loads(text)
        self.activity_calls.append((name, arg))
        fn = self.activities[name.lower()]
        inst = o.message["OrchestrationInstance"]
        try:
            result = fn(arg)
            done = ev.task_completed(self.now(), e["EventId"], json.dumps(result))
        except Exception as exc:  # noqa: BLE001
            done = ev.task_failed(self.now(), e["EventId"],
                                  f"Activity function '{name}' failed:  {type(exc).__name__}: {exc}", "{}")
        self.queue.append((inst["InstanceId"], ev.task_message(done, inst["InstanceId"], inst["ExecutionId"])))

    def status(self, instance_id):
        return self.rows[instance_id].get("RuntimeStatus")

    def output(self, instance_id):
        out = self.rows[instance_id].get("Output")
        return None if out is None else json.loads(out) if self.status(instance_id) == "Completed" else out
