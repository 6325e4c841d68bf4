"""Merges events into batches per collection window and hands finished windows on."""

from __future__ import annotations

from collections.abc import Callable

from ixpect.events import Batch, Event


def _key(ev: Event) -> tuple:
    return ev.type, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(ev.data.items()))


class Collector:
    """Batches events of one type with equal data; a window closes `window` seconds
    after its first event, measured in frame time so that a replay is deterministic.

    A window holds at most `max_batches` batches: events that would open more are
    counted in one IXPECT_TABLE_FULL batch, so a flood of distinct events (invented
    addresses) costs bounded memory and one line in the mail, not a million."""

    def __init__(self, window: float, deliver: Callable[[list[Batch]], None], max_batches: int = 10_000):
        self.window = window
        self.deliver = deliver
        self.max_batches = max_batches
        self.batches: dict[tuple, Batch] = {}
        self.deadline = float("inf")

    def add(self, ev: Event) -> None:
        if ev.timestamp >= self.deadline:
            self.flush()
        key = _key(ev)
        batch = self.batches.get(key)
        if batch is None and len(self.batches) >= self.max_batches:
            ev = Event("IXPECT_TABLE_FULL", ev.timestamp, {"table": "event.batches", "limit": self.max_batches})
            key = _key(ev)
            batch = self.batches.get(key)
        if batch is None:
            if not self.batches:
                self.deadline = ev.timestamp + self.window
            self.batches[key] = Batch.of(ev)
        else:
            batch.count += 1
            batch.last = ev.timestamp

    def restore(self, batches: list[Batch]) -> None:
        """Reopen the window these batches were taken from (a journal after a restart)."""
        for b in batches:
            self.batches[_key(b)] = b
            self.deadline = min(self.deadline, b.first + self.window)

    def tick(self, now: float) -> None:
        if now >= self.deadline:
            self.flush()

    def flush(self) -> None:
        batches = list(self.batches.values())
        self.batches.clear()
        self.deadline = float("inf")
        if batches:
            self.deliver(batches)
