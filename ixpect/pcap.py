"""pcap and pcapng file source: (timestamp, frame) pairs with the file's own time.

The file is memory-mapped; classic pcap records are walked in C (ixpect._frames),
pcapng blocks with precompiled structs; each frame is one bytes object. Only
Ethernet (LINKTYPE_ETHERNET) frames are yielded; pcapng packets of other interfaces
are skipped and counted. A damaged file raises PcapError after the frames before
the damage have been yielded. The iterable has the capture's `snaplen` (0: none
known): a frame that long may have been cut short by the capture.
"""

from __future__ import annotations

import logging
import mmap
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from ixpect._frames import Records

log = logging.getLogger(__name__)

LINKTYPE_ETHERNET = 1

_PCAP_MAGIC = {  # magic as read little-endian -> (byte order, fraction of a second)
    0xA1B2C3D4: ("<", 1e-6), 0xD4C3B2A1: (">", 1e-6),
    0xA1B23C4D: ("<", 1e-9), 0x4D3CB2A1: (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


class PcapError(Exception):
    """The file is not a capture we can read, or is damaged."""


def frames(path: str | Path) -> Iterable[tuple[float, bytes]]:
    """The file's frames; a file that is no capture at all raises PcapError here."""
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise PcapError(f"{path}: empty file") from None
    if len(data) < 4:
        raise PcapError(f"{path}: too short for a capture file")
    magic = struct.unpack_from("<I", data)[0]
    if magic == _PCAPNG_SHB:
        return _Pcapng(data, path)
    if magic in _PCAP_MAGIC:
        return _pcap(data, path, *_PCAP_MAGIC[magic])
    raise PcapError(f"{path}: not a pcap or pcapng file (magic 0x{magic:08x})")


def _pcap(data: mmap.mmap, path, order: str, scale: float) -> Iterator[tuple[float, bytes]]:
    """Classic pcap: one record header per frame, walked in C (the common case of a
    long replay), which gives back the pages it has walked; the map is unmapped when
    the walk is done with it."""
    if len(data) < 24:
        raise PcapError(f"{path}: truncated pcap file header")
    snaplen, linktype = struct.unpack_from(order + "II", data, 16)
    linktype &= 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: unsupported link-layer type {linktype} (only Ethernet, 1)")
    return Records(data, 24, order == ">", scale, str(path), PcapError, True, snaplen)


class _Pcapng:
    """The frames of a pcapng file; `snaplen` is the smallest of the interfaces
    described before the first packet (interfaces described later do not count)."""

    def __init__(self, data: mmap.mmap, path):
        self.data, self.path = data, path
        self.snaplen = _first_snaplen(data)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        with self.data:
            yield from _blocks(self.data, self.path)


def _first_snaplen(data: mmap.mmap) -> int:
    if len(data) < 12:
        return 0
    order = "<" if struct.unpack_from("<I", data, 8)[0] == _BYTE_ORDER_MAGIC else ">"
    off, lens = struct.unpack_from(order + "I", data, 4)[0], []
    while off + 16 <= len(data) and struct.unpack_from(order + "I", data, off)[0] == 1:
        lens.append(struct.unpack_from(order + "I", data, off + 12)[0])
        off += max(struct.unpack_from(order + "I", data, off + 4)[0], 12)
    return min((n for n in lens if n), default=0)


def _blocks(data: mmap.mmap, path) -> Iterator[tuple[float, bytes]]:
    n = len(data)
    off = 0
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick) per section
    skipped = 0
    while off + 12 <= n:
        btype, blen = struct.unpack_from(order + "II", data, off)
        if btype == _PCAPNG_SHB:
            bom = struct.unpack_from("<I", data, off + 8)[0]
            order = "<" if bom == _BYTE_ORDER_MAGIC else ">"
            if struct.unpack_from(order + "I", data, off + 8)[0] != _BYTE_ORDER_MAGIC:
                raise PcapError(f"{path}: bad pcapng byte-order magic at offset {off}")
            blen = struct.unpack_from(order + "I", data, off + 4)[0]
            interfaces = []
        if blen < 12 or blen % 4 or off + blen > n:
            raise PcapError(f"{path}: truncated or corrupt pcapng block at offset {off}")
        body, end = off + 8, off + blen - 4
        if btype == 1:  # Interface Description Block
            if end - body < 8:
                raise PcapError(f"{path}: truncated interface description at offset {off}")
            interfaces.append((struct.unpack_from(order + "H", data, body)[0],
                               _tsresol(data, order, body + 8, end)))
        elif btype in (6, 2):  # Enhanced / obsolete Packet Block
            if end - body < 20:
                raise PcapError(f"{path}: truncated packet block at offset {off}")
            if btype == 6:
                ifid, hi, lo, incl = struct.unpack_from(order + "IIII", data, body)
            else:
                ifid, _drops, hi, lo, incl = struct.unpack_from(order + "HHIII", data, body)
            if ifid >= len(interfaces):
                raise PcapError(f"{path}: packet for undeclared interface {ifid} at offset {off}")
            if body + 20 + incl > end:
                raise PcapError(f"{path}: packet overruns its block at offset {off}")
            linktype, tick = interfaces[ifid]
            if linktype == LINKTYPE_ETHERNET:
                yield (hi << 32 | lo) * tick, data[body + 20:body + 20 + incl]
            else:
                skipped += 1
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if not interfaces or end - body < 4:
                raise PcapError(f"{path}: simple packet block without interface at offset {off}")
            incl = min(struct.unpack_from(order + "I", data, body)[0], end - body - 4)
            if interfaces[0][0] == LINKTYPE_ETHERNET:
                yield 0.0, data[body + 4:body + 4 + incl]
            else:
                skipped += 1
        off += blen
    if off != n:
        raise PcapError(f"{path}: truncated pcapng block at offset {off}")
    if skipped:
        log.warning("%s: skipped %d packets of non-Ethernet interfaces", path, skipped)


def _tsresol(data, order: str, o: int, end: int) -> float:
    """Seconds per timestamp tick from the IDB's if_tsresol option (default 1e-6)."""
    while o + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, o)
        if code == 0:
            break
        if code == 9 and length >= 1 and o + 5 <= end:
            v = data[o + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        o += 4 + (length + 3) // 4 * 4
    return 1e-6
