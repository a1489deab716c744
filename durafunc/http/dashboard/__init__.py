"""The built-in dashboard (`/_durafunc/`): instances, an instance's history as a timeline and as events, its
actions, entities and the task hub's partitions and queues. Served by `durafunc start` and `durafunc dashboard`."""
from .routes import PREFIX, Dashboard, HubSource

__all__ = ["PREFIX", "Dashboard", "HubSource"]
