from __future__ import annotations

import json
import threading

import pytest
import structlog

from gateway_common.logs import configure_logging, get_logger


@pytest.fixture
def json_logs():
    configure_logging("decoder", "info", "json")
    yield
    structlog.reset_defaults()


def test_events_of_every_thread_name_the_service(capsys, json_logs) -> None:
    log = get_logger("test")
    log.info("from_main", n=1)
    thread = threading.Thread(target=lambda: log.warning("from_thread", n=2))
    thread.start()
    thread.join()
    log.debug("filtered_out")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["event"], e["service"], e["level"]) for e in lines] == [
        ("from_main", "decoder", "info"),
        ("from_thread", "decoder", "warning"),
    ]


def test_logs_follow_the_current_stderr(capsys, json_logs) -> None:
    log = get_logger("test")
    log.info("first")
    assert "first" in capsys.readouterr().err
    log.info("second")  # a new capture stream: still written, never to a closed one
    assert "second" in capsys.readouterr().err
