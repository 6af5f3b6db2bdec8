"""Fixtures for the cross-service tests: the gateway's services as real processes, a pty that
plays the modem's serial line, and an MQTT subscriber that records what reaches the broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from private_servers import stop_process

BIN = Path(sys.executable).parent
PROJECT_ID = "proj-test"
EDGE_NODE_ID = "edge-test"


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Every message published under a topic root, in arrival order."""

    client: mqtt.Client
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), time.time()))
            self.arrived.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Message]], bool], timeout_s: float
    ) -> list[Message]:
        with self.arrived:
            self.arrived.wait_for(lambda: predicate(self.messages), timeout=timeout_s)
            return list(self.messages)


@pytest.fixture
def subscriber(broker, topic_root) -> Iterator[Subscriber]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub = Subscriber(client)
    subscribed = threading.Event()
    client.on_message = sub.on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(f"{topic_root}/#", qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert subscribed.wait(10), "subscriber could not subscribe"
    yield sub
    # Clear the retained DBIRTHs this test left on the broker.
    for topic in {m.topic for m in sub.messages if m.retain or "/DBIRTH/" in m.topic}:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@dataclass
class ModemLine:
    """A pty pair: the test writes modem bytes on `master`; ingest opens `path`."""

    master: int
    slave: int
    path: str

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]


@pytest.fixture
def modem_line() -> Iterator[ModemLine]:
    master, slave = os.openpty()
    tty.setraw(slave)
    line = ModemLine(master, slave, os.ttyname(slave))
    yield line
    os.close(master)
    os.close(slave)


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@dataclass
class Gateway:
    """The three services as processes, sharing one environment."""

    env: dict[str, str]
    log_dir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def start(self, name: str, command: str, **extra_env: str) -> Service:
        log_path = self.log_dir / f"{name}.log"
        health = {"GATEWAY_HEALTH_FILE": str(self.log_dir / f"{name}-health.json")}
        env = {**os.environ, **self.env, **health, **extra_env}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / command)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        service = Service(name, process, log_path)
        self.services[name] = service
        return service

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 10) -> int:
        return stop_process(self.services[name].process, sig, timeout_s)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log()[-4000:]}" for s in self.services.values())

    def assert_running(self) -> None:
        dead = {
            n: s.process.returncode
            for n, s in self.services.items()
            if s.process.poll() is not None
        }
        assert not dead, f"services exited: {dead}\n{self.logs()}"


@pytest.fixture
def gateway(tmp_path, redis_url, stream_prefix, broker, topic_root) -> Iterator[Gateway]:
    gw = Gateway(
        env={
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_STREAM_PREFIX": stream_prefix,
            "GATEWAY_MQTT_HOST": broker.host,
            "GATEWAY_MQTT_PORT": str(broker.port),
            "GATEWAY_MQTT_TLS": "false",
            "GATEWAY_MQTT_CLIENT_ID": f"gw-{stream_prefix}",
            "GATEWAY_PROJECT_ID": PROJECT_ID,
            "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
            "GATEWAY_TOPIC_ROOT": topic_root,
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_LOG_LEVEL": "debug",
        },
        log_dir=tmp_path,
    )
    yield gw
    for name in list(gw.services):
        gw.stop(name)
