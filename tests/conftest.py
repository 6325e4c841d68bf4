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


#: the start of the reason of a skip for want of something this machine lacks
NOT_HERE = "not runnable here, for want of "


def available(thing: str) -> bool:
    """`thing` of a `needs` mark: "root", "test data" (SHARED) or a program on PATH."""
    if thing == "root":
        return os.geteuid() == 0
    if thing == "test data":
        return SHARED.is_dir()
    return shutil.which(thing) is not None


def missing(thing: str) -> None:
    """Stop a test that cannot run for want of `thing`: a failure under CI=true, where
    `make test` has installed everything; elsewhere a skip, counted in one line at the end."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{thing} is missing; under CI=true every test must run")
    pytest.skip(NOT_HERE + thing)


def require_tool(tool: str) -> None:
    if not available(tool):
        missing(tool)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        for thing in mark.args:
            if not available(thing):
                missing(f"test data at {SHARED}" if thing == "test data" else thing)


def pytest_terminal_summary(terminalreporter):
    """One line for every test that could not run here, by what was missing."""
    wants: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if NOT_HERE in reason:
            thing = reason.split(NOT_HERE, 1)[1]
            wants[thing] = wants.get(thing, 0) + 1
    if wants:
        terminalreporter.write_line(
            f"{sum(wants.values())} tests not runnable here, for want of: "
            + ", ".join(f"{thing} ({n})" for thing, n in sorted(wants.items())), yellow=True, bold=True)


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
