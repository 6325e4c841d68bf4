#!/usr/bin/env python3
"""Build examples/demo.pcap: three minutes of a small IXP peering LAN.

Four members (a route server, Alpha, Beta with two router MACs, Gamma) chatter
ARP and neighbor discovery as routers do; between them sits one of every
violation IXpect reports, each commented with the event it must raise. The
capture is deterministic (fixed timestamps), so `make demo` reproduces it
byte for byte and tests can count on its events.

usage: make_demo_pcap.py OUT.pcap
"""

from __future__ import annotations

import sys

from scapy.all import (ARP, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr,
                       IP, LLC, SNAP, STP, UDP, Dot3, Ether, IPv6, Raw, in6_getnsma,
                       in6_getnsmac, inet_pton, socket, wrpcap)
from scapy.utils6 import in6_mactoifaceid

T0 = 1761426000.0  # 2025-10-25T21:00:00Z
BCAST = "ff:ff:ff:ff:ff:ff"
LAN4 = "192.0.2.{}"
LAN6 = "2001:db8:ff::{:x}"

# name -> (MAC, host part of its LAN addresses); Beta runs a LAG with a second MAC.
RS = "02:00:00:00:01:01"
ALPHA = "02:00:00:00:00:0a"
BETA, BETA2 = "02:00:00:00:00:0b", "02:00:00:00:00:1b"
GAMMA = "02:00:00:00:00:0c"
NEWCOMER, IMPOSTOR, STRANGER = "02:00:00:00:00:14", "02:00:00:00:00:15", "02:00:00:00:00:16"
ROUTERS = [(RS, 1), (ALPHA, 10), (BETA, 11), (GAMMA, 12)]


def link_local(mac: str) -> str:
    return "fe80::" + in6_mactoifaceid(mac)


def arp(t, src, op, psrc, pdst, hwdst="00:00:00:00:00:00", hwsrc=None):
    dst = BCAST if op == 1 else hwdst
    return t, Ether(src=src, dst=dst) / ARP(op=op, hwsrc=hwsrc or src, psrc=psrc, hwdst=hwdst, pdst=pdst)


def ns(t, src_mac, src_ip, target):
    """Neighbor solicitation to the target's solicited-node group."""
    group = in6_getnsma(inet_pton(socket.AF_INET6, target))
    dst_ip = socket.inet_ntop(socket.AF_INET6, group)
    pkt = Ether(src=src_mac, dst=in6_getnsmac(group)) / IPv6(src=src_ip, dst=dst_ip, hlim=255) / \
        ICMPv6ND_NS(tgt=target)
    if src_ip != "::":
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return t, pkt


def na(t, src_mac, target, lladdr, dst_mac, dst_ip):
    return t, Ether(src=src_mac, dst=dst_mac) / IPv6(src=target, dst=dst_ip, hlim=255) / \
        ICMPv6ND_NA(tgt=target, R=1, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=lladdr)


def chatter(t0: float) -> list:
    """One round of healthy peering-LAN neighbor traffic: no events."""
    out = []
    for i, (mac, host) in enumerate(ROUTERS):
        t = t0 + i
        peer_mac, peer_host = ROUTERS[(i + 1) % len(ROUTERS)]
        out.append(arp(t, mac, 1, LAN4.format(host), LAN4.format(peer_host)))
        out.append(arp(t + 0.1, peer_mac, 2, LAN4.format(peer_host), LAN4.format(host), hwdst=mac))
        out.append(ns(t + 0.2, mac, LAN6.format(host), LAN6.format(peer_host)))
        out.append(na(t + 0.3, peer_mac, LAN6.format(peer_host), peer_mac, mac, LAN6.format(host)))
        out.append(ns(t + 0.4, mac, link_local(mac), link_local(peer_mac)))
    # Beta's second LAG member answers for the same addresses: legitimate (static set).
    out.append(arp(t0 + 5, BETA2, 2, LAN4.format(11), LAN4.format(10), hwdst=ALPHA))
    out.append(na(t0 + 5.1, BETA2, LAN6.format(11), BETA2, ALPHA, LAN6.format(10)))
    # Address conflict detection and DAD: probes never teach or spoof.
    out.append(arp(t0 + 6, GAMMA, 1, "0.0.0.0", LAN4.format(12)))
    out.append(ns(t0 + 6.1, GAMMA, "::", LAN6.format(12)))
    return out


