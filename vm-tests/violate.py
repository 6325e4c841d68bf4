"""Send one scripted peering-LAN violation from this peer router (VM tests)."""

import argparse

from scapy.all import ARP, Dot3, Ether, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, IPv6, LLC, Raw, STP, get_if_hwaddr, sendp
from scapy.utils6 import in6_mactoifaceid

BROADCAST = "ff:ff:ff:ff:ff:ff"


def frame(kind, mac, claim):
    if kind == "arp-spoof":  # gratuitous ARP for someone else's address
        return Ether(src=mac, dst=BROADCAST) / ARP(op="is-at", hwsrc=mac, psrc=claim, hwdst=BROADCAST, pdst=claim)
    if kind == "arp-bogon":  # ARP request from an address outside the LAN's prefixes
        return Ether(src=mac, dst=BROADCAST) / ARP(op="who-has", hwsrc=mac, psrc="10.11.12.13", pdst=claim)
    if kind == "router-advertisement":
        ip6 = IPv6(src="fe80::" + in6_mactoifaceid(mac), dst="ff02::1", hlim=255)
        return Ether(src=mac, dst="33:33:00:00:00:01") / ip6 / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    if kind == "stp":
        return Dot3(src=mac, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()
    if kind == "ether-type":  # IEEE local experimental EtherType, broadcast
        return Ether(src=mac, dst=BROADCAST, type=0x88B5) / Raw(b"ixpect vm test".ljust(46, b"\0"))
    raise ValueError(kind)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=["arp-spoof", "arp-bogon", "router-advertisement", "stp", "ether-type"])
    p.add_argument("--claim", help="IPv4 address to claim (arp-spoof) or to ask for (arp-bogon)")
    p.add_argument("--iface", default="eth1")
    p.add_argument("--count", type=int, default=3)
    args = p.parse_args()
    if args.kind.startswith("arp") and not args.claim:
        p.error(f"{args.kind} needs --claim")
    mac = get_if_hwaddr(args.iface)
    sendp(frame(args.kind, mac, args.claim), iface=args.iface, count=args.count, verbose=False)


if __name__ == "__main__":
    main()
