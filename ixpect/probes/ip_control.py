"""ip_control: routing, multicast membership, host configuration and redirects on the LAN.

A peering LAN carries BGP between routers and little else: an IGP, a first-hop
redundancy protocol, IGMP/MLD, a DHCP client or server, or an ICMP redirect there
means a member port configured like an internal one, and a packet to the LAN's
directed-broadcast address reaches every router at once.

The LAN also carries transit: packets between hosts outside it, forwarded from one
member's router to another's, with any protocol and ports, and flooded to the monitor
as unknown unicast. Such data is never control traffic of this LAN, so a packet is
judged only when it is scoped to this link, by what the protocol itself puts there:
- its Ethernet destination: the broadcast MAC (routers forward unicast to unicast MACs);
- its addresses: source or destination in the LAN's `prefixes`, IPv4 link-local
  169.254.0.0/16, IPv6 link-local fe80::/10, an unspecified source (0.0.0.0, ::), or a
  destination that is link-scope multicast (224.0.0.0/24, ff02::/16), the limited
  broadcast 255.255.255.255 or the LAN's directed broadcast; or
- the TTL/hop limit the protocol mandates for its link messages: 1 for IGMP, OSPF,
  OSPFv3, PIM and MLD (they cannot leave the link), 255 for VRRP and ICMPv6 redirects
  (they cannot have been forwarded).
On top of that, each protocol is recognised by (see RULES below) its IP protocol
number, ICMP type, or UDP ports: for DHCP, DHCPv6, RIP, RIPng and HSRP both ports must
be the protocol's own (a transit packet to port 67 from an ephemeral port is not
DHCP); BFD, HSRP and TFTP count only when sent to a group MAC address, since their
ports are also those of unicast between members (single-hop BFD for BGP sessions is
welcome). IS-IS is not IP: the l2_protocol probe reports it.

What it cannot tell apart: a control packet between two addresses outside the LAN
with an ordinary TTL (a DHCP relay or a PIM register routed through the exchange)
is taken for the transit it may be.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from ixpect.decode import ICMP, ICMPV6, UDP, ethernet, udp
from ixpect.events import mac
from ixpect.prefixes import Prefixes
from ixpect.probes import DESTINATION_CLASS, Probe

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

#: the TTL/hop limit a protocol mandates for its link messages, which marks them as
#: such whatever their addresses
MANDATED_TTL = {"igmp": 1, "ospf": 1, "ospfv3": 1, "pim": 1, "mld": 1, "vrrp": 255, "icmpv6-redirect": 255}

#: per IP version: (ICMP protocol number, ICMP type -> name,
#: UDP destination port -> (name, the source ports it requires or None for any,
#: only when sent to a group MAC address), IP protocol number -> name)
_DHCP4, _DHCP6 = frozenset((67, 68)), frozenset((546, 547))
RULES = {
    4: (ICMP, {5: "icmp-redirect"},
        {67: ("dhcp", _DHCP4, False), 68: ("dhcp", _DHCP4, False), 69: ("tftp", None, True),
         520: ("ripv2", frozenset((520,)), False), 1985: ("hsrp", frozenset((1985,)), True),
         3784: ("bfd", None, True), 3785: ("bfd", None, True)},
        {2: "igmp", 88: "eigrp", 89: "ospf", 103: "pim", 112: "vrrp"}),
    6: (ICMPV6, {130: "mld", 131: "mld", 132: "mld", 143: "mld", 137: "icmpv6-redirect"},
        {546: ("dhcpv6", _DHCP6, False), 547: ("dhcpv6", _DHCP6, False), 69: ("tftp", None, True),
         521: ("ripng", frozenset((521,)), False), 2029: ("hsrp", frozenset((2029,)), True),
         3784: ("bfd", None, True), 3785: ("bfd", None, True)},
        {88: "eigrp", 89: "ospfv3", 103: "pim", 112: "vrrp"}),
}

#: per IP version: the IP protocol numbers a control protocol can be carried in; for any
#: other (TCP, ESP, GRE: most transit) the probe is done without a call into _protocol
_CARRIERS4, _CARRIERS6 = (frozenset((RULES[v][0], UDP, *RULES[v][3])) for v in (4, 6))
_PORTS = ((0, 4),)  # of the UDP header

_DHCP_COOKIE = b"\x63\x82\x53\x63"
_BOOTP_FIXED = 236  # BOOTP header length before the DHCP magic cookie
_ANY4, _ALL4, _ANY6, _BROADCAST = bytes(4), b"\xff" * 4, bytes(16), b"\xff" * 6


def _protocol(buf: bytes, proto: int, p: int, end: int, rules: tuple) -> str | None:
    """The name of the control protocol buf[p:end] carries, or None for anything else."""
    icmp, icmp_types, ports, protocols = rules
    if proto == icmp:
        return icmp_types.get(buf[p])
    if proto != UDP:
        return protocols.get(proto)
    sport, dport = udp(buf, p, end)
    found = ports.get(dport)
    if found is None:
        return None
    name, sources, group_only = found
    if (sources is not None and sport not in sources) or (group_only and not buf[0] & 1):
        return None
    if name == "dhcp":
        cookie = p + 8 + _BOOTP_FIXED
        return "dhcp" if buf[cookie:cookie + 4] == _DHCP_COOKIE else "bootp"
    if name == "ripv2" and p + 9 < end and buf[p + 9] == 1:
        return "ripv1"
    return name


def _ttl(buf: bytes, version: int) -> int:
    """The TTL (IPv4) or hop limit (IPv6) of the frame's IP header."""
    off = ethernet(buf)[1]
    return buf[off + 8] if version == 4 else buf[off + 7]


