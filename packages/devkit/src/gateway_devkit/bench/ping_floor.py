"""The Redis floor under "frame XADDed": a Redis round trip from a Python client, paced like the
frames (an idle machine wakes Redis and the client from sleep at every frame).

    python -m gateway_devkit.bench.ping_floor REDIS_URL COUNT INTERVAL_S

prints one round trip (s) per line.
"""

from __future__ import annotations

import sys
import time

import redis


def main(argv: list[str]) -> None:
    client = redis.Redis.from_url(argv[0])
    count, interval = int(argv[1]), float(argv[2])
    client.ping()
    due = time.monotonic()
    for _ in range(count):
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))
        start = time.perf_counter()
        client.ping()
        print(repr(time.perf_counter() - start))


if __name__ == "__main__":
    main(sys.argv[1:])
