"""Row and history in agreement (pure): which starts open an execution, and the row a history implies."""
from datetime import datetime, timedelta, timezone

from durafunc.durable import events as ev
from durafunc.durable.reconcile import MAX_ROWLESS_START_DEFERRALS, row_repair, start_gate
from durafunc.storage.instances import InstanceRow
from durafunc.storage.schema import OrchestrationStatus as S, format_time

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def row(status, execution="e1", output=None, created=T0):
    return InstanceRow(instance_id="i", name="o", runtime_status=status, execution_id=execution, output=output,
                       created_time=created)


def started(execution="e1", parent=None, at=T0):
    return ev.execution_started(at, instance_id="i", execution_id=execution, name="o", input='"x"', parent=parent)


def gate(event, **kw):
    args = dict(sender=None, row=None, history_execution=None, status=None, row_checked=False)
    return start_gate(event, **{**args, **kw}).verdict


def test_a_client_start_counts_only_when_its_pending_row_names_it():
    assert gate(started("e1"), row=row(S.Pending, "e1")) == "accept"
    assert gate(started("e2"), row=row(S.Pending, "e1")) == "drop"        # another start won the row
    assert gate(started("e1"), row=row(S.Terminated, "e1")) == "drop"     # terminated before it started
    assert gate(started("e1"), row=None) == "defer"                       # the client is writing the row
    assert gate(started("e1"), row=None, deferrals=MAX_ROWLESS_START_DEFERRALS) == "drop"
    assert gate(started("e1"), row=None, row_checked=True) == "accept"    # this host just wrote it


def test_sub_orchestrations_and_continue_as_new_need_no_row():
    parent = {"Name": "p", "TaskScheduleId": 0, "OrchestrationInstance": {"InstanceId": "p", "ExecutionId": "x"}}
    assert gate(started("c1", parent=parent)) == "accept"
    sender = {"InstanceId": "i", "ExecutionId": "e1"}
    assert gate(started("e2"), sender=sender, history_execution="e1", status=S.ContinuedAsNew,
                row=row(S.ContinuedAsNew, "e1")) == "accept"
    # a stray start while the instance continues as new is not the continuation
    assert gate(started("e3"), sender=None, history_execution="e1", status=S.ContinuedAsNew,
                row=row(S.ContinuedAsNew, "e1")) == "drop"


def history(*extra, execution="e1"):
    return [ev.orchestrator_started(T0), started(execution), *extra]


def test_a_row_behind_its_history_is_repaired():
    h = history(ev.task_scheduled(T0, 0, "a", None))
    assert row_repair(h, "e1", row(S.Running)) is None                    # in agreement
    fix = row_repair(h, "e1", row(S.Pending))                             # died after the first commit
    assert fix["RuntimeStatus"] == "Running"
    fix = row_repair(h, "e1", None)                                       # a child whose row was never written
    assert fix["RuntimeStatus"] == "Running" and fix["Name"] == "o" and fix["ExecutionId"] == "e1"
    assert fix["Input"] == '"x"' and fix["CreatedTime"] == T0
    done = h + [ev.execution_completed(T0 + timedelta(seconds=1), 1, S.Completed, '"r"')]
    fix = row_repair(done, "e1", row(S.Running))
    assert fix["RuntimeStatus"] == "Completed" and fix["Output"] == '"r"'
    assert fix["CompletedTime"] == T0 + timedelta(seconds=1)
    assert row_repair(done, "e1", row(S.Completed, output='"r"')) is None


def test_a_row_ahead_of_its_history_is_left_alone():
    done = history(ev.execution_completed(T0, 0, S.Completed, '"r"'))
    newer = row(S.Pending, "e2", created=T0 + timedelta(seconds=5))      # the next generation waits to start
    assert row_repair(done, "e1", newer) is None
    failed = history(ev.execution_completed(T0, 0, S.Failed, "boom"))
    assert row_repair(failed, "e1", row(S.Pending, "e1")) is None         # a rewind was asked for
    assert row_repair([], None, row(S.Pending)) is None                   # nothing committed yet


def test_suspended_and_terminated_histories():
    h = history(ev.execution_suspended(T0, "wait"))
    fix = row_repair(h, "e1", row(S.Running))
    assert fix["RuntimeStatus"] == "Suspended" and fix["Output"] == "wait"
    t = history(ev.execution_completed(T0, -1, S.Terminated, "stop"))
    fix = row_repair(t, "e1", row(S.Running))
    assert fix["RuntimeStatus"] == "Terminated" and fix["Output"] == "stop"
    assert format_time(fix["CompletedTime"]) == format_time(T0)
