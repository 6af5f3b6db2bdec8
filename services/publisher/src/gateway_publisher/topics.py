"""SCorp-io topics: `{root}/{project_id}/{DBIRTH|DDATA|DCMD}/{edge_node_id}/{device_id}`.

DBIRTH and DDATA are published; DCMD (a command to a device, with the downlink on) is
subscribed to, and its device read back from the topic."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["DeviceTopics", "MessageType", "Topic", "TopicCache", "TopicError", "TopicScheme"]

_FORBIDDEN = ("/", "+", "#")


class TopicError(ValueError):
    """A topic level that is empty or holds a separator or a wildcard."""


class MessageType(enum.StrEnum):
    DBIRTH = "DBIRTH"
    DDATA = "DDATA"
    DCMD = "DCMD"


def _check_level(what: str, value: str) -> None:
    if not value:
        raise TopicError(f"{what} is empty")
    for char in _FORBIDDEN:
        if char in value:
            raise TopicError(f"{what} {value!r} contains {char!r}")


@dataclass(frozen=True, slots=True)
class Topic:
    """One publish topic; it cannot exist with an invalid level."""

    root: str
    project_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str

    def __post_init__(self) -> None:
        _check_level("topic root", self.root)
        _check_level("project id", self.project_id)
        _check_level("edge node id", self.edge_node_id)
        _check_level("device id", self.device_id)
        if not isinstance(self.message_type, MessageType):
            raise TopicError(f"unknown message type {self.message_type!r}")

    @property
    def value(self) -> str:
        t = self
        return f"{t.root}/{t.project_id}/{t.message_type.value}/{t.edge_node_id}/{t.device_id}"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TopicScheme:
    """The fixed part of one gateway's topics; builds the per-device topics."""

    root: str
    project_id: str
    edge_node_id: str

    def __post_init__(self) -> None:
        _check_level("topic root", self.root)
        _check_level("project id", self.project_id)
        _check_level("edge node id", self.edge_node_id)

    def dbirth(self, device_id: str) -> Topic:
        return Topic(self.root, self.project_id, MessageType.DBIRTH, self.edge_node_id, device_id)

    def ddata(self, device_id: str) -> Topic:
        return Topic(self.root, self.project_id, MessageType.DDATA, self.edge_node_id, device_id)

    @property
    def subscription(self) -> str:
        """A filter matching every topic this gateway publishes."""
        return f"{self.root}/{self.project_id}/+/{self.edge_node_id}/+"

    @property
    def commands(self) -> str:
        """The filter of the commands to this gateway's devices (DCMD)."""
        return f"{self.root}/{self.project_id}/{MessageType.DCMD}/{self.edge_node_id}/+"

    def command_device(self, topic: str) -> str:
        """The device a DCMD topic is for; TopicError for any other topic (another project
        or edge node, another message type, a level missing or a wildcard)."""
        levels = topic.split("/")
        expected = [self.root, self.project_id, MessageType.DCMD.value, self.edge_node_id]
        if len(levels) != len(expected) + 1 or levels[:-1] != expected:
            raise TopicError(f"not a DCMD topic of this edge node: {topic[:200]!r}")
        _check_level("device id", levels[-1])
        return levels[-1]


class DeviceTopics(NamedTuple):
    dbirth: str
    ddata: str


class TopicCache:
    """Each device's topic strings, built and checked once (a device id is checked on first use).

    Holds at most `max_devices` devices; beyond that it starts again empty.
    """

    def __init__(self, scheme: TopicScheme, max_devices: int = 10_000) -> None:
        self._scheme = scheme
        self._max = max_devices
        self._topics: dict[str, DeviceTopics] = {}

    def get(self, device_id: str) -> DeviceTopics:
        """Raises TopicError for a device id that cannot be a topic level."""
        topics = self._topics.get(device_id)
        if topics is None:
            if len(self._topics) >= self._max:
                self._topics.clear()
            scheme = self._scheme
            topics = DeviceTopics(scheme.dbirth(device_id).value, scheme.ddata(device_id).value)
            self._topics[device_id] = topics
        return topics
