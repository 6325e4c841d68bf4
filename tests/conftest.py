"""Shared test helpers: feed scapy-built frames through the engine and collect events."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IXPECT_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "pcaps" / "tcpdump"
IXPECT = [sys.executable, "-m", "ixpect"]

sys.path.insert(0, str(REPO / "examples"))


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
