"""What a scenario's instances and entities must end with. Pure data."""
from __future__ import annotations

from dataclasses import dataclass, field

ANY = object()     # the output is not checked


@dataclass
class Expect:
    """An instance the scenario started (or a sub-orchestration with an explicit id): its final status and
    output (the decoded JSON of the row's Output; for Terminated the reason text)."""
    status: str                       # Completed / Terminated / Failed ...
    output: object = ANY
    what: str = ""                    # the workload's kind, for the report


@dataclass
class EntityExpect:
    """Operations sent to one entity (op id -> amount). `definite` ones were sent for sure (must be applied
    exactly once); `maybe` ones got an ambiguous answer (no answer, a reset) and were not sent again: applied
    at most once."""
    definite: dict[str, int] = field(default_factory=dict)
    maybe: dict[str, int] = field(default_factory=dict)


@dataclass
class Expectations:
    instances: dict[str, Expect] = field(default_factory=dict)
    entities: dict[str, EntityExpect] = field(default_factory=dict)    # '@counter@key' -> ops

    def entity(self, entity_id: str) -> EntityExpect:
        return self.entities.setdefault(entity_id, EntityExpect())
