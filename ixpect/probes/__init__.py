"""Probes: stateful checks fed with decoded frames of the kinds they handle.

A probe implements a handler for each kind of frame it wants; the engine decodes
a frame once and calls only the handlers that exist:
    frame(ts, buf)                          every frame
    ether(ts, buf, off, ethertype)          the EtherTypes in the probe's `ether_types`
                                            (payload at `off`)
    arp(ts, buf, op, sha, spa, tha, tpa)    Ethernet/IPv4 ARP
    ipv4(ts, buf, src, dst, proto, p, end)  IPv4; upper layer `proto` at buf[p:end]
                                            (p == end: a non-first fragment)
    ip6(ts, buf, src, dst, proto, p, end)   IPv6, after the extension headers (likewise)
    nd(ts, buf, kind, src, target, lladdr)  ICMPv6 RS/RA/NS/NA (decode.ND_*)
    llc(ts, buf, off, dsap, ssap, control, snap)
                                            802.3 frames: LLC header at `off` (decode.llc)
    other(ts, buf, ethertype)               EtherTypes outside `allowed` (LLC for 802.3)
The engine decodes IPv4, IPv6 and LLC only when some probe handles that kind.
A probe whose `frame` handler counts frames per destination class and source MAC
also implements sifted(source, n): n more frames of `source` (the class, 0 broadcast,
1 multicast, 2 unicast, then the source MAC: 7 bytes) went by, dropped by the sieve
(ixpect.engine); the engine calls it before any timer runs and at the end of input.
Its `frame` handler alone then sees a source's first frame of a window whose bytes
the other probes found quiet already.
Probes report with `emit(type, ts, data, frame)`; `members` is the engine's member
table (ixpect.members), current at each (re)configuration. Time-driven probes set
`deadline` (frame time); the engine calls tick(now) once it has passed, and flush(now)
at the end of the input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ixpect.members import MemberTable

Emit = Callable[[str, float, dict, bytes], None]

#: config key under `probes` -> "module:Class"
KINDS = {
    "arp_bogon": "ixpect.probes.bogon:ArpBogon",
    "arp_neighbor": "ixpect.probes.neighbor:ArpNeighbor",
    "bum_rate": "ixpect.probes.bum_rate:BumRate",
    "ether_type": "ixpect.probes.ether_type:EtherType",
    "ip_control": "ixpect.probes.ip_control:IpControl",
    "ipv6_bogon": "ixpect.probes.bogon:Ipv6Bogon",
    "ipv6_neighbor": "ixpect.probes.neighbor:Ipv6Neighbor",
    "ipv6_router": "ixpect.probes.ipv6_router:Ipv6Router",
    "l2_protocol": "ixpect.probes.l2_protocol:L2Protocol",
    "mac_address": "ixpect.probes.mac_address:MacAddress",
    "stp": "ixpect.probes.stp:Stp",
}

HANDLERS = ("frame", "ether", "arp", "ipv4", "ip6", "nd", "llc", "other")
#: In `decided_by`: whether the destination MAC is the broadcast address, another group
#: address or a unicast one, for a probe that reads no more of it; unicast frames to
#: different routers are then alike.
DESTINATION_CLASS = (-1, 0)


class Probe:
    deadline = float("inf")
    #: The byte ranges of an untagged frame that alone decide, with what the decoder
    #: of its kind reads, whether this probe raises an event for it and what it
    #: learns from it, for good: once a frame passed silently, every frame alike in
    #: these bytes (and EtherType) passes silently and changes nothing, or only counts
    #: (sifted), until the probe is reconfigured or calls recheck(). The engine then
    #: drops such frames before any Python code runs (ixpect._frames.Sieve). None,
    #: the default: every frame matters.
    #: A mapping from handler kind to ranges declares them per kind the probe has.
    #: DESTINATION_CLASS among them stands for the class of the destination MAC alone.
    decided_by: tuple[tuple[int, int], ...] | dict[str, tuple[tuple[int, int], ...]] | None = None
    #: Byte ranges that decide verdicts of their own, apart from those `decided_by`
    #: decides: the probe passes a frame silently once it passed one alike in
    #: `decided_by` and one, maybe another, alike in these. So the sieve need not see
    #: every combination of the two (every router asking for every peer).
    decided_apart: tuple[tuple[int, int], ...] = ()
    #: For the `ipv4` and `ip6` handlers: {kind: {IP protocol: the byte ranges of its
    #: payload (from the end of the IP header and its extensions) that decide, with the
    #: rest of the packet's headers, or None: more than that}} for each protocol whose
    #: payload the probe reads. Packets of any other protocol are decided by their
    #: headers alone, and the sieve takes them by those (transit: never the same bytes
    #: twice). None: any protocol's payload.
    payload_of: dict[str, dict[int, tuple[tuple[int, int], ...] | None]] | None = None

    def __init__(self, cfg: dict, emit: Emit, members: MemberTable):
        self.emit = emit
        self.reconfigure(cfg, members)

    def reconfigure(self, cfg: dict, members: MemberTable) -> None:
        self.members = members
        self.configure(cfg)

    def configure(self, cfg: dict) -> None:
        """(Re)apply configuration; learned state survives (SIGHUP reload)."""

    def recheck(self) -> None:
        """Call while judging a frame to say that frames alike in `decided_by` may get
        another verdict from now on: the engine shows them to the probe again. Set
        by the engine."""

    def watch(self) -> None:
        """Call while judging a frame that raises no event but whose like the probe must
        still see (recheck() made the engine forget those taught before): the engine
        does not sieve it. Set by the engine."""

    def recount(self) -> None:
        """Call when a counting window starts: the engine shows the probe's `frame` the
        first frame of each source MAC and destination class again before it sieves
        their frames, so that the window's table of sources fills in the order frames
        came. Set by the engine."""

    def table_full(self, ts: float, table: str, limit: int) -> None:
        """A learning table reached its configured cap, so that an attacker inventing
        addresses cannot exhaust memory: tell the operator (once per fill)."""
        self.emit("IXPECT_TABLE_FULL", ts, {"table": table, "limit": limit}, None)

    def tick(self, now: float) -> None:
        """Called once frame time has reached `deadline`."""

    def flush(self, now: float) -> None:
        """End of input: report what a window in progress has seen so far."""


def probe_class(name: str) -> type[Probe]:
    module, _, cls = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
