"""pcap and pcapng source: (timestamp, frame) pairs with the capture's own time.

A regular file is memory-mapped; a pipe or device (`-` is standard input, e.g.
`tcpdump -w - | ixpect run --pcap -`) is read as it arrives. Classic pcap records
are walked in C (ixpect._frames), pcapng blocks with precompiled structs; each
frame is one bytes object. Only Ethernet (LINKTYPE_ETHERNET) frames are yielded;
pcapng packets of other interfaces are skipped and counted. A damaged capture, or a
timestamp past the year 9999 (which no event could carry), raises PcapError after
the frames before the damage have been yielded. Frames come with the capture's
`snaplen` (0: none known): a frame that long may have been cut short by the capture.
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import stat
import struct
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path

from ixpect._frames import Records
from ixpect.events import TS_MAX

log = logging.getLogger(__name__)

LINKTYPE_ETHERNET = 1

_PCAP_MAGIC = {  # magic as read little-endian -> (byte order, fraction of a second)
    0xA1B2C3D4: ("<", 1e-6), 0xD4C3B2A1: (">", 1e-6),
    0xA1B23C4D: ("<", 1e-9), 0x4D3CB2A1: (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


#: frames handed on at a time from a file, so that a signal is acted on between them
CHUNK = 1 << 14
#: bytes read from a pipe at a time
READ_SIZE = 1 << 20
#: bytes of a pipe kept waiting for the rest of one record or block
MAX_PENDING = 64 << 20


class PcapError(Exception):
    """The file is not a capture we can read, or is damaged."""


class Chunk:
    """Some frames of a capture, with its `snaplen` (the engine reads it)."""

    __slots__ = ("frames", "snaplen")

    def __init__(self, frames: Iterable[tuple[float, bytes]], snaplen: int):
        self.frames, self.snaplen = frames, snaplen

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return iter(self.frames)


def chunks(path: str, timeout: float) -> Iterator[Chunk]:
    """The capture's frames in chunks: of a regular file at most CHUNK at a time (each
    to be consumed before the next is taken), of a pipe or device what has arrived,
    an empty chunk after `timeout` seconds without any. `-` is standard input."""
    fd = 0 if path == "-" else os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO without writer waits in poll
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PcapError(f"{path}: is a directory")
        if stat.S_ISREG(mode):
            source = _mapped(fd, path)
            if isinstance(source, Records):  # handed on as itself: the sieve walks its records in C
                while not source.done:
                    source.budget = CHUNK
                    yield source
                return
            walk = iter(source)
            for first in walk:
                yield Chunk(chain((first,), islice(walk, CHUNK - 1)), source.snaplen)
        else:
            yield from _stream(fd, "standard input" if path == "-" else path, timeout)
    finally:
        if fd != 0:
            os.close(fd)


def frames(path: str | Path) -> Iterable[tuple[float, bytes]]:
    """The frames of a capture file, with its `snaplen`; a file that is no capture at
    all raises PcapError here."""
    with open(path, "rb") as f:
        return _mapped(f.fileno(), path)


def _mapped(fd: int, path) -> Iterable[tuple[float, bytes]]:
    try:
        data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except ValueError:  # empty file
        raise PcapError(f"{path}: empty file") from None
    magic = _magic(data, path)
    if magic == _PCAPNG_SHB:
        return _Pcapng(data, path)
    if len(data) < 24:
        raise PcapError(f"{path}: truncated pcap file header")
    order, scale, snaplen = _header(data, path)
    return Records(data, 24, order == ">", scale, str(path), PcapError, True, snaplen)


def _magic(data, path) -> int:
    """The first four bytes, checked to be a pcap or pcapng magic."""
    if len(data) < 4:
        raise PcapError(f"{path}: too short for a capture file")
    magic = struct.unpack_from("<I", data)[0]
    if magic != _PCAPNG_SHB and magic not in _PCAP_MAGIC:
        raise PcapError(f"{path}: not a pcap or pcapng file (magic 0x{magic:08x})")
    return magic


def _header(data, path) -> tuple[str, float, int]:
    """Byte order, seconds per fraction and snaplen of a classic pcap file header (24 bytes)."""
    order, scale = _PCAP_MAGIC[struct.unpack_from("<I", data)[0]]
    snaplen, linktype = struct.unpack_from(order + "II", data, 16)
    linktype &= 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: unsupported link-layer type {linktype} (only Ethernet, 1)")
    return order, scale, snaplen


class _Pcapng:
    """The frames of a pcapng file; `snaplen` is the smallest of the interfaces
    described before the first packet (interfaces described later do not count)."""

    def __init__(self, data: mmap.mmap, path):
        self.data, self.path = data, path
        self.snaplen = _first_snaplen(data)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        with self.data:
            blocks = _Blocks(self.path)
            yield from blocks.walk(self.data, 0)
            if blocks.off != len(self.data):
                raise PcapError(f"{self.path}: truncated pcapng block at offset {blocks.off}")
            blocks.done()


def _first_snaplen(data: mmap.mmap) -> int:
    if len(data) < 12:
        return 0
    order = "<" if struct.unpack_from("<I", data, 8)[0] == _BYTE_ORDER_MAGIC else ">"
    off, lens = struct.unpack_from(order + "I", data, 4)[0], []
    while off + 16 <= len(data) and struct.unpack_from(order + "I", data, off)[0] == 1:
        lens.append(struct.unpack_from(order + "I", data, off + 12)[0])
        off += max(struct.unpack_from(order + "I", data, off + 4)[0], 12)
    return min((n for n in lens if n), default=0)


def _stream(fd: int, name: str, timeout: float) -> Iterator[list[tuple[float, bytes]]]:
    """A capture from a pipe or device, walked as it arrives (the walkers stop at a
    record or block cut off at the end of what has arrived)."""
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    buf, done, walker = bytearray(), 0, None
    try:
        while data := _read(fd, poller, timeout):
            if data is _IDLE:
                yield Chunk((), 0)
                continue
            buf += data
            if walker is None:
                if len(buf) < 24:
                    continue
                walker = _Walker(buf, name)
            found: list[tuple[float, bytes]] = []
            try:
                used = walker.walk(bytes(buf), found)
            except PcapError:
                yield Chunk(found, walker.snaplen)  # the frames before the damage
                raise
            del buf[:used]
            done += used
            if len(buf) > MAX_PENDING:
                raise PcapError(f"{name}: a record or block at offset {done} is larger than {MAX_PENDING >> 20} MiB")
            yield Chunk(found, walker.snaplen)
    finally:
        os.set_blocking(fd, blocking)
    if walker is None:
        if buf:
            _magic(buf, name)
            raise PcapError(f"{name}: truncated capture file header")
        raise PcapError(f"{name}: empty")
    if buf:
        raise PcapError(f"{name}: truncated record or block at offset {done}")
    walker.done()


_IDLE = object()


def _read(fd: int, poller, timeout: float):
    """What has arrived within `timeout` seconds (_IDLE if nothing), b"" at the end."""
    if not poller.poll(int(timeout * 1000)):
        return _IDLE
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return _IDLE


class _Walker:
    """The records or blocks of a stream, starting with its first bytes `head`."""

    def __init__(self, head: bytes, name: str):
        self.name = name
        if _magic(head, name) == _PCAPNG_SHB:
            self.blocks: _Blocks | None = _Blocks(name)
            self.snaplen = 0  # the interfaces' (see `walk`)
        else:
            self.blocks = None
            self.order, self.scale, self.snaplen = _header(head, name)
            self.skip = 24  # the file header

    def walk(self, data: bytes, found: list) -> int:
        """Append the frames of the whole records of `data` to `found`; the bytes used."""
        if self.blocks is not None:
            found.extend(self.blocks.walk(data, 0))
            self.snaplen = min((n for n in self.blocks.snaplens if n), default=0)
            return self.blocks.off
        records = Records(data, self.skip, self.order == ">", self.scale, self.name, PcapError, False,
                          self.snaplen, True)
        self.skip = 0
        found.extend(records)
        return records.offset

    def done(self) -> None:
        if self.blocks is not None:
            self.blocks.done()


class _Blocks:
    """The pcapng block walker; its state (byte order, interfaces) carries over from
    one part of a stream to the next."""

    def __init__(self, path):
        self.path = path
        self.order = "<"
        self.interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick) of the section
        self.snaplens: list[int] = []  # of every interface described so far
        self.skipped = 0
        self.off = 0  # where the first block not walked starts

    def walk(self, data, off: int) -> Iterator[tuple[float, bytes]]:
        """The frames of the whole blocks of `data` from `off`; `self.off` follows."""
        path, n, order, interfaces = self.path, len(data), self.order, self.interfaces
        self.off = off
        while off + 12 <= n:
            btype, blen = struct.unpack_from(order + "II", data, off)
            if btype == _PCAPNG_SHB:
                bom = struct.unpack_from("<I", data, off + 8)[0]
                order = self.order = "<" if bom == _BYTE_ORDER_MAGIC else ">"
                if struct.unpack_from(order + "I", data, off + 8)[0] != _BYTE_ORDER_MAGIC:
                    raise PcapError(f"{path}: bad pcapng byte-order magic at offset {off}")
                blen = struct.unpack_from(order + "I", data, off + 4)[0]
                interfaces = self.interfaces = []
            if blen < 12 or blen % 4:
                raise PcapError(f"{path}: corrupt pcapng block at offset {off}")
            if off + blen > n:
                return  # cut off: the rest of a stream has not arrived, or the file is truncated
            body, end = off + 8, off + blen - 4
            if btype == 1:  # Interface Description Block
                if end - body < 8:
                    raise PcapError(f"{path}: truncated interface description at offset {off}")
                interfaces.append((struct.unpack_from(order + "H", data, body)[0],
                                   _tsresol(data, order, body + 8, end)))
                self.snaplens.append(struct.unpack_from(order + "I", data, body + 4)[0])
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
                    ts = (hi << 32 | lo) * tick
                    if ts > TS_MAX:
                        raise PcapError(f"{path}: packet at offset {off} has a timestamp past the year 9999")
                    self.off = off + blen
                    yield ts, data[body + 20:body + 20 + incl]
                else:
                    self.skipped += 1
            elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
                if not interfaces or end - body < 4:
                    raise PcapError(f"{path}: simple packet block without interface at offset {off}")
                incl = min(struct.unpack_from(order + "I", data, body)[0], end - body - 4)
                if interfaces[0][0] == LINKTYPE_ETHERNET:
                    self.off = off + blen
                    yield 0.0, data[body + 4:body + 4 + incl]
                else:
                    self.skipped += 1
            off = self.off = off + blen

    def done(self) -> None:
        if self.skipped:
            log.warning("%s: skipped %d packets of non-Ethernet interfaces", self.path, self.skipped)


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
