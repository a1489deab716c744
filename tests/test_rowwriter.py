"""The engine's instance-row writer: final states at once, running instances' changes held and merged, writes
conditional on the row's ETag, and the messages they make safe deleted only after the write."""
import asyncio

from durafunc.durable.rowwriter import RowWriter
from durafunc.storage.errors import StorageUnavailableError


class Table:
    """Stands in for the Instances table and the history sentinel: ETags, conditional writes, every write
    recorded."""

    def __init__(self, delay: float = 0.0):
        self.rows: dict[str, dict] = {}
        self.etags: dict[str, int] = {}
        self.sentinels: dict[str, str] = {}
        self.writes: list[tuple[str, dict]] = []
        self.deleted: list = []
        self.delay = delay
        self.fail = 0
        self.n = 0

    async def write(self, iid: str, fields: dict, etag) -> str | None:
        if self.fail:
            self.fail -= 1
            raise StorageUnavailableError("down")
        await asyncio.sleep(self.delay)
        current = self.etags.get(iid)
        if (etag is None and current is not None) or (etag is not None and str(current) != etag):
            return None
        self.writes.append((iid, dict(fields)))
        self.rows.setdefault(iid, {}).update(fields)
        self.n += 1
        self.etags[iid] = self.n
        return str(self.n)

    def outside_write(self, iid: str, fields: dict) -> None:
        """A client (or another host) changes the row."""
        self.rows.setdefault(iid, {}).update(fields)
        self.n += 1
        self.etags[iid] = self.n

    async def read_etag(self, iid: str):
        return None if iid not in self.etags else str(self.etags[iid])

    async def sentinel(self, iid: str):
        return self.sentinels.get(iid)

    async def done(self, items: list) -> None:
        self.deleted.extend(items)


def writer(t: Table, **kw) -> RowWriter:
    return RowWriter(t.write, t.read_etag, t.sentinel, t.done, **{"delay": 0.01, "refresh": 0, **kw})


async def test_running_changes_are_merged_into_one_write_and_the_deletes_wait_for_it():
    t = Table()
    w = writer(t, delay=0.05)
    await w.write("a", {"RuntimeStatus": "Running", "Name": "o"}, final=False, after=["m1"])
    await w.write("a", {"CustomStatus": '"step 1"'}, final=False, after=["m2"])
    assert t.writes == [] and t.deleted == []
    await asyncio.sleep(0.12)
    assert t.writes == [("a", {"RuntimeStatus": "Running", "Name": "o", "CustomStatus": '"step 1"'})]
    assert t.deleted == ["m1", "m2"]


async def test_a_final_state_is_written_at_once_with_what_was_held():
    t = Table()
    w = writer(t, delay=10)
    await w.write("a", {"RuntimeStatus": "Running", "Name": "o"}, final=False, after=["m1"])
    await w.write("a", {"RuntimeStatus": "Completed", "Output": "1"}, final=True, after=["m2"])
    assert t.writes == [("a", {"RuntimeStatus": "Completed", "Name": "o", "Output": "1"})]
    assert t.deleted == ["m1", "m2"]
    await asyncio.sleep(0.05)
    assert len(t.writes) == 1     # the held write's timer is gone


async def test_a_held_write_in_flight_never_lands_after_the_final_one():
    t = Table(delay=0.05)         # each write takes a while
    w = writer(t, delay=0.01)
    await w.write("a", {"RuntimeStatus": "Running"}, final=False)
    await asyncio.sleep(0.03)     # the held write is now in flight
    await w.write("a", {"RuntimeStatus": "Completed"}, final=True)
    assert [f["RuntimeStatus"] for _, f in t.writes] == ["Running", "Completed"]
    assert t.rows["a"]["RuntimeStatus"] == "Completed"


async def test_time_only_changes_are_skipped_within_the_refresh_interval():
    t = Table()
    w = writer(t, delay=0, refresh=60)
    await w.write("a", {"RuntimeStatus": "Running", "LastUpdatedTime": 1}, final=False, after=["m1"])
    await w.write("a", {"RuntimeStatus": "Running", "LastUpdatedTime": 2}, final=False, after=["m2"])
    await w.write("a", {"RuntimeStatus": "Running", "CustomStatus": "x", "LastUpdatedTime": 3}, final=False)
    assert [f.get("LastUpdatedTime") for _, f in t.writes] == [1, 3]
    assert t.deleted == ["m1", "m2"]      # what the skipped write would have said is in the row already


