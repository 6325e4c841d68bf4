"""arp_neighbor / ipv6_neighbor: who answers for which address.

Both compare an (address, MAC) pair a frame announces with the static resolutions
(several MACs may own one address: LAG, router migration) and, with dynamic
learning, with the MAC learned for the address. An address that is neither static
nor learnable (dynamic learning off, or outside the probe's optional `prefixes`) is
UNKNOWN: nobody vouches for it; so is a new address once the learned table holds
`max_dynamic` addresses. Pairs once found correct are remembered, so the steady
state costs one set lookup per frame.

Relearning (what arpwatch calls "changed ethernet address", then follows): another
MAC announcing a learned address is SPOOFED_DYNAMIC, and from then on the probe
watches the learned MAC's announcements of that address. Once the learned MAC has
been silent for `relearn_after` (frame time, counted from the first challenge or its
last announcement since), the next announcement of another MAC replaces it, reported
as NEW_DYNAMIC with `mac_addr_previous`. A learned MAC still announcing the address
keeps the challenger's frames SPOOFED_DYNAMIC; a MAC that comes back after being
replaced is a challenger like any other (a flip-flop).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, inet_pton

from ixpect.decode import ND_NA, ND_NS
from ixpect.events import mac
from ixpect.prefixes import Prefixes
from ixpect.probes import Probe

_ANY4 = bytes(4)
_ANY6 = bytes(16)


class _Neighbor(Probe):
    prefix: str  # event type prefix
    key: str  # event data key of the address
    text: type  # IPv4Address or IPv6Address

    def __init__(self, cfg: dict, emit, members):
        self.dynamic: dict[bytes, bytes] = {}  # address -> learned MAC
        self.since: dict[bytes, float] = {}  # address -> when it was learned
        self.challenged: dict[bytes, float] = {}  # address -> when its learned MAC was last heard since
        super().__init__(cfg, emit, members)

    def configure(self, cfg: dict) -> None:
        self.static: dict[bytes, set[bytes]] = {}
        for entry in cfg.get("static_resolutions", ()):  # addresses in the config's canonical form
            ip = entry["ip"]
            self.static.setdefault(inet_pton(AF_INET6 if ":" in ip else AF_INET, ip), set()).add(
                bytes.fromhex(entry["mac"].replace(":", "")))
        self.dynamic_enable = cfg.get("dynamic_enable", False)
        self.learnable = Prefixes(cfg["prefixes"]) if "prefixes" in cfg else None
        self.max_dynamic = cfg.get("max_dynamic", 1_000_000)
        self.relearn_after = cfg.get("relearn_after", 3600.0)
        self.full = False  # IXPECT_TABLE_FULL sent for the dynamic table
        self.good: set[bytes] = set()  # address + MAC pairs already found correct

    def learn(self, ts: float, buf: bytes, addr: bytes, hw: bytes, pair: bytes) -> None:
        """Judge a pair not yet known good; `pair` is addr + hw."""
        expected = self.static.get(addr)
        if expected is not None:
            if hw in expected:
                self.good.add(pair)
            else:
                self._report("SPOOFED_STATIC", ts, buf, addr, hw, sorted(expected))
        elif not self.dynamic_enable or (self.learnable is not None and addr not in self.learnable):
            self._report("UNKNOWN", ts, buf, addr, hw)
        else:
            learned = self.dynamic.get(addr)
            if learned is None:
                if len(self.dynamic) >= self.max_dynamic:
                    if not self.full:
                        self.full = True
                        self.table_full(ts, f"{self.prefix.lower()}.dynamic", self.max_dynamic)
                    self._report("UNKNOWN", ts, buf, addr, hw)
                    return
                self.dynamic[addr] = hw
                self.since[addr] = ts
                self.good.add(pair)
                self._report("NEW_DYNAMIC", ts, buf, addr, hw)
            elif learned == hw:
                if addr in self.challenged:  # still active: keep watching it
                    self.challenged[addr] = ts
                    self.watch()
                else:
                    self.good.add(pair)
            else:
                self._challenge(ts, buf, addr, hw, pair, learned)

    def _challenge(self, ts: float, buf: bytes, addr: bytes, hw: bytes, pair: bytes, learned: bytes) -> None:
        """Another MAC than the learned one announces the address (see the module docstring)."""
        heard = self.challenged.get(addr)
        if heard is None:  # from now on, see every announcement of the learned MAC
            heard = self.challenged[addr] = ts
            self.good.discard(addr + learned)
            self.recheck()
        if ts - heard < self.relearn_after:
            self._report("SPOOFED_DYNAMIC", ts, buf, addr, hw, [learned])
            return
        del self.challenged[addr]
        self.dynamic[addr] = hw
        self.since[addr] = ts
        self.good.add(pair)
        self._report("NEW_DYNAMIC", ts, buf, addr, hw, previous=learned)

    def learned(self) -> dict[str, dict]:
        """The dynamic table for the state file: address -> {mac, since}."""
        return {str(self.text(a)): {"mac": mac(hw), "since": self.since.get(a, 0.0)}
                for a, hw in self.dynamic.items()}

    def restore(self, table: dict[str, dict]) -> None:
        """Take back a saved dynamic table (up to `max_dynamic`); what was learned since
        start wins. Raises ValueError for an entry that is not an address and a MAC."""
        for text, entry in table.items():
            addr = self.text(text).packed
            hw = bytes.fromhex(entry["mac"].replace(":", ""))
            if len(hw) != 6:
                raise ValueError(f"{text}: not a MAC address: {entry['mac']!r}")
            if addr not in self.dynamic and len(self.dynamic) < self.max_dynamic:
                self.dynamic[addr] = hw
                self.since[addr] = float(entry["since"])

    def _report(self, what: str, ts, buf, addr, hw, expected=None, previous=None) -> None:
        data = {"mac_addr_source": mac(buf[6:12]), self.key: str(self.text(addr)), "mac_addr": mac(hw)}
        if expected is not None:
            data["mac_addr_expected"] = [mac(m) for m in expected]
        if previous is not None:
            data["mac_addr_previous"] = mac(previous)
        self.emit(f"{self.prefix}_{what}", ts, data, buf)


class ArpNeighbor(_Neighbor):
    """Learns from the ARP sender pair; an ARP probe (sender 0.0.0.0) teaches nothing.
    With `sender_mismatch` (the default) it also reports ARP whose sender MAC is not
    the frame's Ethernet source: the sender pair is then someone else's claim, or a
    bridge rewrote the frame, and either way the pair proves nothing."""

    prefix, key, text = "ARP_NEIGHBOR", "ip4_addr", IPv4Address

    def configure(self, cfg: dict) -> None:
        super().configure(cfg)
        self.sender_mismatch = cfg.get("sender_mismatch", True)
        # the sender pair, once good, stays good; the Ethernet source if compared with it
        self.decided_by = ((6, 12), (22, 32)) if self.sender_mismatch else ((22, 32),)

    def arp(self, ts, buf, op, sha, spa, tha, tpa) -> None:
        if self.sender_mismatch and sha != buf[6:12]:
            self.emit("ARP_SENDER_MISMATCH", ts, {"mac_addr_source": mac(buf[6:12]), "mac_addr": mac(sha),
                                                  "ip4_addr": str(IPv4Address(spa))}, buf)
        pair = spa + sha
        if pair not in self.good and spa != _ANY4:
            self.learn(ts, buf, spa, sha, pair)


class Ipv6Neighbor(_Neighbor):
    """Learns from NS source + source link-layer option and NA target + target
    link-layer option; duplicate address detection (source ::) teaches nothing."""

    prefix, key, text = "IPV6_NEIGHBOR", "ip6_addr", IPv6Address
    decided_by = ()  # the address and link-layer option the decoder reads

    def nd(self, ts, buf, kind, src, target, lladdr) -> None:
        if lladdr is None:
            return
        if kind == ND_NS:
            if src == _ANY6:
                return
            addr = src
        elif kind == ND_NA:
            addr = target
        else:
            return
        pair = addr + lladdr
        if pair not in self.good:
            self.learn(ts, buf, addr, lladdr, pair)
