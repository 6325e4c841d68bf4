"""arp_bogon / ipv6_bogon: ARP and neighbor discovery for addresses outside the LAN's prefixes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from ixpect.events import mac
from ixpect.prefixes import Prefixes
from ixpect.probes import Probe

_ANY4 = bytes(4)
_ANY6 = bytes(16)


_REQUEST, _REPLY = 1, 2


class ArpBogon(Probe):
    """Judges ARP requests, as DD-IX's IXpect does; replies too with `replies`."""

    decided_by = ((20, 22), (28, 32))  # opcode and sender address: the source's verdict
    decided_apart = ((20, 22), (38, 42))  # opcode and target address: the target's

    def configure(self, cfg: dict) -> None:
        self.prefixes = Prefixes(cfg.get("prefixes", ()))
        self.inside = self.prefixes.inside
        self.ops = (_REQUEST, _REPLY) if cfg.get("replies", False) else (_REQUEST,)

    def arp(self, ts, buf, op, sha, spa, tha, tpa) -> None:
        if (spa in self.inside and tpa in self.inside) or op not in self.ops:
            return
        if spa != _ANY4 and spa not in self.prefixes:  # an ARP probe (0.0.0.0) is no bogon
            self.emit("ARP_BOGON_SOURCE", ts, {"mac_addr_source": mac(buf[6:12]),
                                               "ip4_addr_source": str(IPv4Address(spa))}, buf)
        if tpa not in self.prefixes:
            self.emit("ARP_BOGON_TARGET", ts, {"mac_addr_source": mac(buf[6:12]),
                                               "ip4_addr_target": str(IPv4Address(tpa))}, buf)


def _link_local(a: bytes) -> bool:
    return a[0] == 0xFE and a[1] & 0xC0 == 0x80


class Ipv6Bogon(Probe):
    """Checks Neighbor Discovery: the source address of router solicitations and
    advertisements and of neighbor solicitations and advertisements, and the target
    of the latter two. The unspecified source (duplicate address detection, a router
    solicitation before an address) is never a bogon. Redirects are ip_control's."""

    decided_by = ()  # the addresses the decoder reads
    decided_apart = ((62, 78),)  # of an NS, the target: its verdict is the target's own

    def configure(self, cfg: dict) -> None:
        self.prefixes = Prefixes(cfg.get("prefixes", ()))
        self.inside = self.prefixes.inside
        self.ignore_link_local = cfg.get("ignore_link_local", True)

    def _bogon(self, a: bytes) -> bool:
        return not (self.ignore_link_local and _link_local(a)) and a not in self.prefixes

    def nd(self, ts, buf, kind, src, target, lladdr) -> None:
        if src in self.inside and (target is None or target in self.inside):
            return
        if src != _ANY6 and self._bogon(src):
            self.emit("IPV6_BOGON_SOURCE", ts, {"mac_addr_source": mac(buf[6:12]),
                                                "ip6_addr_source": str(IPv6Address(src))}, buf)
        if target is not None and self._bogon(target):
            self.emit("IPV6_BOGON_TARGET", ts, {"mac_addr_source": mac(buf[6:12]),
                                                "ip6_addr_target": str(IPv6Address(target))}, buf)
