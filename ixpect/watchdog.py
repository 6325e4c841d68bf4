"""The blind-monitor watchdog: a capture port that stops seeing frames (cable pulled,
VTEP withdrawn from the flood list, mirror session deleted) looks exactly like a
quiet, healthy LAN, so the live loop says so: IXPECT_CAPTURE_SILENT once no frame of
the watched classes arrived for `silent_after`, IXPECT_CAPTURE_RESUMED when they
return.

Silence is the absence of frames, so no frame can tell it: the live loop, which wakes
at least once a second, calls `check` on wall-clock time, and the watchdog compares
the engine's frame counters (kept anyway for the metrics) with those of its last look.
The per-frame path pays nothing. A pcap replay has no watchdog: a gap in a file says
nothing about the monitor that reads it."""

from __future__ import annotations

from ixpect.events import iso

#: the watchdog looks at the counters at most this often (seconds)
EVERY = 1.0


class Watchdog:
    def __init__(self, cfg: dict, source: str, now: float):
        self.source = source
        self.configure(cfg)
        self.seen = -1  # frames of the watched classes at the last look; -1: not looked yet
        self.last = now  # wall-clock time the count last moved (or the watch began)
        self.silent = False
        self.next = now

    def configure(self, cfg: dict) -> None:
        self.after = cfg["silent_after"] if cfg["enable"] else float("inf")
        self.classes = frozenset(cfg["classes"])

    def check(self, now: float, traffic, emit) -> None:
        """`traffic()`: (frames, bytes) by class (Engine.traffic); `emit(type, time,
        data, frame)`: Engine.emit, so that the event's collection window closes on time
        although no frame comes to close it."""
        if now < self.next:
            return
        self.next = now + EVERY
        seen = sum(n for cls, (n, _) in traffic().items() if not self.classes or cls in self.classes)
        if seen != self.seen:
            if self.silent:
                emit("IXPECT_CAPTURE_RESUMED", now, self._data(now), None)
                self.silent = False
            self.seen, self.last = seen, now
        elif not self.silent and now - self.last >= self.after:
            emit("IXPECT_CAPTURE_SILENT", now, self._data(now), None)
            self.silent = True

    def _data(self, now: float) -> dict:
        data = {"source": self.source, "since": iso(self.last), "silent_for": round(now - self.last)}
        if self.classes:
            data["classes"] = sorted(self.classes)
        return data

    def snapshot(self) -> dict:
        return {"silent": self.silent, "last_traffic": self.last}
