"""mac_address: every source MAC belongs to a member, and a member stays within one MAC per port.

The IXP's member table (from the IX-F export, ixpect.members) lists each member's
MACs and, optionally, its number of connections (ports or LAGs). Within each window
(frame time, starting with the first frame after the previous one ended):

- MAC_ADDRESS_UNKNOWN: a source MAC the table does not list, once per window.
- MEMBER_MAC_COUNT_EXCEEDED: the one-MAC-per-port rule, as far as a passive monitor
  can see it. The monitor sees MACs, not ports; a MAC the export lists for a member is
  registered and never a violation. What it can see is a MAC the export does not list
  announcing a member's address as its own (ARP sender pair, NS source or NA target
  with the frame's Ethernet source as link-layer address): a bridge, a firewall or a
  second router behind the member's port. When the member's MACs seen in the window,
  listed and such unlisted ones, outnumber its connections, each unlisted one is
  reported at the end of the window. Not visible: an unlisted MAC that never speaks
  ARP/ND for a member's address (only MAC_ADDRESS_UNKNOWN), and which port a MAC is
  behind.
A frame costs one set lookup once its source has been seen in the window.
"""

from __future__ import annotations

import logging
from ipaddress import ip_address

from ixpect.decode import ND_NA, ND_NS
from ixpect.events import mac
from ixpect.members import asns
from ixpect.prefixes import CACHE_LIMIT
from ixpect.probes import Probe

log = logging.getLogger(__name__)


class MacAddress(Probe):
    deadline = 0.0  # the first frame opens the first window
    #: the source MAC; for ARP the sender pair too (the ND decoder reads all of an NS/NA).
    #: A source seen in the window passes silently until the window ends (recheck).
    decided_by = {"frame": ((6, 12),), "arp": ((22, 32),), "nd": ()}

    def __init__(self, cfg: dict, emit, members):
        self.seen: set[bytes] = set()  # source MACs of this window
        self.listed_seen: dict[int, set[bytes]] = {}  # ASN -> its listed MACs seen in this window
        self.unlisted: dict[int, dict[bytes, tuple]] = {}  # ASN -> unlisted MAC -> (first ts, frame, addr key, text)
        super().__init__(cfg, emit, members)

    def configure(self, cfg: dict) -> None:
        self.window = cfg["window"]
        self.asns_of = {bytes.fromhex(m.replace(":", "")): asns(member) for m, member in self.members.macs.items()}
        # packed address -> ASNs of the members the table gives it to
        self.owners_of = {packed: asns(member) for packed, member in self.members.packed_ips.items()}
        self.connections = self.members.connections
        if not self.asns_of:
            log.warning("mac_address: the member table lists no MACs; every source MAC is unknown")
        self._reset()  # judge again by the new table

    def _reset(self) -> None:
        self.recheck()
        self.seen.clear()
        self.listed_seen.clear()
        self.unlisted.clear()

    def frame(self, ts: float, buf: bytes) -> None:
        src = buf[6:12]
        if src in self.seen:
            return
        if len(self.seen) >= CACHE_LIMIT:  # a flood of made-up MACs: report, but forget
            self.recheck()
            self.seen.clear()
        self.seen.add(src)
        owners = self.asns_of.get(src)
        if owners is None:
            self.emit("MAC_ADDRESS_UNKNOWN", ts, {"mac_addr_source": mac(src)}, buf)
            return
        for asn in owners:
            self.listed_seen.setdefault(asn, set()).add(src)

    def arp(self, ts, buf, op, sha, spa, tha, tpa) -> None:
        if sha not in self.asns_of and spa in self.owners_of and sha == buf[6:12]:
            self._claims(ts, buf, sha, spa, "ip4_addr")

    def nd(self, ts, buf, kind, src, target, lladdr) -> None:
        if lladdr not in self.asns_of and lladdr is not None and lladdr == buf[6:12]:
            addr = src if kind == ND_NS else target if kind == ND_NA else None
            if addr in self.owners_of:
                self._claims(ts, buf, lladdr, addr, "ip6_addr")

    def _claims(self, ts, buf, hw: bytes, addr: bytes, key: str) -> None:
        """An unlisted MAC announces a member's address as its own."""
        for asn in self.owners_of[addr]:
            if asn in self.connections:
                self.unlisted.setdefault(asn, {}).setdefault(hw, (ts, buf, key, str(ip_address(addr))))

    def tick(self, now: float) -> None:
        self._evaluate(self.deadline)
        self.deadline = now + self.window

    def flush(self, now: float) -> None:
        self._evaluate(now)

    def _evaluate(self, end: float) -> None:
        for asn, unlisted in self.unlisted.items():
            macs = self.listed_seen.get(asn, set()) | unlisted.keys()
            if len(macs) > self.connections[asn]:
                names = sorted(mac(m) for m in macs)
                for hw, (ts, buf, key, addr) in unlisted.items():
                    self.emit("MEMBER_MAC_COUNT_EXCEEDED", end, {
                        "mac_addr_source": mac(hw), key: addr, "asn": asn,
                        "connections": self.connections[asn], "mac_addrs": names}, buf)
        self._reset()
