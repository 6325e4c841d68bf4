"""mac_address: every source MAC belongs to a member, and a member has one MAC per connection.

The IXP's member table (from the IX-F export, ixpect.members) lists each member's
MACs and, optionally, its number of connections. Within each window (frame time,
starting with the first frame after the previous one ended) a source MAC the table
does not know is reported once (MAC_ADDRESS_UNKNOWN), and so is every MAC that takes
a member past its number of connections (MEMBER_MAC_COUNT_EXCEEDED): a bridge, a
firewall or a second router behind a port the IXP sized for one. A frame costs one
set lookup once its source has been seen in the window.
"""

from __future__ import annotations

import logging

from ixpect.events import mac
from ixpect.prefixes import CACHE_LIMIT
from ixpect.probes import Probe

log = logging.getLogger(__name__)


class MacAddress(Probe):
    deadline = 0.0  # the first frame opens the first window

    def __init__(self, cfg: dict, emit, members):
        self.seen: set[bytes] = set()  # source MACs of this window
        self.per_member: dict[int, set[bytes]] = {}  # ASN -> its MACs seen in this window
        super().__init__(cfg, emit, members)

    def configure(self, cfg: dict) -> None:
        self.window = cfg["window"]
        self.asn_of = {bytes.fromhex(m.replace(":", "")): member.get("asn")
                       for m, member in self.members.macs.items()}
        self.connections = self.members.connections
        if not self.asn_of:
            log.warning("mac_address: the member table lists no MACs; every source MAC is unknown")
        self.seen.clear()  # judge again by the new table
        self.per_member.clear()

    def frame(self, ts: float, buf: bytes) -> None:
        src = buf[6:12]
        if src in self.seen:
            return
        if len(self.seen) >= CACHE_LIMIT:  # a flood of made-up MACs: report, but forget
            self.seen.clear()
        self.seen.add(src)
        if src not in self.asn_of:
            self.emit("MAC_ADDRESS_UNKNOWN", ts, {"mac_addr_source": mac(src)}, buf)
            return
        asn = self.asn_of[src]
        limit = self.connections.get(asn)
        if limit is None:
            return
        macs = self.per_member.setdefault(asn, set())
        if src in macs:
            return
        macs.add(src)
        if len(macs) > limit:
            self.emit("MEMBER_MAC_COUNT_EXCEEDED", ts, {
                "mac_addr_source": mac(src), "asn": asn, "connections": limit,
                "mac_addrs": sorted(mac(m) for m in macs)}, buf)

    def tick(self, now: float) -> None:
        self.seen.clear()
        self.per_member.clear()
        self.deadline = now + self.window
