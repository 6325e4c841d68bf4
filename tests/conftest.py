"""Shared test helpers: feed scapy-built frames through the engine and collect events."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IXPECT_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "pcaps" / "tcpdump"
IXPECT = [sys.executable, "-m", "ixpect"]

sys.path.insert(0, str(REPO / "examples"))


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """Poll `predicate` until it returns something true (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def require_tool(tool: str) -> None:
    """Skip without `tool`, except in CI (CI=true), where the .ci/setup.d scripts must
    have installed it and its absence is a failure."""
    if shutil.which(tool) is None:
        message = f"{tool} is not installed (the scripts in .ci/setup.d install it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class Recorder:
    """An engine plus the list of events it emitted."""

    def __init__(self, probes: dict, members=None):
        from ixpect.engine import Engine

        self.events = []
        self.engine = Engine(copy.deepcopy(probes), self.events.append, members)

    def feed(self, *frames, t0: float = 1000.0, step: float = 1.0):
        """Feed frames (scapy packets or bytes) at t0, t0+step, ...; return new events."""
        before = len(self.events)
        self.engine.feed((t0 + i * step, bytes(f)) for i, f in enumerate(frames))
        return self.events[before:]

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@pytest.fixture
def recorder():
    return Recorder
