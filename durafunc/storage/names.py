"""Names of a task hub's tables, queues and containers, instance -> partition hashing, and key escaping."""
from __future__ import annotations

MAX_PARTITIONS = 16

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193

# KeySanitation.EscapePartitionKey: '^' is the escape character.
_ESCAPES = {"^": "^^", "/": "^0", "\\": "^1", "#": "^2", "?": "^3"}
_UNESCAPES = {"^": "^", "0": "/", "1": "\\", "2": "#", "3": "?"}
_CONTROL_SHIFT = 0xC0


class TaskHubNames:
    """Resource names for task hub `hub` (tables keep the case, queues/containers are lower-case)."""

    def __init__(self, hub: str, partition_count: int = 4):
        if not 1 <= partition_count <= MAX_PARTITIONS:
            raise ValueError(f"partition count must be 1..{MAX_PARTITIONS}, got {partition_count}")
        self.hub = hub
        self.partition_count = partition_count
        low = hub.lower()
        self.history_table = f"{hub}History"
        self.instances_table = f"{hub}Instances"
        self.partitions_table = f"{hub}Partitions"
        self.control_queues = [f"{low}-control-{i:02d}" for i in range(partition_count)]
        self.work_items_queue = f"{low}-workitems"
        self.leases_container = f"{low}-leases"
        self.large_messages_container = f"{low}-largemessages"
        self.app_lease_container = f"{low}-applease"
        self.app_lease_info_blob = f"{low}-appleaseinfo"

    def control_queue(self, index: int) -> str:
        return self.control_queues[index]

    def control_queue_for(self, instance_id: str) -> str:
        return self.control_queues[partition_index(instance_id, self.partition_count)]

    @property
    def queues(self) -> list[str]:
        return [*self.control_queues, self.work_items_queue]

    @property
    def tables(self) -> list[str]:
        return [self.history_table, self.instances_table]

    @property
    def containers(self) -> list[str]:
        return [self.leases_container, self.large_messages_container, self.app_lease_container]


def fnv1a_32(text: str) -> int:
    """32-bit FNV-1a over the UTF-8 bytes of `text`."""
    h = _FNV_OFFSET
    for b in text.encode("utf-8"):
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def partition_index(instance_id: str, partition_count: int) -> int:
    return fnv1a_32(instance_id) % partition_count


def _is_control(c: str) -> bool:
    o = ord(c)
    return o <= 0x1F or 0x7F <= o <= 0x9F


def escape_key(instance_id: str) -> str:
    """Instance id -> table PartitionKey (DTFx KeySanitation; not idempotent, escape once)."""
    out = []
    for c in instance_id:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif _is_control(c):
            out.append("^" + chr(ord(c) + _CONTROL_SHIFT))
        else:
            out.append(c)
    return "".join(out)


def unescape_key(key: str) -> str:
    """Table PartitionKey -> instance id (inverse of escape_key)."""
    out = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "^" and i + 1 < len(key):
            n = key[i + 1]
            if n in _UNESCAPES:
                out.append(_UNESCAPES[n])
            elif ord(n) >= _CONTROL_SHIFT:
                out.append(chr(ord(n) - _CONTROL_SHIFT))
            else:  # not something escape_key writes: keep it verbatim
                out.append(c + n)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def history_row_key(seq: int) -> str:
    return f"{seq:016X}"


SENTINEL_ROW_KEY = "sentinel"
