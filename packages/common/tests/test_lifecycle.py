"""StopSignal: a signal stops the service whatever the main thread was doing when it landed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from gateway_common.lifecycle import StopSignal

# The main thread holds the event's internal lock, as it does for a few bytecodes inside every
# `Event.wait()`, when the signal's Python handler runs. A handler that set the event itself
# waited for that lock forever (the simulator that ignored SIGTERM under load).
SIGNAL_INSIDE_EVENT_WAIT = textwrap.dedent(
    """
    import os, signal, sys
    from gateway_common.lifecycle import StopSignal

    stop = StopSignal().install()
    with stop._event._cond:
        os.kill(os.getpid(), signal.{name})
        handler_ran_here = True
    sys.exit(0 if stop.wait(5) and stop.reason == "{name}" else 3)
    """
)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_landing_inside_event_wait_still_stops(name: str) -> None:
    code = SIGNAL_INSIDE_EVENT_WAIT.format(name=name)
    try:
        result = subprocess.run([sys.executable, "-c", code], timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} delivered inside Event.wait deadlocked the process")
    assert result.returncode == 0


def test_the_first_reason_is_kept() -> None:
    stop = StopSignal()
    assert not stop.is_set()
    assert not stop.wait(0.01)
    stop.set("watchdog")
    stop.set(signal.SIGTERM.name)
    assert stop.is_set()
    assert stop.wait(0)
    assert stop.reason == "watchdog"
