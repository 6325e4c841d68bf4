"""Live frames from an interface: an AF_PACKET socket with a TPACKET_V3 receive ring.

The kernel fills memory-mapped blocks of frames; a block is handed on as one chunk
(ixpect._frames.Block, walked in C, where the sieve drops frames before they become
objects) and given back at the next read, once walked: no system call per frame.
Kernel timestamps (tp_sec/tp_nsec) are the frames' time. A VLAN tag the NIC stripped
is put back, so that the probes see the frame as it was on the wire. Frames the kernel had to drop because the ring was full are counted by
PACKET_STATISTICS.

The socket is only ever read: there is no TX ring and nothing here calls send().
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import select
import socket
import struct

from ixpect._frames import Block

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
ETH_P_ALL = 0x0003

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

_REQ3 = struct.Struct("=7I")  # struct tpacket_req3
_BLOCK = struct.Struct("=III")  # tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt
_BLOCK_OFF = 8  # after tpacket_block_desc.version and .offset_to_priv
_STATUS = struct.Struct("=I")
_STATS = struct.Struct("=III")  # struct tpacket_stats_v3


class AfPacketSource:
    """Chunks of (timestamp, frame) from `interface`, opened inside namespace `netns`."""

    def __init__(self, interface: str, netns: str | None = None, *, block_size: int = 1 << 20,
                 block_count: int = 64, retire_ms: int = 50, fd: int | None = None):
        """`fd`: the socket with its ring, already open (inherited across an exec)."""
        self.interface, self.netns = interface, netns
        try:
            if fd is not None:
                self.sock = socket.socket(fileno=fd)
            else:
                with self._namespace():  # only this socket lives there; the process stays where it is
                    self.sock = self._open(interface, block_size, block_count, retire_ms)
        except OSError as exc:
            raise OSError(self._explain(exc)) from None
        self.block_size, self.block_count = block_size, block_count
        self.ring = mmap.mmap(self.sock.fileno(), block_size * block_count,
                              mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        self.block = 0
        self.walked: Block | None = None  # the chunk last handed on, its block not given back yet
        self.received = self.dropped = 0

    def _namespace(self):
        if not self.netns:
            return contextlib.nullcontext()
        from ixpect.netns import inside

        return inside(self.netns)

    def _explain(self, exc: OSError) -> str:
        """What an operator needs from a failure to open the capture socket."""
        where = f"{self.interface} in network namespace {self.netns}" if self.netns else self.interface
        if exc.errno in (errno.EPERM, errno.EACCES):
            return f"cannot capture on {where}: {exc.strerror}; capturing needs root or CAP_NET_RAW"
        if exc.errno == errno.ENODEV:
            return f"cannot capture on {where}: there is no such interface"
        if exc.errno == errno.ENOENT and self.netns:
            return f"there is no network namespace {self.netns} (`ixpect netns up --name {self.netns}` creates it)"
        return f"cannot capture on {where}: {exc.strerror}"

    def warn_if_addressed(self) -> None:
        """An interface with addresses belongs to an IP stack that answers ARP/ND and
        sends on the peering LAN: say so (`ixpect netns up` leaves none)."""
        from pyroute2 import IPRoute, NetlinkError

        try:
            with self._namespace():
                ipr = IPRoute()
            with ipr:
                index = ipr.link_lookup(ifname=self.interface)
                found = ipr.get_addr(index=index[0]) if index else []
        except (OSError, NetlinkError) as exc:  # only a warning is at stake
            log.debug("cannot list the addresses of %s: %s", self.interface, exc)
            return
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in found]
        if addrs:
            log.warning("%s has addresses (%s): this host's IP stack may answer and send on the LAN; "
                        "`ixpect netns up` moves the interface into a namespace with none", self.interface,
                        ", ".join(addrs))

    @staticmethod
    def _open(interface: str, block_size: int, block_count: int, retire_ms: int) -> socket.socket:
        # protocol 0: the socket receives nothing until it is bound to the interface
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            frame_size = 2048
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, _REQ3.pack(
                block_size, block_count, frame_size, block_size * block_count // frame_size,
                retire_ms, 0, 0))
            sock.bind((interface, ETH_P_ALL))
        except OSError:
            sock.close()
            raise
        return sock

    def read(self, timeout: float) -> Block | list:
        """The frames of the next filled block, to be walked before the next read,
        waiting at most `timeout` seconds; an empty list when none arrived."""
        self._give_back()
        off = self.block * self.block_size
        status, count, first = _BLOCK.unpack_from(self.ring, off + _BLOCK_OFF)
        if not status & TP_STATUS_USER:
            events = self.poller.poll(int(timeout * 1000))
            if not events or events[0][1] & select.POLLERR:  # idle or flagged: still there?
                self._check(bool(events))
            status, count, first = _BLOCK.unpack_from(self.ring, off + _BLOCK_OFF)
            if not status & TP_STATUS_USER:
                return []
        self.walked = Block(self.ring, off + first, count)
        self.received += count
        return self.walked

    def _give_back(self) -> None:
        """Return the block last handed on to the kernel; what of it was not walked
        (the walk stopped by an exception) is lost, as a dropped frame."""
        if self.walked is not None:
            self.walked.close()  # its memory is the kernel's again
            self.walked = None
            _STATUS.pack_into(self.ring, self.block * self.block_size + _BLOCK_OFF, TP_STATUS_KERNEL)
            self.block = (self.block + 1) % self.block_count

    def _check(self, flagged: bool) -> None:
        """Called when the ring stayed empty or the kernel flagged the socket. A link
        that went down (ENETDOWN) delivers again by itself once it is up: reading
        SO_ERROR clears the flag, so poll() blocks again instead of spinning. A device
        that is gone leaves the socket unbound for good: that is fatal, for systemd
        to restart the capture once the namespace has an interface again."""
        if flagged:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            log.warning("%s: %s; waiting for the link to come back", self.describe(),
                        os.strerror(err) if err else "socket error")
        if self.sock.getsockname()[0] != self.interface:
            raise OSError(errno.ENODEV, f"capture interface {self.interface} is gone")

    def drops(self) -> int:
        """Frames the kernel dropped (ring full) since the socket was opened."""
        _packets, dropped, _freeze = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        self.dropped += dropped  # reading the statistics resets them
        return self.dropped

    @property
    def name(self) -> str:
        return f"AF_PACKET {self.interface}"

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        self._give_back()
        self.ring.close()
        self.sock.close()
