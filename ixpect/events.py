"""Events (what a probe reports) and batches (what a notifier delivers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone


#: the latest frame time an event may have: the last second of the year 9999, the end
#: of what RFC 3339 (and datetime) can write
TS_MAX = 253402300799.0


def iso(ts: float) -> str:
    """Frame time as RFC 3339 UTC with microseconds, e.g. 2025-10-25T21:00:13.123456Z."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mac(b: bytes) -> str:
    """Lowercase colon-separated MAC, the one spelling used in every event."""
    return b.hex(":")


@dataclass(slots=True)
class Event:
    type: str
    timestamp: float
    data: dict
    frame: bytes | None = None
    member: dict | None = None  # who sent the frame (ixpect.members)
    member_claimed: dict | None = None  # another member whose address or MAC the frame claims
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict:
        return {"type": self.type, "timestamp": iso(self.timestamp), "id": self.id,
                "data": self.data, "member": self.member, "member_claimed": self.member_claimed}


_BATCH_NS = uuid.UUID("5c1b1d2e-6f0a-4d7e-9a55-1c0f3e7b2a90")


@dataclass(slots=True)
class Batch:
    """Events of one type with equal data, merged over one collection window."""

    type: str
    data: dict
    member: dict | None
    first: float
    last: float
    count: int = 1
    sample: bytes | None = None  # the first frame, for the pcap attachment
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    member_claimed: dict | None = None

    @classmethod
    def of(cls, ev: Event) -> Batch:
        """The batch this event opens; its id derives from the event's, so that a window
        rebuilt from a journal after a crash is recognisably the same batch."""
        return cls(ev.type, ev.data, ev.member, ev.timestamp, ev.timestamp, 1, ev.frame,
                   str(uuid.uuid5(_BATCH_NS, ev.id)), ev.member_claimed)

    def to_json(self) -> dict:
        return {"id": self.id, "type": self.type, "count": self.count,
                "first": iso(self.first), "last": iso(self.last),
                "data": self.data, "member": self.member, "member_claimed": self.member_claimed}
