"""bum_rate: broadcast, multicast and unicast frames per source MAC per window.

A monitor port sees the LAN's flooded traffic only, so every unicast frame not
meant for it is unknown unicast: all three classes are floods worth counting.
Windows are tumbling, in frame time, and evaluated when they end. At most
`max_sources` source MACs per class are counted in a window, so a flood of
invented source MACs cannot exhaust memory; sources already counted keep counting.
"""

from __future__ import annotations

from ixpect.events import mac
from ixpect.probes import DESTINATION_CLASS, Probe

_BROADCAST = b"\xff" * 6
_CLASSES = ("broadcast", "multicast", "unicast")


class BumRate(Probe):
    deadline = 0.0  # the first frame opens the first window
    decided_by = (DESTINATION_CLASS, (6, 12))  # what a frame counts for

    def __init__(self, cfg: dict, emit, members):
        self.counts = {c: {} for c in _CLASSES}
        super().__init__(cfg, emit, members)

    def configure(self, cfg: dict) -> None:
        self.window = cfg["window"]
        self.thresholds = {c: t for c, t in cfg.get("thresholds", {}).items() if t is not None}
        self.broadcast, self.multicast, self.unicast = (self.counts[c] for c in _CLASSES)
        self.max_sources = cfg.get("max_sources", 1_000_000)
        self.full = False  # IXPECT_TABLE_FULL sent in this window

    def frame(self, ts: float, buf: bytes) -> None:
        if buf[0] & 1:
            counts = self.broadcast if buf[:6] == _BROADCAST else self.multicast
        else:
            counts = self.unicast
        src = buf[6:12]
        if src in counts:
            counts[src] += 1
        elif len(counts) < self.max_sources:
            counts[src] = 1
        elif not self.full:
            self.full = True
            self.table_full(ts, "bum_rate.sources", self.max_sources)

    def sifted(self, source: bytes, n: int) -> None:
        """Frames of a source already seen in this window (counted, or left out as the
        table was full): they count as they would have."""
        counts = self.counts[_CLASSES[source[0]]]
        src = source[1:]
        if src in counts:
            counts[src] += n

    def tick(self, now: float) -> None:
        self.recount()  # a new window: each source's first frame must take a place in the table
        if self.deadline:
            self._evaluate(self.deadline)
            self.deadline += self.window * ((now - self.deadline) // self.window + 1)
        else:
            self.deadline = now + self.window

    def flush(self, now: float) -> None:
        self._evaluate(now)

    def _evaluate(self, end: float) -> None:
        window = int(self.window) if self.window == int(self.window) else self.window
        for cls, counts in self.counts.items():
            threshold = self.thresholds.get(cls)
            if threshold is not None:
                for src, count in counts.items():
                    if count > threshold:
                        self.emit(f"BUM_RATE_{cls.upper()}_EXCEEDED", end, {
                            "mac_addr_source": mac(src), "count": count,
                            "threshold": threshold, "window": window}, None)
            counts.clear()
        self.full = False
