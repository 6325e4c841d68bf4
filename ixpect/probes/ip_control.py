"""ip_control: routing, multicast membership, host configuration and redirects on the LAN.

A peering LAN carries BGP between routers and little else: an IGP, a first-hop
redundancy protocol, IGMP/MLD, a DHCP client or server, or an ICMP redirect there
means a member port configured like an internal one, and a packet to the LAN's
directed-broadcast address reaches every router at once. Protocols are recognised by
IP protocol number, ICMP type, or UDP destination port; BFD, HSRP and TFTP only when
sent to a group MAC address, since their ports may also be those of ordinary unicast
traffic between members (single-hop BFD for BGP sessions is welcome). IS-IS is not
IP: the l2_protocol probe reports it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from ixpect.decode import ICMP, ICMPV6, UDP, udp
from ixpect.events import mac
from ixpect.probes import Probe

ROUTING = "ROUTING_PROTOCOL_FOUND"
MEMBERSHIP = "MULTICAST_GROUP_MEMBERSHIP_FOUND"
DHCP = "DHCP_PACKET_FOUND"
REDIRECT = "ICMP_REDIRECT_FOUND"
BROADCAST = "IP_DIRECTED_BROADCAST"

#: protocol name -> event type
EVENTS = {
    "ospf": ROUTING, "ospfv3": ROUTING, "eigrp": ROUTING, "ripv1": ROUTING, "ripv2": ROUTING,
    "ripng": ROUTING, "pim": ROUTING, "vrrp": ROUTING, "hsrp": ROUTING, "bfd": ROUTING,
    "igmp": MEMBERSHIP, "mld": MEMBERSHIP,
    "dhcp": DHCP, "bootp": DHCP, "dhcpv6": DHCP, "tftp": DHCP,
    "icmp-redirect": REDIRECT, "icmpv6-redirect": REDIRECT,
}
PROTOCOLS = sorted(EVENTS)

#: per IP version: (ICMP protocol number, ICMP type -> name, UDP destination port ->
#: (name, only when sent to a group MAC address), IP protocol number -> name)
_V4 = (ICMP, {5: "icmp-redirect"},
       {67: ("dhcp", False), 68: ("dhcp", False), 69: ("tftp", True), 520: ("ripv2", False),
        1985: ("hsrp", True), 3784: ("bfd", True), 3785: ("bfd", True)},
       {2: "igmp", 88: "eigrp", 89: "ospf", 103: "pim", 112: "vrrp"})
_V6 = (ICMPV6, {130: "mld", 131: "mld", 132: "mld", 143: "mld", 137: "icmpv6-redirect"},
       {546: ("dhcpv6", False), 547: ("dhcpv6", False), 69: ("tftp", True), 521: ("ripng", False),
        2029: ("hsrp", True), 3784: ("bfd", True), 3785: ("bfd", True)},
       {88: "eigrp", 89: "ospfv3", 103: "pim", 112: "vrrp"})

_DHCP_COOKIE = b"\x63\x82\x53\x63"
_BOOTP_FIXED = 236  # BOOTP header length before the DHCP magic cookie


def _protocol(buf: bytes, proto: int, p: int, end: int, version: tuple) -> str | None:
    """The name of what buf[p:end] carries, or None for anything allowed."""
    icmp, icmp_types, ports, protocols = version
    if proto == icmp:
        return icmp_types.get(buf[p])
    if proto != UDP:
        return protocols.get(proto)
    found = ports.get(udp(buf, p, end)[1])
    if found is None or (found[1] and not buf[0] & 1):
        return None
    name = found[0]
    if name == "dhcp":
        cookie = p + 8 + _BOOTP_FIXED
        return "dhcp" if buf[cookie:cookie + 4] == _DHCP_COOKIE else "bootp"
    if name == "ripv2" and p + 9 < end and buf[p + 9] == 1:
        return "ripv1"
    return name


class IpControl(Probe):
    def configure(self, cfg: dict) -> None:
        self.broadcasts = frozenset(net.broadcast_address.packed for net in map(ip_network, cfg.get("prefixes", ()))
                                    if net.prefixlen < 31)  # /31 and /32 have no broadcast address
        self.ignore = frozenset(cfg.get("ignore", ()))

    def ipv4(self, ts, buf, src, dst, proto, p, end) -> None:
        if dst in self.broadcasts:
            self.emit(BROADCAST, ts, {"mac_addr_source": mac(buf[6:12]), "ip4_addr_source": str(IPv4Address(src)),
                                      "ip4_addr_destination": str(IPv4Address(dst))}, buf)
        if p != end:
            name = _protocol(buf, proto, p, end, _V4)
            if name is not None and name not in self.ignore:
                self._found(ts, buf, name, "ip4_addr_source", IPv4Address(src))

    def ip6(self, ts, buf, src, dst, proto, p, end) -> None:
        if p != end:
            name = _protocol(buf, proto, p, end, _V6)
            if name is not None and name not in self.ignore:
                self._found(ts, buf, name, "ip6_addr_source", IPv6Address(src))

    def _found(self, ts, buf, name, key, src) -> None:
        self.emit(EVENTS[name], ts, {"mac_addr_source": mac(buf[6:12]), "protocol": name, key: str(src)}, buf)
