"""The engine's instance-row writer: final states at once, running instances' changes held and merged."""
import asyncio

from durafunc.durable.rowwriter import RowWriter
from durafunc.storage.errors import StorageUnavailableError


class Rows:
    """Stands in for the Instances table: merges fields per instance and records every write."""

    def __init__(self, delay: float = 0.0):
        self.rows: dict[str, dict] = {}
        self.writes: list[tuple[str, dict]] = []
        self.delay = delay
        self.fail = 0

    async def merge(self, iid: str, fields: dict) -> None:
        if self.fail:
            self.fail -= 1
            raise StorageUnavailableError("down")
        await asyncio.sleep(self.delay)
        self.writes.append((iid, dict(fields)))
        self.rows.setdefault(iid, {}).update(fields)


async def test_running_changes_are_merged_into_one_write():
    t = Rows()
    w = RowWriter(t.merge, delay=0.05, refresh=0)
    await w.write("a", {"RuntimeStatus": "Running", "Name": "o"}, final=False)
    await w.write("a", {"CustomStatus": '"step 1"'}, final=False)
    assert t.writes == []
    await asyncio.sleep(0.12)
    assert t.writes == [("a", {"RuntimeStatus": "Running", "Name": "o", "CustomStatus": '"step 1"'})]


async def test_a_final_state_is_written_at_once_with_what_was_held():
    t = Rows()
    w = RowWriter(t.merge, delay=10, refresh=0)
    await w.write("a", {"RuntimeStatus": "Running", "Name": "o"}, final=False)
    await w.write("a", {"RuntimeStatus": "Completed", "Output": "1"}, final=True)
    assert t.writes == [("a", {"RuntimeStatus": "Completed", "Name": "o", "Output": "1"})]
    await asyncio.sleep(0.05)
    assert len(t.writes) == 1     # the held write's timer is gone


async def test_a_held_write_in_flight_never_lands_after_the_final_one():
    t = Rows(delay=0.05)          # each write takes a while
    w = RowWriter(t.merge, delay=0.01, refresh=0)
    await w.write("a", {"RuntimeStatus": "Running"}, final=False)
    await asyncio.sleep(0.03)     # the held write is now in flight
    await w.write("a", {"RuntimeStatus": "Completed"}, final=True)
    assert [f["RuntimeStatus"] for _, f in t.writes] == ["Running", "Completed"]
    assert t.rows["a"]["RuntimeStatus"] == "Completed"


async def test_time_only_changes_are_skipped_within_the_refresh_interval():
    t = Rows()
    w = RowWriter(t.merge, delay=0, refresh=60)
    await w.write("a", {"RuntimeStatus": "Running", "LastUpdatedTime": 1}, final=False)
    await w.write("a", {"RuntimeStatus": "Running", "LastUpdatedTime": 2}, final=False)
    await w.write("a", {"RuntimeStatus": "Running", "CustomStatus": "x", "LastUpdatedTime": 3}, final=False)
    assert [f.get("LastUpdatedTime") for _, f in t.writes] == [1, 3]


async def test_forget_drops_held_changes_and_flush_all_writes_the_rest():
    t = Rows()
    w = RowWriter(t.merge, delay=10, refresh=0)
    await w.write("gone", {"RuntimeStatus": "Running"}, final=False)
    await w.write("kept", {"RuntimeStatus": "Running"}, final=False)
    w.forget(["gone"])
    await w.flush_all()
    assert t.writes == [("kept", {"RuntimeStatus": "Running"})]


async def test_a_held_write_of_an_instance_taken_by_another_host_is_dropped():
    t = Rows()
    mine = {"a": False}
    w = RowWriter(t.merge, delay=0.01, refresh=0, still_mine=lambda iid: mine.get(iid, True))
    await w.write("a", {"RuntimeStatus": "Running"}, final=False)
    await asyncio.sleep(0.05)
    assert t.writes == []


async def test_a_final_write_during_an_outage_raises_and_is_written_when_storage_is_back():
    t = Rows()
    t.fail = 1
    w = RowWriter(t.merge, delay=0.01, refresh=0)
    try:
        await w.write("a", {"RuntimeStatus": "Completed"}, final=True)
        raise AssertionError("the outage should have been raised")
    except StorageUnavailableError:
        pass
    assert t.writes == []
    await asyncio.sleep(1.2)      # retried after at least a second
    assert t.writes == [("a", {"RuntimeStatus": "Completed"})]