def violations(t0: float) -> list:
    """One of every violation, each with the events it raises."""
    out = [
        # ARP_NEIGHBOR_SPOOFED_STATIC: Gamma's router answers for Alpha's address.
        arp(t0, GAMMA, 2, LAN4.format(10), LAN4.format(11), hwdst=BETA),
        # ARP_NEIGHBOR_NEW_DYNAMIC: a newcomer not yet in the IX-F export...
        arp(t0 + 1, NEWCOMER, 1, LAN4.format(20), LAN4.format(20)),
        # ... ARP_NEIGHBOR_SPOOFED_DYNAMIC: ...whose address another MAC then claims.
        arp(t0 + 2, IMPOSTOR, 2, LAN4.format(20), LAN4.format(10), hwdst=ALPHA),
        # ARP_NEIGHBOR_UNKNOWN + ARP_BOGON_SOURCE: a sender address outside the LAN.
        arp(t0 + 3, STRANGER, 1, "198.51.100.7", LAN4.format(10)),
        # ARP_BOGON_TARGET: Alpha asks for an address that is not on the LAN.
        arp(t0 + 4, ALPHA, 1, LAN4.format(10), "10.0.0.1"),
        # IPV6_NEIGHBOR_SPOOFED_STATIC: Gamma advertises Alpha's IPv6 address.
        na(t0 + 5, GAMMA, LAN6.format(10), GAMMA, BETA, LAN6.format(11)),
        # IPV6_NEIGHBOR_NEW_DYNAMIC: the newcomer solicits from its new address...
        ns(t0 + 6, NEWCOMER, LAN6.format(0x20), LAN6.format(10)),
        # ... IPV6_NEIGHBOR_SPOOFED_DYNAMIC: ...which the impostor then advertises.
        na(t0 + 7, IMPOSTOR, LAN6.format(0x20), IMPOSTOR, ALPHA, LAN6.format(10)),
        # IPV6_NEIGHBOR_UNKNOWN + IPV6_BOGON_SOURCE: a source outside the LAN.
        ns(t0 + 8, STRANGER, "2001:db8:1::7", LAN6.format(10)),
        # IPV6_BOGON_TARGET: Alpha solicits an address that is not on the LAN.
        ns(t0 + 9, ALPHA, LAN6.format(10), "2001:db8:2::1"),
        # IPV6_ROUTER_ADVERTISEMENT: Beta's router advertises itself as default router.
        (t0 + 10, Ether(src=BETA, dst="33:33:00:00:00:01") / IPv6(src=link_local(BETA), dst="ff02::1", hlim=255)
         / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=BETA) / ICMPv6NDOptPrefixInfo(prefix="2001:db8:ff::")),
        # IPV6_ROUTER_SOLICITATION: Gamma's router solicits routers.
        (t0 + 11, Ether(src=GAMMA, dst="33:33:00:00:00:02") / IPv6(src=link_local(GAMMA), dst="ff02::2", hlim=255)
         / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GAMMA)),
        # STP_PACKET_FOUND + ETHER_TYPE_VIOLATION (llc): a switch behind Beta leaks BPDUs...
        (t0 + 12, Dot3(src=BETA2, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()),
        # ... and Cisco PVST+ ones.
        (t0 + 13, Dot3(src=BETA2, dst="01:00:0c:cc:cc:cd") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
         / SNAP(OUI=0x00000C, code=0x010B) / STP()),
        # ETHER_TYPE_VIOLATION (0x88cc): Gamma's router sends LLDP.
        (t0 + 14, Ether(src=GAMMA, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes.fromhex("020704" + "02" * 6 + "0000"))),
        # IXPECT_BAD_PACKET: a truncated ARP packet.
        (t0 + 15, Ether(bytes(Ether(src=ALPHA, dst=BCAST) / ARP(psrc=LAN4.format(10), pdst=LAN4.format(11)))[:30])),
    ]
    # BUM_RATE_*_EXCEEDED: Alpha floods 150 broadcasts, 150 multicasts and 150
    # unknown unicasts within one window (thresholds are 100 per minute).
    for i in range(150):
        t = t0 + 20 + i * 0.1
        out.append((t, Ether(src=ALPHA, dst=BCAST) / IP(src=LAN4.format(10), dst="192.0.2.255")
                    / UDP(sport=5000, dport=9) / Raw(b"storm")))
        out.append((t + 0.01, Ether(src=ALPHA, dst="01:00:5e:00:00:fb") / IP(src=LAN4.format(10), dst="224.0.0.251")
                    / UDP(sport=5353, dport=5353) / Raw(b"storm")))
        out.append((t + 0.02, Ether(src=ALPHA, dst="02:00:00:00:00:99") / IP(src=LAN4.format(10), dst=LAN4.format(99))
                    / UDP(sport=5000, dport=9) / Raw(b"storm")))
    return out


def build() -> list:
    timed = chatter(T0) + violations(T0 + 30) + chatter(T0 + 90) + chatter(T0 + 150)
    timed.sort(key=lambda tp: tp[0])
    packets = []
    for t, pkt in timed:
        pkt.time = t
        packets.append(pkt)
    return packets


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    wrpcap(sys.argv[1], build())
