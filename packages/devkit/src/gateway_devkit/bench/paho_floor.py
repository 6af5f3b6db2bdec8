"""The MQTT floor under the publisher: a bare paho-mqtt client in a process of its own, QoS 1
publishes of a DDATA-sized payload with the publisher's window, PUBACKs counted in on_publish.
The most a publisher built on paho (loop_start thread) can do here; nothing subscribes to its
topic.

    python -m gateway_devkit.bench.paho_floor PORT COUNT WINDOW SIZE

prints "messages/s CPU-seconds-per-message".
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TOPIC = "bench-floor/p/DDATA/e/d"


def main(argv: list[str]) -> None:
    port, count, window, size = (int(v) for v in argv[:4])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    room, acked = threading.Semaphore(window), [0]
    done, connected = threading.Event(), threading.Event()

    def on_publish(*_args: object) -> None:
        acked[0] += 1
        room.release()
        if acked[0] == count:
            done.set()

    client.on_publish = on_publish
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    payload = b"x" * size
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        room.acquire()
        client.publish(TOPIC, payload, qos=1)
    done.wait(300)
    print(count / (time.perf_counter() - started), (time.process_time() - cpu) / count)
    client.loop_stop()


if __name__ == "__main__":
    main(sys.argv[1:])
