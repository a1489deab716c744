"""Extended sessions: orchestrations stay loaded between episodes and the SDK gets only the new events.

Pure: the session cache's rules (storage is the truth: a session is used only for exactly the history it was kept
for) and the SDK driving (an incremental episode answers as the full replay of the same history does). With
Azurite: the engine continues sessions, the check mode compares every incremental episode with a full replay, and
catches an orchestrator that behaves differently when replayed.
"""
from __future__ import annotations

import asyncio
import json
import logging

import azure.durable_functions as df
import pytest

import engine_apps
from durafunc.durable import sdk_session
from durafunc.durable.extended import ExtendedSession, ExtendedSessions, OrchestratorCall
from durafunc.durable.protocol import context_json
from durafunc.durable.worker import FunctionTable
from durafunc.storage.schema import OrchestrationStatus as S
from test_engine import output, own_engine, run


# -- the cache ------------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def kept(cache, iid="a", n=5, etag="e1", ex="x1"):
    s = ExtendedSession(sdk=object(), fed=n)
    cache.keep(iid, s, history_len=n, etag=etag, execution_id=ex)
    return s


def test_a_session_serves_only_the_history_it_was_kept_for():
    for changed in ({"history_len": 6}, {"etag": "e2"}, {"execution_id": "x2"}):
        cache = ExtendedSessions(clock=Clock())
        kept(cache)
        args = {"history_len": 5, "etag": "e1", "execution_id": "x1", **changed}
        assert cache.take("a", **args) is None, changed           # storage moved on: full replay
        assert cache.take("a", history_len=5, etag="e1", execution_id="x1") is None   # and it is gone
    cache = ExtendedSessions(clock=Clock())
    s = kept(cache)
    assert cache.take("a", history_len=5, etag="e1", execution_id="x1") is s
    assert cache.take("a", history_len=5, etag="e1", execution_id="x1") is None     # an episode owns it now


def test_idle_sessions_and_sessions_beyond_the_bound_are_dropped():
    clock = Clock()
    cache = ExtendedSessions(idle_seconds=30, max_sessions=2, clock=clock)
    kept(cache, "a")
    clock.t = 10
    kept(cache, "b")
    clock.t = 31
    cache.sweep()
    assert len(cache) == 1 and cache.stats["idle"] == 1          # a: idle for 31 s
    kept(cache, "c")
    kept(cache, "d")
    assert len(cache) == 2 and cache.stats["bound"] == 1         # b: the least recently used
    assert cache.take("c", history_len=5, etag="e1", execution_id="x1") is not None
    cache.drop_where(lambda iid: iid == "d")
    assert len(cache) == 0
    off = ExtendedSessions(enabled=False)
    kept(off)
    assert len(off) == 0


# -- the SDK, without storage -----------------------------------------------------------------------------------

T0 = "2026-12-01T10:00:00.000000Z"


def at(seconds: int) -> str:
    return f"2026-12-01T10:00:{seconds:02d}.000000Z"


