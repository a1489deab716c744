"""Task hub resource names, FNV-1a partitioning and PartitionKey escaping (storage-layout.md §1, §2.1)."""
import pytest

from durafunc.storage.names import (TaskHubNames, escape_key, fnv1a_32, history_row_key, partition_index,
                                    unescape_key)


@pytest.mark.parametrize("text, hash_, index", [
    ("", 0x811C9DC5, 1),
    ("a", 0xE40C292C, 0),
    ("abc", 0x1A47E90B, 3),
    ("myinstance", 0xC06A6290, 0),
    ("instance-1", 0xFA923A94, 0),
    ("@counter@key1", 0x9A41B811, 1),
    ("Héllo", 0x9B7EF020, 0),
])
def test_fnv1a_vectors(text, hash_, index):
    assert fnv1a_32(text) == hash_
    assert partition_index(text, 4) == index


def test_names_for_a_hub():
    n = TaskHubNames("MyHub")
    assert n.history_table == "MyHubHistory"
    assert n.instances_table == "MyHubInstances"
    assert n.control_queues == ["myhub-control-00", "myhub-control-01", "myhub-control-02", "myhub-control-03"]
    assert n.control_queue(2) == "myhub-control-02"
    assert n.work_items_queue == "myhub-workitems"
    assert n.leases_container == "myhub-leases"
    assert n.large_messages_container == "myhub-largemessages"
    assert n.app_lease_container == "myhub-applease"
    assert n.control_queue_for("abc") == "myhub-control-03"
    assert TaskHubNames("X1x", 16).control_queues[-1] == "x1x-control-15"


@pytest.mark.parametrize("count", [0, 17])
def test_partition_count_range(count):
    with pytest.raises(ValueError, match="1..16"):
        TaskHubNames("MyHub", count)


@pytest.mark.parametrize("raw, key", [
    ("plain-id_1", "plain-id_1"),
    ("a^b", "a^^b"),
    ("a/b\\c#d?e", "a^0b^1c^2d^3e"),
    ("tab\there", "tab^\u00c9here"),
    ("del\x7f", "del^\u013f"),
    ("nul\x00c1\x9f", "nul^\u00c0c1^\u015f"),
    ("@counter@key1", "@counter@key1"),
    ("Héllo", "Héllo"),
])
def test_escape_examples_round_trip(raw, key):
    assert escape_key(raw) == key
    assert unescape_key(key) == raw


def test_escape_is_not_idempotent():
    assert escape_key(escape_key("a/b")) == "a^^0b"
    assert unescape_key(unescape_key(escape_key(escape_key("a/b")))) == "a/b"


def test_history_row_key():
    assert history_row_key(0) == "0000000000000000"
    assert history_row_key(10) == "000000000000000A"
    assert history_row_key(255) == "00000000000000FF"
    assert history_row_key(10) < "sentinel"
