"""A Redis client from `connect` fails a call on a silent socket once, after its socket
timeout: the services retry by themselves (reading their pending entries again after an error),
and the bounds of docs/guarantees.md rest on one timeout per call."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from gateway_common.redis_conn import connect

TIMEOUT_S = 0.3


def test_a_silent_server_costs_one_socket_timeout_not_retries() -> None:
    # A listener that never accepts: the kernel completes the connection, nobody answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        client = connect(
            f"redis://127.0.0.1:{port}/0", timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S
        )
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        took = time.monotonic() - started
        client.close()
    # redis-py's default retries (10 for a client built with its constructor) would take
    # 11 timeouts and their backoff.
    assert TIMEOUT_S * 0.9 <= took < 2 * TIMEOUT_S, took