async def test_a_row_changed_by_a_client_is_written_again_over_its_new_etag():
    t = Table()
    t.sentinels["a"] = "h1"
    w = writer(t)
    w.know("a", None)
    await w.write("a", {"RuntimeStatus": "Running"}, final=True, history_etag="h1")
    t.outside_write("a", {"RuntimeStatus": "Pending"})          # e.g. a rewind's Pending
    await w.write("a", {"RuntimeStatus": "Completed"}, final=True, history_etag="h1", after=["m"])
    assert t.rows["a"]["RuntimeStatus"] == "Completed" and t.deleted == ["m"]
    assert w.conflicts == 0


async def test_a_write_behind_a_newer_checkpoint_is_dropped_but_its_messages_still_go():
    t = Table()
    t.sentinels["a"] = "h1"
    w = writer(t)
    w.know("a", None)
    await w.write("a", {"RuntimeStatus": "Running"}, final=True, history_etag="h1")
    # another host commits on top of this host's history and writes the row
    t.sentinels["a"] = "h2"
    t.outside_write("a", {"RuntimeStatus": "Completed"})
    await w.write("a", {"RuntimeStatus": "Running", "CustomStatus": "late"}, final=True, history_etag="h1",
                  after=["m"])
    assert t.rows["a"] == {"RuntimeStatus": "Completed"}
    assert w.conflicts == 1 and t.deleted == ["m"]


async def test_an_insert_that_loses_to_another_insert_merges_over_it():
    t = Table()
    t.sentinels["a"] = "h1"
    w = writer(t)
    w.know("a", None)                                          # believed missing
    t.outside_write("a", {"Name": "child", "RuntimeStatus": "Pending"})
    await w.write("a", {"RuntimeStatus": "Running"}, final=True, history_etag="h1")
    assert t.rows["a"] == {"Name": "child", "RuntimeStatus": "Running"}


async def test_a_final_write_during_an_outage_raises_and_is_written_when_storage_is_back():
    t = Table()
    t.fail = 1
    w = writer(t)
    try:
        await w.write("a", {"RuntimeStatus": "Completed"}, final=True, after=["m"])
        raise AssertionError("the outage should have been raised")
    except StorageUnavailableError:
        pass
    assert t.writes == [] and t.deleted == []      # nothing is deleted before its row is written
    await asyncio.sleep(1.2)      # retried after at least a second
    assert t.writes == [("a", {"RuntimeStatus": "Completed"})] and t.deleted == ["m"]


async def test_flush_all_writes_what_is_held():
    t = Table()
    w = writer(t, delay=10)
    await w.write("a", {"RuntimeStatus": "Running"}, final=False, after=["m"])
    assert await w.flush_all() == []
    assert t.writes == [("a", {"RuntimeStatus": "Running"})] and t.deleted == ["m"]


async def test_settle_writes_a_held_change_and_waits_for_one_in_flight_before_the_row_is_read():
    """A host about to read a row to check it against the history first lets its own held write land: else
    that write (of an older checkpoint) could land after a repair and put the row behind its history again."""
    t = Table(delay=0.05)
    w = writer(t, delay=10)
    await w.write("a", {"RuntimeStatus": "Running"}, final=False, after=["m1"])
    assert w.holds("a") and t.writes == []
    await w.settle("a")
    assert t.writes == [("a", {"RuntimeStatus": "Running"})] and t.deleted == ["m1"] and not w.holds("a")
    flight = asyncio.ensure_future(w.write("b", {"RuntimeStatus": "Running"}, final=True))
    await asyncio.sleep(0.01)
    assert w.writing("b")
    await w.settle("b")                       # waits for the write in flight
    assert ("b", {"RuntimeStatus": "Running"}) in t.writes and not w.writing("b")
    await flight
    t.fail = 1
    await w.write("c", {"RuntimeStatus": "Running"}, final=False)
    try:
        await w.settle("c")
    except StorageUnavailableError:
        pass
    else:
        raise AssertionError("settle must say the write did not happen")
    assert w.holds("c")                       # kept, written later