def started(s):
    return {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": at(s)}


def completed(s):
    return {"EventType": 13, "EventId": -1, "IsPlayed": False, "Timestamp": at(s)}


def scheduled(i, s):
    return {"EventType": 4, "EventId": i, "IsPlayed": False, "Timestamp": at(s), "Name": "Hello"}


def task_done(i, s, result):
    return {"EventType": 5, "EventId": -1, "IsPlayed": False, "Timestamp": at(s), "TaskScheduledId": i,
            "Result": json.dumps(result)}


SEEN = []


def watched_chain(ctx: df.DurableOrchestrationContext):
    """A chain that reports what it sees (is_replaying, the time) through its custom status and SEEN."""
    out = []
    for city in ("Tokyo", "Seattle", "London"):
        out.append((yield ctx.call_activity("Hello", city)))
        SEEN.append((ctx.is_replaying, ctx.current_utc_datetime.isoformat()))
        ctx.set_custom_status({"n": len(out), "at": ctx.current_utc_datetime.isoformat()})
    return out


def body(history):
    return context_json(instance_id="i1", history=history, input_text=None, parent_instance_id=None,
                        is_replaying=len(history) > 2)


def episodes():
    """The chain's history, episode by episode: (events delivered, events the engine appends after the SDK)."""
    start = {"EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": T0, "Name": "watched_chain", "Version": "",
             "OrchestrationInstance": {"InstanceId": "i1", "ExecutionId": "x1"}}
    yield [started(0), start], [scheduled(0, 1), completed(1)]
    for i, city in enumerate(("Tokyo", "Seattle", "London")):
        s = 2 + 2 * i
        yield [started(s), task_done(i, s, f"Hello {city}!")], ([scheduled(i + 1, s + 1), completed(s + 1)]
                                                                if i < 2 else [])


def test_an_incremental_episode_answers_as_the_full_replay():
    entry = df.Orchestrator.create(watched_chain)
    assert sdk_session.supports(entry)
    history: list[dict] = []
    sdk = None
    fed = 0
    for delivered, appended in episodes():
        history += delivered
        SEEN.clear()
        full = entry(body(history))           # the SDK's own handle, the whole history
        seen_full = list(SEEN)
        SEEN.clear()
        if sdk is None:
            answer, sdk = sdk_session.SdkOrchestration.open(entry, body(history))
        else:
            answer = sdk.advance(history[fed:])
        assert json.loads(answer) == json.loads(full)
        assert SEEN == seen_full[len(seen_full) - len(SEEN):]   # what user code saw in the new part
        assert all(not replaying for replaying, _ in SEEN)        # new events: not replaying
        fed = len(history)
        # as the engine commits an episode: delivered events played (not OrchestratorStarted), then its own
        history[fed - len(delivered):] = [e if e["EventType"] == 12 else {**e, "IsPlayed": True} for e in delivered]
        history += appended
    assert json.loads(answer)["isDone"] and json.loads(answer)["output"] == ["Hello Tokyo!", "Hello Seattle!",
                                                                                "Hello London!"]


def test_entry_points_that_are_not_the_sdk_handle_replay_in_full():
    def custom(context):          # a v1 main that is not df.Orchestrator.create(...)
        return df.Orchestrator.create(watched_chain)(context)
    assert not sdk_session.supports(custom)
    assert sdk_session.user_function(df.Orchestrator.create(watched_chain)) is watched_chain


def test_the_check_names_what_differs():
    a = json.dumps({"isDone": False, "actions": [[{"actionType": 0, "functionName": "A"}]], "output": None})
    b = json.dumps({"isDone": False, "actions": [[{"actionType": 0, "functionName": "B"}]], "output": None})
    assert sdk_session.compare(a, a, [("is_replaying", False)], [("is_replaying", True), ("is_replaying", False)]) \
        is None
    assert "actions" in sdk_session.compare(a, b, [], [])
    assert "saw" in sdk_session.compare(a, a, [("is_replaying", True)], [("is_replaying", False)])
    assert "full replay" in sdk_session.compare(ValueError("x"), a, [], [])


# -- the engine, with Azurite --------------------------------------------------------------------------------

async def test_the_engine_continues_sessions_in_check_mode(connection_string, hub_name):
    async with own_engine(connection_string, hub_name, engine_apps.function_table()) as (_, engine, client):
        engine.opt.session_check = True
        row = await run(client, "Chain")
        assert output(row) == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        fan = await run(client, "Fan", 5)
        assert fan.runtime_status == S.Completed
        stats = engine.extended.stats
        assert stats["opened"] >= 2 and stats["continued"] >= 3, stats
        assert len(engine.extended) == 0          # finished instances keep no session


async def test_without_sessions_every_episode_replays_in_full(connection_string, hub_name):
    async with own_engine(connection_string, hub_name, engine_apps.function_table()) as (_, engine, client):
        engine.extended.enabled = False
        row = await run(client, "Chain")
        assert output(row) == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        assert engine.extended.stats["continued"] == 0 and engine.extended.stats["opened"] == 0


CALLS = {"n": 0}


def two_faced(ctx):
    """Not deterministic: the activity's input depends on how often this function was called before."""
    CALLS["n"] += 1
    first = yield ctx.call_activity("Hello", "a")
    second = yield ctx.call_activity("Hello", f"call {CALLS['n']}")
    return [first, second]


async def test_the_check_catches_an_episode_that_differs_from_a_full_replay(connection_string, hub_name, caplog):
    table = FunctionTable({"TwoFaced": df.Orchestrator.create(two_faced)}, engine_apps.ACTIVITIES)
    async with own_engine(connection_string, hub_name, table) as (_, engine, client):
        engine.opt.session_check = True
        caplog.set_level(logging.ERROR, logger="durafunc")
        await client.start_new("TwoFaced", None, None)
        for _ in range(200):
            said = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
            if any("differs from a full replay" in m for m in said):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the check did not report the difference")
        line = next(m for m in said if "differs from a full replay" in m)
        assert "call 1" in line and "call 2" in line        # the two inputs of the second activity
