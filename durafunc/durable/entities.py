"""Durable entities, as the Durable extension runs them for out-of-process SDKs: requests arrive as events at the
entity's instance `@name@key`, run in batches through the SDK's entity protocol, answer callers with a
ResponseMessage event named by the request id; the state is kept in the entity's Instances row."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

REQUEST_EVENT = "op"


def entity_instance_id(name: str, key: str) -> str:
    return f"@{name.lower()}@{key}"


def parse_entity_id(instance_id: str) -> tuple[str, str]:
    """'@counter@k1' -> ('counter', 'k1')."""
    _, name, key = instance_id.split("@", 2)
    return name, key


def request_message(op: str, input_text: str | None, *, signal: bool, parent: str | None = None,
                    parent_execution: str | None = None, request_id: str | None = None) -> dict:
    """DF's RequestMessage: `input` is the operation input's JSON text."""
    msg = {"op": op, "input": input_text, "id": request_id or str(uuid.uuid4())}
    if signal:
        msg["signal"] = True
    if parent:
        msg["parent"] = parent
        msg["parentExecution"] = parent_execution
    return msg


MAX_REMEMBERED = 256      # request ids an entity remembers (a redelivered request is answered, not run again)


@dataclass
class EntityState:
    exists: bool = False
    state: str | None = None      # the SDK's serialized state (JSON text)
    # the latest requests processed, oldest first: [request id, response text or None (a signal)]
    processed: list = field(default_factory=list)

    @classmethod
    def from_row_input(cls, text: str | None) -> "EntityState":
        if not text:
            return cls()
        try:
            data = json.loads(text)
            processed = [p for p in data.get("processed") or [] if isinstance(p, list) and len(p) == 2]
            return cls(bool(data.get("exists")), data.get("state"), processed)
        except (ValueError, AttributeError):
            return cls()

    def to_row_input(self) -> str:
        return json.dumps({"exists": self.exists, "state": self.state, "processed": self.processed})

    def response_for(self, request_id: str) -> tuple[bool, str | None]:
        """(seen, response text): was this request processed already, and what did it answer?"""
        for rid, response in self.processed:
            if rid == request_id:
                return True, response
        return False, None

    def remember(self, request_id: str, response: str | None) -> None:
        self.processed.append([request_id, response])
        del self.processed[:-MAX_REMEMBERED]


def batch_context(name: str, key: str, state: EntityState, requests: list[dict]) -> str:
    """The entity trigger value (sdk-protocol.md 5.1): exactly four keys; inputs double-encoded."""
    batch = [{"name": r["op"], "input": None if r.get("input") is None else json.dumps(r["input"]),
              "isSignal": bool(r.get("signal"))} for r in requests]
    return json.dumps({"self": {"name": name, "key": key}, "exists": state.exists, "state": state.state,
                       "batch": batch})


def response_message(result: dict) -> str:
    msg = {"result": result.get("result")}
    if result.get("isError"):
        msg["exceptionType"] = "Error"
    return json.dumps(msg)
