"""Scenario generator: a peering LAN's traffic built from a real IX-F member list, with
violations injected at random and the events they must raise (the ground truth).

The LAN is what `ixpect ixf render` made of the export: its static ARP/ND entries
(every member address with its MACs, several for a LAG or a router migration), the
member table and the VLAN's prefixes (for an export that declares none, the smallest
prefix holding all its addresses, as an operator's base config would add).

Legitimate traffic, none of which may raise anything: ARP requests and replies between
routers, gratuitous ARP, ARP probes, neighbor solicitations from link-local and global
addresses, solicited and unsolicited advertisements, duplicate address detection, BGP,
one frame from every registered MAC, some of it 802.1Q-tagged, and transit: unicast
between hosts outside the LAN, router to router, with any protocol, port and TTL
(the ports of DHCP, RIP, HSRP, BFD ... included).

Violations, each raising exactly the events listed in its `Truth` entries, with the
member that sent it and the member whose address or MAC it claims.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6)
from scapy.layers.l2 import ARP, LLC, STP, Dot1Q, Dot3, Ether
from scapy.packet import Raw

BCAST = "ff:ff:ff:ff:ff:ff"
#: UDP ports some control protocol owns, which transit data may use all the same
CONTROL_PORTS = (67, 68, 69, 520, 521, 546, 547, 1985, 2029, 3784, 3785)


@dataclass(frozen=True, order=True)
class Truth:
    """An event as the scenario expects it: type, sender MAC, the data value that tells
    it from its kind (see `detail`), and the ASNs of member and claimed member."""
    type: str
    source: str | None
    detail: str | None
    member: frozenset
    claimed: frozenset


#: event type -> the data key that identifies what it is about
DETAIL = {"ARP_BOGON_TARGET": "ip4_addr_target", "ETHER_TYPE_VIOLATION": "ether_type",
          "IP_DIRECTED_BROADCAST": "ip4_addr_destination", "STP_PACKET_FOUND": "mac_addr_destination",
          "L2_PROTOCOL_FOUND": "protocol", "ROUTING_PROTOCOL_FOUND": "protocol", "DHCP_PACKET_FOUND": "protocol",
          "ICMP_REDIRECT_FOUND": "protocol", "MULTICAST_GROUP_MEMBERSHIP_FOUND": "protocol",
          "IPV6_ROUTER_ADVERTISEMENT": "ip6_addr_source", "MAC_ADDRESS_UNKNOWN": "mac_addr_source"}


def asns(member: dict | None) -> frozenset:
    if not member:
        return frozenset()
    return frozenset((member["asn"], *(m["asn"] for m in member.get("shared_with", ()))))


def observed(event: dict) -> Truth:
    """The Truth an emitted event (as `--jsonl` writes it) stands for."""
    data = event["data"]
    key = DETAIL.get(event["type"]) or ("ip4_addr" if "ip4_addr" in data else "ip6_addr")
    return Truth(event["type"], data.get("mac_addr_source"), str(data.get(key)), asns(event["member"]),
                 asns(event["member_claimed"]))


def covering(addresses) -> list[str]:
    """The smallest prefix holding all the addresses (an export without declared prefixes)."""
    if not addresses:
        return []
    net = ipaddress.ip_network(addresses[0])
    while not all(ipaddress.ip_address(a) in net for a in addresses):
        net = net.supernet()
    return [str(net)]


def link_local(mac: str) -> str:
    b = bytearray.fromhex(mac.replace(":", ""))
    b[0] ^= 2
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])))


def solicited(addr: str) -> tuple[str, str]:
    """The solicited-node multicast address of `addr` and its MAC."""
    low = IPv6Address(addr).packed[-3:]
    group = IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + low)
    return str(group), "33:33:ff:" + low.hex(":")


class Lan:
    """The LAN of a rendered config (the dict `config.load` gives) and its member table."""

    def __init__(self, cfg: dict, table: dict):
        probes = cfg["probes"]
        self.prefixes4 = [ipaddress.ip_network(p) for p in probes["arp_bogon"]["prefixes"]]
        self.prefixes6 = [ipaddress.ip_network(p) for p in probes["ipv6_bogon"]["prefixes"]]
        self.table = table
        self.v4 = self._static(probes["arp_neighbor"]["static_resolutions"], self.prefixes4)
        self.v6 = self._static([e for e in probes["ipv6_neighbor"]["static_resolutions"]
                                if not e["ip"].startswith("fe80:")], self.prefixes6)
        self.macs = sorted(table["macs"])
        self.connections = {int(asn): n for asn, n in table["connections"].items()}

    def _static(self, entries, prefixes) -> dict[str, list[str]]:
        """Address -> its MACs, for addresses of one member only, inside the prefixes."""
        out: dict[str, list[str]] = {}
        for e in entries:
            owner = self.table["ips"].get(e["ip"])
            if owner and not owner.get("shared_with") and any(ipaddress.ip_address(e["ip"]) in n for n in prefixes):
                out.setdefault(e["ip"], []).append(e["mac"])
        return out

    def owner(self, addr_or_mac: str) -> frozenset:
        return asns(self.table["ips"].get(addr_or_mac) or self.table["macs"].get(addr_or_mac))

    def listed(self, asn: int) -> set[str]:
        return {m for m, member in self.table["macs"].items() if asn in asns(member)}


class Scenario:
    def __init__(self, lan: Lan, seed: int, legit: int = 1000):
        """`truth`: the events every probe but mac_address raises; `counted`: what
        mac_address adds (unknown MACs, too many MACs for a member)."""
        self.lan, self.rng = lan, random.Random(seed)
        self.frames: list = []
        self.truth: Counter = Counter()
        self.counted: Counter = Counter()
        self.unlisted: dict[int, dict[str, str]] = {}  # ASN -> unregistered MAC -> the address it claimed
        self.v4, self.v6 = sorted(lan.v4), sorted(lan.v6)
        for mac in lan.macs:  # every registered MAC, once
            self.frames.append(self._hello(mac))
        self.frames += [self._legit() for _ in range(legit)]
        for _ in range(max(3, legit // 100)):
            self._violation()
        self._count_macs()

    def pcap_frames(self) -> list[tuple[float, bytes]]:
        """The frames in random order, one every 10 ms (violations among them)."""
        frames = [bytes(f) for f in self.frames]
        self.rng.shuffle(frames)
        return [(1_700_000_000.0 + i / 100, f) for i, f in enumerate(frames)]

    # -- legitimate traffic ------------------------------------------------------

    def _hello(self, mac: str):
        """One harmless frame from a registered MAC: a gratuitous ARP for one of its
        addresses, else an unsolicited NA, else BGP from its link-local address."""
        for ip, macs in self.lan.v4.items():
            if mac in macs:
                return Ether(src=mac, dst=BCAST) / ARP(op=1, hwsrc=mac, psrc=ip, pdst=ip)
        for ip, macs in self.lan.v6.items():
            if mac in macs:
                return Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=ip, dst="ff02::1", hlim=255) \
                    / ICMPv6ND_NA(tgt=ip, R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac)
        other = self.rng.choice(self.lan.macs)
        return Ether(src=mac, dst=other) / IPv6(src=link_local(mac), dst=link_local(other)) / TCP(sport=179, dport=33000)

    def _station(self, family: dict, addrs: list):
        ip = self.rng.choice(addrs)
        return ip, self.rng.choice(family[ip])

    def _legit(self):
        kinds = [self._transit, self._transit, self._bgp]
        if self.v4:
            kinds += [self._arp_request, self._arp_request, self._arp_reply, self._gratuitous, self._arp_probe]
        if self.v6:
            kinds += [self._ns, self._ns, self._na, self._dad]
        frame = self.rng.choice(kinds)()
        if self.rng.random() < 0.1:  # seen on a trunk
            frame = Ether(src=frame.src, dst=frame.dst) / Dot1Q(vlan=self.rng.randrange(1, 4095)) / frame.payload
        return frame

    def _arp_request(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        return Ether(src=mac, dst=BCAST) / ARP(op=1, hwsrc=mac, psrc=ip, pdst=self.rng.choice(self.v4))

    def _arp_reply(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        peer, peer_mac = self._station(self.lan.v4, self.v4)
        return Ether(src=mac, dst=peer_mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=peer_mac, pdst=peer)

    def _gratuitous(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        return Ether(src=mac, dst=BCAST) / ARP(op=self.rng.choice((1, 2)), hwsrc=mac, psrc=ip, pdst=ip)

    def _arp_probe(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        return Ether(src=mac, dst=BCAST) / ARP(op=1, hwsrc=mac, psrc="0.0.0.0", pdst=ip)

    def _ns(self):
        ip, mac = self._station(self.lan.v6, self.v6)
        target = self.rng.choice(self.v6)
        group, group_mac = solicited(target)
        src = self.rng.choice((ip, link_local(mac)))
        return Ether(src=mac, dst=group_mac) / IPv6(src=src, dst=group, hlim=255) / ICMPv6ND_NS(tgt=target) \
            / ICMPv6NDOptSrcLLAddr(lladdr=mac)

    def _na(self):
        ip, mac = self._station(self.lan.v6, self.v6)
        if self.rng.random() < 0.5:  # unsolicited, to all nodes
            dst, dst_mac, solicited_ = "ff02::1", "33:33:00:00:00:01", 0
        else:
            peer, dst_mac = self._station(self.lan.v6, self.v6)
            dst, solicited_ = link_local(dst_mac), 1
        return Ether(src=mac, dst=dst_mac) / IPv6(src=ip, dst=dst, hlim=255) \
            / ICMPv6ND_NA(tgt=ip, R=1, S=solicited_, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac)

    def _dad(self):
        ip, mac = self._station(self.lan.v6, self.v6)
        group, group_mac = solicited(ip)
        return Ether(src=mac, dst=group_mac) / IPv6(src="::", dst=group, hlim=255) / ICMPv6ND_NS(tgt=ip)

    def _bgp(self):
        if self.v4 and (not self.v6 or self.rng.random() < 0.5):
            (a, mac), (b, peer) = self._station(self.lan.v4, self.v4), self._station(self.lan.v4, self.v4)
            ip = IP(src=a, dst=b, ttl=1)
        elif self.v6:
            (a, mac), (b, peer) = self._station(self.lan.v6, self.v6), self._station(self.lan.v6, self.v6)
            ip = IPv6(src=a, dst=b, hlim=1)
        else:
            mac, peer = self.rng.choice(self.lan.macs), self.rng.choice(self.lan.macs)
            ip = IPv6(src=link_local(mac), dst=link_local(peer))
        return Ether(src=mac, dst=peer) / ip / TCP(sport=self.rng.randrange(1024, 65536), dport=179, flags="PA")

    def _offlan(self, version: int) -> str:
        """A host address outside the LAN: global unicast, not in the LAN's prefixes."""
        while True:
            if version == 4:
                a = IPv4Address(self.rng.randrange(1 << 24, 224 << 24))
            else:
                a = IPv6Address((0x2000 << 112) + self.rng.randrange(1 << 125))
            if a.is_global and not any(a in n for n in (self.lan.prefixes4 if version == 4 else self.lan.prefixes6)):
                return str(a)

    def _transit(self):
        """Data between two off-LAN hosts that one member's router forwards to another's."""
        src_mac, dst_mac = self.rng.choice(self.lan.macs), self.rng.choice(self.lan.macs)
        version = self.rng.choice((4, 6))
        ttl = self.rng.randrange(1, 255)
        ip = (IP(src=self._offlan(4), dst=self._offlan(4), ttl=ttl) if version == 4
              else IPv6(src=self._offlan(6), dst=self._offlan(6), hlim=ttl))
        ports = [*CONTROL_PORTS, self.rng.randrange(1, 65536)]
        sport, dport = self.rng.choice(ports), self.rng.choice(ports)
        l4 = UDP(sport=sport, dport=dport) if self.rng.random() < 0.7 else TCP(sport=sport, dport=dport)
        if sport in (67, 68) and dport in (67, 68) and self.rng.random() < 0.5:  # a relayed DHCP message
            l4 = l4 / BOOTP(chaddr=src_mac) / DHCP(options=[("message-type", "request"), "end"])
        return Ether(src=src_mac, dst=dst_mac) / ip / l4 / Raw(bytes(self.rng.randrange(0, 200)))

    # -- violations ----------------------------------------------------------------

    def _expect(self, type_, source, detail, member, claimed=frozenset(), counted=False) -> None:
        (self.counted if counted else self.truth)[Truth(type_, source, str(detail), member, claimed)] += 1

    def _pair(self, family: dict, addrs: list):
        """An attacker (address, MAC) and a victim address of another member, or None."""
        for _ in range(50):
            (ip, mac), victim = self._station(family, addrs), self.rng.choice(addrs)
            if not self.lan.owner(mac) & self.lan.owner(victim):
                return ip, mac, victim
        return None

    def _violation(self) -> None:
        kinds = [self._stp, self._lldp, self._ether_type, self._ra, self._mld, self._unknown_station]
        if self.v4:
            kinds += [self._arp_spoof, self._sender_mismatch, self._ospf, self._rogue_dhcp, self._redirect,
                      self._arp_bogon, self._directed_broadcast]
        if self.v6:
            kinds += [self._nd_spoof]
        self.rng.choice(kinds)()

    def _member_mac(self) -> str:
        return self.rng.choice(self.lan.macs)

    def _random_mac(self) -> str:
        """A locally administered MAC nobody registered."""
        return "02:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(5))

    def _stp(self):
        mac = self._member_mac()
        self.frames.append(Dot3(src=mac, dst="01:80:c2:00:00:00") / LLC() / STP())
        self._expect("STP_PACKET_FOUND", mac, "01:80:c2:00:00:00", self.lan.owner(mac))
        self._expect("ETHER_TYPE_VIOLATION", mac, "llc", self.lan.owner(mac))

    def _lldp(self):
        mac = self._member_mac()
        self.frames.append(Ether(src=mac, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes(46)))
        self._expect("L2_PROTOCOL_FOUND", mac, "lldp", self.lan.owner(mac))
        self._expect("ETHER_TYPE_VIOLATION", mac, "0x88cc", self.lan.owner(mac))

    def _ether_type(self):
        mac = self._member_mac()
        self.frames.append(Ether(src=mac, dst=BCAST, type=0x88B5) / Raw(bytes(46)))
        self._expect("ETHER_TYPE_VIOLATION", mac, "0x88b5", self.lan.owner(mac))

    def _ra(self):
        mac = self._member_mac()
        src = link_local(mac)
        self.frames.append(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1", hlim=255)
                           / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=mac))
        self._expect("IPV6_ROUTER_ADVERTISEMENT", mac, src, self.lan.owner(mac))

    def _mld(self):
        mac = self._member_mac()
        self.frames.append(Ether(src=mac, dst="33:33:00:00:00:16") / IPv6(src=link_local(mac), dst="ff02::16", hlim=1)
                           / ICMPv6MLReport2())
        self._expect("MULTICAST_GROUP_MEMBERSHIP_FOUND", mac, "mld", self.lan.owner(mac))

    def _unknown_station(self):
        """A MAC nobody registered, claiming a member's address as its own."""
        mac = self._random_mac()
        if self.v4:
            victim = self.rng.choice(self.v4)
            self.frames.append(Ether(src=mac, dst=BCAST) / ARP(op=2, hwsrc=mac, psrc=victim, pdst=victim))
            self._expect("ARP_NEIGHBOR_SPOOFED_STATIC", mac, victim, frozenset(), self.lan.owner(victim))
        else:
            victim = self.rng.choice(self.v6) if self.v6 else None
            if victim is None:
                self.frames.append(Ether(src=mac, dst=BCAST, type=0x0800) / IP(src="0.0.0.0", dst="0.0.0.0") / TCP())
            else:
                self.frames.append(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=victim, dst="ff02::1", hlim=255)
                                   / ICMPv6ND_NA(tgt=victim, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
                self._expect("IPV6_NEIGHBOR_SPOOFED_STATIC", mac, victim, frozenset(), self.lan.owner(victim))
        self._expect("MAC_ADDRESS_UNKNOWN", mac, mac, frozenset(), counted=True)
        if victim is not None:
            (asn,) = self.lan.owner(victim)
            self.unlisted.setdefault(asn, {})[mac] = victim

    def _count_macs(self) -> None:
        """One MAC per port: a member's registered MACs (all of which sent a frame) and the
        unregistered ones that claimed its addresses, against its connections."""
        for asn, claims in self.unlisted.items():
            if asn in self.lan.connections and len(self.lan.listed(asn)) + len(claims) > self.lan.connections[asn]:
                for mac, victim in claims.items():
                    self._expect("MEMBER_MAC_COUNT_EXCEEDED", mac, victim, frozenset(), frozenset((asn,)), counted=True)

    def _arp_spoof(self):
        pair = self._pair(self.lan.v4, self.v4)
        if pair:
            ip, mac, victim = pair
            self.frames.append(Ether(src=mac, dst=BCAST) / ARP(op=2, hwsrc=mac, psrc=victim, pdst=ip))
            self._expect("ARP_NEIGHBOR_SPOOFED_STATIC", mac, victim, self.lan.owner(mac), self.lan.owner(victim))

    def _sender_mismatch(self):
        """ARP sent from one's own MAC with another member's address as sender: with that
        member's MAC (a pair correct in itself) or, half of the time, some other MAC,
        which also spoofs the address."""
        pair = self._pair(self.lan.v4, self.v4)
        if pair:
            ip, mac, victim = pair
            spoof = self.rng.random() < 0.5
            sender = self._random_mac() if spoof else self.rng.choice(self.lan.v4[victim])
            self.frames.append(Ether(src=mac, dst=BCAST) / ARP(op=1, hwsrc=sender, psrc=victim, pdst=ip))
            self._expect("ARP_SENDER_MISMATCH", mac, victim, self.lan.owner(mac), self.lan.owner(victim))
            if spoof:
                self._expect("ARP_NEIGHBOR_SPOOFED_STATIC", mac, victim, self.lan.owner(mac), self.lan.owner(victim))

    def _nd_spoof(self):
        """An NA for another member's address, with the sender's MAC as target link-layer
        address or, half of the time, some other MAC."""
        pair = self._pair(self.lan.v6, self.v6)
        if pair:
            ip, mac, victim = pair
            lladdr = mac if self.rng.random() < 0.5 else self._random_mac()
            self.frames.append(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=ip, dst="ff02::1", hlim=255)
                               / ICMPv6ND_NA(tgt=victim, O=1) / ICMPv6NDOptDstLLAddr(lladdr=lladdr))
            self._expect("IPV6_NEIGHBOR_SPOOFED_STATIC", mac, victim, self.lan.owner(mac), self.lan.owner(victim))

    def _ospf(self):
        """An OSPF hello, half of them with another member's address as source."""
        ip, mac = self._station(self.lan.v4, self.v4)
        src = self.rng.choice(self.v4) if self.rng.random() < 0.5 else ip
        self.frames.append(Ether(src=mac, dst="01:00:5e:00:00:05") / IP(src=src, dst="224.0.0.5", ttl=1, proto=89)
                           / Raw(bytes(44)))
        claimed = frozenset() if self.lan.owner(src) & self.lan.owner(mac) else self.lan.owner(src)
        self._expect("ROUTING_PROTOCOL_FOUND", mac, "ospf", self.lan.owner(mac), claimed)

    def _rogue_dhcp(self):
        """A DHCP server on a member port, answering a LAN address by unicast."""
        ip, mac = self._station(self.lan.v4, self.v4)
        client, client_mac = self._station(self.lan.v4, self.v4)
        self.frames.append(Ether(src=mac, dst=client_mac) / IP(src=ip, dst=client) / UDP(sport=67, dport=68)
                           / BOOTP(op=2, yiaddr=client) / DHCP(options=[("message-type", "offer"), "end"]))
        self._expect("DHCP_PACKET_FOUND", mac, "dhcp", self.lan.owner(mac))

    def _redirect(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        peer, peer_mac = self._station(self.lan.v4, self.v4)
        self.frames.append(Ether(src=mac, dst=peer_mac) / IP(src=ip, dst=peer) / ICMP(type=5, code=1, gw=ip)
                           / IP(src=peer, dst=self._offlan(4)) / UDP())
        self._expect("ICMP_REDIRECT_FOUND", mac, "icmp-redirect", self.lan.owner(mac))

    def _arp_bogon(self):
        ip, mac = self._station(self.lan.v4, self.v4)
        target = self._offlan(4)
        self.frames.append(Ether(src=mac, dst=BCAST) / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target))
        self._expect("ARP_BOGON_TARGET", mac, target, self.lan.owner(mac))

    def _directed_broadcast(self):
        nets = [n for n in self.lan.prefixes4 if n.prefixlen < 31]
        if nets:
            ip, mac = self._station(self.lan.v4, self.v4)
            bcast = str(self.rng.choice(nets).broadcast_address)
            self.frames.append(Ether(src=mac, dst=BCAST) / IP(src=ip, dst=bcast) / UDP(sport=40000, dport=9))
            self._expect("IP_DIRECTED_BROADCAST", mac, bcast, self.lan.owner(mac))
