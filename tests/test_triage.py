"""Triage of delivered messages (pure): duplicates, early and stale messages, suspends and resumes in order."""
from datetime import datetime, timedelta, timezone

from durafunc.durable import events as ev
from durafunc.durable.episode import InstanceState, decide, triage
from durafunc.storage.schema import EventType as ET, OrchestrationStatus as S

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(*extra, status=S.Running) -> InstanceState:
    started = ev.execution_started(T0, instance_id="i", execution_id="e1", name="o", input=None)
    history = [ev.orchestrator_started(T0), started, *extra, ev.orchestrator_completed(T0)]
    return InstanceState("i", "e1", history, status=status)


def msg(event, execution=None):
    return ev.task_message(event, "i", execution)


def test_completions_are_matched_to_their_scheduling_event():
    state = running(ev.task_scheduled(T0, 0, "a", None), ev.timer_created(T0, 1, T0))
    t = triage(state, [msg(ev.task_completed(at(1), 0, "1")),     # answers task 0
                       msg(ev.task_completed(at(1), 0, "1")),     # again: a duplicate
                       msg(ev.task_completed(at(1), 1, "1")),     # task 1 is a timer: not answered this way
                       msg(ev.task_completed(at(1), 5, "1"))])    # not scheduled yet: later
    assert t.consumed == [0] and [i for i, _ in t.dropped] == [1, 2] and t.deferred == [3]


def test_a_completion_that_arrives_with_its_executions_start_waits_for_its_task():
    """A parent's start is seen again after a crash together with a child's completion: the completion is for
    the execution starting now (its task will be scheduled by this episode), so it waits; one for an older
    execution is dropped."""
    state = InstanceState("i")
    start = ev.execution_started(T0, instance_id="i", execution_id="e2", name="o", input=None)
    t = triage(state, [msg(start, "e2"),
                       msg(ev.sub_orchestration_completed(at(1), 0, "1"), "e2"),
                       msg(ev.sub_orchestration_completed(at(1), 0, "1"), "e1")])
    assert t.consumed == [0] and t.deferred == [1] and [i for i, _ in t.dropped] == [2]


def test_a_suspend_and_a_resume_in_one_batch_leave_the_instance_running():
    state = running()
    events = [ev.execution_suspended(at(1), "s"), ev.execution_resumed(at(2), "r")]
    t = triage(state, [msg(e) for e in events])
    assert t.consumed == [0, 1]
    d = decide(state, [ev.orchestrator_started(at(3))] + t.accepted, False, None, at(3))
    assert d.status == S.Running and d.row["Output"] == "r"


def test_a_resume_processed_before_an_older_suspend_makes_that_suspend_stale():
    state = running()
    resumed = triage(state, [msg(ev.execution_resumed(at(2), "r"))])
    assert resumed.consumed == [0]                               # recorded although not suspended
    state.history[-1:-1] = resumed.accepted
    late = triage(state, [msg(ev.execution_suspended(at(1), "s"))])
    assert late.consumed == [] and late.dropped and "resume sent after" in late.dropped[0][1]
    newer = triage(state, [msg(ev.execution_suspended(at(3), "s2"))])
    assert newer.consumed == [0]


def test_while_suspended_events_wait_and_a_terminate_does_not():
    state = running(ev.execution_suspended(at(1), "s"), status=S.Suspended)
    t = triage(state, [msg(ev.event_raised(at(2), "Go", "1")), msg(ev.execution_suspended(at(3), "again")),
                       msg(ev.execution_terminated(at(4), "stop"))])
    assert t.deferred == [0] and [i for i, _ in t.dropped] == [1] and t.consumed == [2]
    t = triage(state, [msg(ev.execution_resumed(at(5), "r")), msg(ev.event_raised(at(6), "Go", "1"))])
    assert t.consumed == [0, 1]
    assert [e["EventType"] for e in t.accepted] == [ET.ExecutionResumed, ET.EventRaised]


# -- work items received from the queue (activities.verdict) ------------------------------------------------
def test_a_work_item_runs_only_if_its_checkpoint_is_the_committed_one():
    from durafunc.durable.activities import ANSWERED, EARLY, ORPHAN, RUN, verdict
    from durafunc.storage.history import TaskRecord

    def rec(*scheduled, answered=False, ended=False, current="e1"):
        return TaskRecord(current_execution=current, scheduled=list(scheduled), answered=answered, ended=ended)
    mine, other = ("TaskScheduled", at(1)), ("TaskScheduled", at(2))
    assert verdict("e1", at(1), rec(mine)) == RUN                       # committed as sent
    assert verdict("e1", at(1), rec(mine, answered=True)) == ANSWERED   # its host died before the delete
    assert verdict("e1", at(1), rec(other)) == ORPHAN                   # a replay scheduled the task again
    assert verdict("e1", at(1), rec(other, answered=True)) == ANSWERED
    assert verdict("e1", at(1), rec(("TimerCreated", at(1)))) == ORPHAN  # the id went to another kind of task
    assert verdict("e1", at(1), rec(mine, ended=True)) == RUN           # a fire-and-forget activity, cut off
    assert verdict("e1", at(1), rec(ended=True)) == ORPHAN              # the execution ended without it
    assert verdict("e1", at(1), rec()) == EARLY                         # its commit may still be under way
    assert verdict("e1", at(1), rec(current=None)) == EARLY             # no history yet: the start replays
    assert verdict("E1", at(1), rec()) == EARLY
    assert verdict("e0", at(1), rec(current="e1")) == RUN               # an older execution: cannot tell
    assert verdict("e1", None, rec(other)) == RUN                       # no timestamp to compare: as before