class IpControl(Probe):
    #: whether the Ethernet destination is a group or the broadcast address; the rest is
    #: the IP packet the decoder reads, and the payload only of the carriers of a rule
    #: (payload_of)
    decided_by = (DESTINATION_CLASS,)

    def configure(self, cfg: dict) -> None:
        nets = [ip_network(p) for p in cfg.get("prefixes", ())]
        self.lan4 = Prefixes(n for n in nets if n.version == 4)
        self.lan6 = Prefixes(n for n in nets if n.version == 6)
        self.broadcasts = frozenset(n.broadcast_address.packed for n in nets
                                    if n.version == 4 and n.prefixlen < 31)  # /31 and /32 have none
        self.ignore = frozenset(cfg.get("ignore", ()))
        # of UDP the ports decide, unless only the DHCP cookie or the RIP version tells
        # what is ignored from what is not
        split = any(len(self.ignore & pair) == 1 for pair in ({"dhcp", "bootp"}, {"ripv1", "ripv2"}))
        self.payload_of = {"ipv4": {**dict.fromkeys(_CARRIERS4), UDP: None if split else _PORTS},
                           "ip6": {**dict.fromkeys(_CARRIERS6), UDP: _PORTS}}

    def ipv4(self, ts, buf, src, dst, proto, p, end) -> None:
        if dst in self.broadcasts:
            self.emit(BROADCAST, ts, {"mac_addr_source": mac(buf[6:12]), "ip4_addr_source": str(IPv4Address(src)),
                                      "ip4_addr_destination": str(IPv4Address(dst))}, buf)
        if p != end and proto in _CARRIERS4:
            name = _protocol(buf, proto, p, end, RULES[4])
            if name is not None and name not in self.ignore and (
                    buf[:6] == _BROADCAST or self._link4(src, dst) or self._mandated(buf, name, 4)):
                self._found(ts, buf, name, "ip4_addr_source", IPv4Address(src))

    def ip6(self, ts, buf, src, dst, proto, p, end) -> None:
        if p != end and proto in _CARRIERS6:
            name = _protocol(buf, proto, p, end, RULES[6])
            if name is not None and name not in self.ignore and (
                    buf[:6] == _BROADCAST or self._link6(src, dst) or self._mandated(buf, name, 6)):
                self._found(ts, buf, name, "ip6_addr_source", IPv6Address(src))

    def _link4(self, src: bytes, dst: bytes) -> bool:
        return (dst[:3] == b"\xe0\x00\x00" or dst == _ALL4 or dst in self.broadcasts or src == _ANY4
                or src[:2] == b"\xa9\xfe" or dst[:2] == b"\xa9\xfe" or src in self.lan4 or dst in self.lan4)

    def _link6(self, src: bytes, dst: bytes) -> bool:
        return (dst[:2] == b"\xff\x02" or src == _ANY6 or _link_local6(src) or _link_local6(dst)
                or src in self.lan6 or dst in self.lan6)

    @staticmethod
    def _mandated(buf: bytes, name: str, version: int) -> bool:
        ttl = MANDATED_TTL.get(name)
        return ttl is not None and _ttl(buf, version) == ttl

    def _found(self, ts, buf, name, key, src) -> None:
        self.emit(EVENTS[name], ts, {"mac_addr_source": mac(buf[6:12]), "protocol": name, key: str(src)}, buf)


def _link_local6(a: bytes) -> bool:
    return a[0] == 0xFE and a[1] & 0xC0 == 0x80
