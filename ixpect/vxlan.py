"""Live frames over VxLAN, decapsulated in userspace: a plain UDP socket, no capabilities.

The kernel has checked the outer IP and UDP headers; we check the VxLAN header
(RFC 7348: 8 bytes, the I flag set) and that an Ethernet header follows. Datagrams
that fail are counted as malformed, those of another VNI (with `vni`) as foreign;
both are dropped. Kernel receive timestamps (SO_TIMESTAMPNS) are the frames' time
and the socket's overflow counter (SO_RXQ_OVFL) counts what the kernel dropped.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: struct timespec of longs
SO_RXQ_OVFL = 40
_TIMESPEC = struct.Struct("@ll")
_U32 = struct.Struct("@I")
_HEADER = 8
_MIN_FRAME = 14
I_FLAG = 0x08
#: datagrams taken per chunk, so that signals and timers run between chunks
CHUNK = 512


def parse_endpoint(text: str) -> tuple[str, int]:
    """`[ADDR]:PORT`, `ADDR:PORT` or `:PORT` (every address) -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--vxlan {text!r}: expected [ADDR]:PORT")
    host = host.strip("[]") or "::"
    ipaddress.ip_address(host)  # ValueError for a name: we bind to an address, not a lookup
    return host, int(port)


class VxlanSource:
    """Chunks of (timestamp, inner frame) from VxLAN datagrams on a UDP address."""

    def __init__(self, endpoint: str, vni: int | None = None, rcvbuf: int = 32 << 20):
        host, port = parse_endpoint(endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if host == "::":  # ":PORT" takes IPv4 too
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.endpoint = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        self.vni = vni
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN)
        self.received = self.malformed = self.foreign = 0
        self.kernel_drops = 0
        self._cmsg = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_U32.size)

    def read(self, timeout: float) -> list[tuple[float, bytes]]:
        """The inner frames of the datagrams waiting now (at most CHUNK), waiting at
        most `timeout` seconds for the first."""
        if not self.poller.poll(int(timeout * 1000)):
            return []
        chunk = []
        for _ in range(CHUNK):
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(65535, self._cmsg)
            except BlockingIOError:
                break
            ts = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    ts = sec + nsec * 1e-9
                elif level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL:
                    self.kernel_drops = _U32.unpack_from(value)[0]
            frame = self.decap(data)
            if frame is not None:
                chunk.append((time.time() if ts is None else ts, frame))
        return chunk

    def decap(self, data: bytes) -> bytes | None:
        """The inner Ethernet frame, or None (counted) when the datagram is not ours."""
        self.received += 1
        if len(data) < _HEADER + _MIN_FRAME or not data[0] & I_FLAG:
            self.malformed += 1
            return None
        if self.vni is not None and int.from_bytes(data[4:7], "big") != self.vni:
            self.foreign += 1
            return None
        return data[_HEADER:]

    def drops(self) -> int:
        """Datagrams the kernel dropped because the receive buffer was full."""
        return self.kernel_drops

    @property
    def name(self) -> str:
        return f"VxLAN {self.endpoint}"

    def describe(self) -> str:
        return (f"{self.name}: {self.received} datagrams, {self.malformed} malformed, "
                f"{self.foreign} of another VNI (dropped)")

    def close(self) -> None:
        self.sock.close()
