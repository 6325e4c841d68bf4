"""Writes classic pcap files (microsecond timestamps, Ethernet link type), the
format every tool opens, for the sample frames attached to notifications."""

from __future__ import annotations

import struct

_MAGIC = 0xA1B2C3D4
_SNAPLEN = 262144
_LINKTYPE_ETHERNET = 1


def pcap(frames: list[tuple[float, bytes]]) -> bytes:
    """A whole pcap file holding `frames`, each a (epoch timestamp, raw Ethernet frame) pair."""
    out = [struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, _SNAPLEN, _LINKTYPE_ETHERNET)]
    for ts, frame in frames:
        usec = round(ts * 1_000_000)
        data = frame[:_SNAPLEN]
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(data), len(frame)))
        out.append(data)
    return b"".join(out)
