#!/usr/bin/env python3
"""Generate the benchmark captures (deterministic) and their config.

    arp.pcap    1,000,000 ARP requests/replies among 1,000 member routers
                (the arpwatch comparison: only arp_neighbor enabled)
    mixed.pcap  1,000,000 frames of what a peering LAN port floods: ARP, ND
                (NS/NA), a few RAs, STP, LLDP and other EtherTypes, IPv4
                broadcasts and multicasts, unknown unicast (every probe enabled)

Frames are built once per kind with scapy, then varied with byte patches, so
generating a million frames takes seconds, not scapy's minutes.

usage: gen.py OUTDIR [FRAMES]
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import yaml
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether

MEMBERS = 1000
T0 = 1761426000


def member(i: int) -> tuple[bytes, bytes, bytes]:
    """(MAC, IPv4, IPv6) of member router i on 100.64.0.0/22 and 2001:db8:64::/64."""
    return (bytes.fromhex(f"02000000{i:04x}"), bytes((100, 64, i >> 8, i & 0xFF)),
            bytes.fromhex(f"20010db8006400000000000000{i:06x}"))


def config(path: Path) -> None:
    static4 = [{"ip": ".".join(map(str, member(i)[1])), "mac": member(i)[0].hex(":")} for i in range(MEMBERS)]
    static6 = [{"ip": str(__import__("ipaddress").IPv6Address(member(i)[2])), "mac": member(i)[0].hex(":")}
               for i in range(MEMBERS)]
    cfg = {
        "probes": {
            "arp_bogon": {"enable": True, "prefixes": ["100.64.0.0/22"]},
            "arp_neighbor": {"enable": True, "dynamic_enable": True, "static_resolutions": static4},
            "bum_rate": {"enable": True, "window": "1min",
                         "thresholds": {"broadcast": 100000, "multicast": 100000, "unicast": 100000}},
            "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD]},
            "ipv6_bogon": {"enable": True, "prefixes": ["2001:db8:64::/64"]},
            "ipv6_neighbor": {"enable": True, "dynamic_enable": True, "static_resolutions": static6},
            "ipv6_router": {"enable": True},
            "stp": {"enable": True},
        },
        "event": {"collection_window": "1min", "notifiers": {}},
    }
    path.joinpath("mixed.conf.yaml").write_text(yaml.safe_dump(cfg))
    cfg["probes"] = {"arp_neighbor": cfg["probes"]["arp_neighbor"]}
    path.joinpath("arp.conf.yaml").write_text(yaml.safe_dump(cfg))


def write(path: Path, frames) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII").pack
        for n, frame in enumerate(frames):
            t = T0 * 1_000_000 + n * 20  # 50,000 frames/s
            f.write(rec(t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)


def arp_frames(n: int, rng: random.Random):
    tmpl = bytearray(bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP()).ljust(60, b"\0"))
    for _ in range(n):
        s, t = rng.randrange(MEMBERS), rng.randrange(MEMBERS)
        (smac, sip, _), (tmac, tip, _) = member(s), member(t)
        reply = rng.random() < 0.3
        f = tmpl
        f[0:6] = tmac if reply else b"\xff" * 6
        f[6:12] = smac
        f[21] = 2 if reply else 1
        f[22:28], f[28:32] = smac, sip
        f[32:38], f[38:42] = (tmac if reply else bytes(6)), tip
        yield bytes(f)


def mixed_frames(n: int, rng: random.Random):
    arp = arp_frames(n, rng)
    ns = bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="33:33:ff:00:00:01")
                         / IPv6(src="2001:db8:64::1", dst="ff02::1:ff00:1", hlim=255)
                         / ICMPv6ND_NS(tgt="2001:db8:64::2") / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")))
    na = bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="33:33:00:00:00:01")
                         / IPv6(src="2001:db8:64::1", dst="ff02::1", hlim=255)
                         / ICMPv6ND_NA(tgt="2001:db8:64::1") / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01")))
    ra = bytes(Ether(src="02:00:00:00:00:07", dst="33:33:00:00:00:01")
               / IPv6(src="fe80::7", dst="ff02::1", hlim=255) / ICMPv6ND_RA())
    stp = bytes(Dot3(src="02:00:00:00:00:08", dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP())
    lldp = bytes(Ether(src="02:00:00:00:00:09", dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07\x04" + bytes(43)))
    bcast = bytes(Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff") / IP(src="100.64.0.10", dst="100.64.3.255")
                  / UDP(sport=1000, dport=9) / (b"x" * 18))
    mcast = bytes(Ether(src="02:00:00:00:00:0b", dst="01:00:5e:00:00:05") / IP(src="100.64.0.11", dst="224.0.0.5")
                  / UDP(sport=1000, dport=9) / (b"x" * 18))
    ucast = bytes(Ether(src="02:00:00:00:00:0c", dst="02:00:00:00:99:99") / IP(src="100.64.0.12", dst="100.64.0.99")
                  / UDP(sport=1000, dport=9) / (b"x" * 18))
    kinds = [("arp", 40), ("ns", 15), ("na", 15), ("ra", 1), ("stp", 1), ("lldp", 3),
             ("bcast", 12), ("mcast", 10), ("ucast", 3)]
    choices = [k for k, w in kinds for _ in range(w)]
    for _ in range(n):
        k = rng.choice(choices)
        if k == "arp":
            yield next(arp)
        elif k in ("ns", "na"):
            i = rng.randrange(MEMBERS)
            mac, _, ip6 = member(i)
            f = ns if k == "ns" else na
            f[6:12] = mac
            f[22:38] = ip6  # IPv6 source
            if k == "na":
                f[62:78] = ip6  # target
            f[-6:] = mac  # link-layer address option
            yield bytes(f)
        else:
            yield {"ra": ra, "stp": stp, "lldp": lldp, "bcast": bcast, "mcast": mcast, "ucast": ucast}[k]


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    out.mkdir(parents=True, exist_ok=True)
    config(out)
    write(out / "arp.pcap", arp_frames(n, random.Random(1)))
    write(out / "mixed.pcap", mixed_frames(n, random.Random(2)))


if __name__ == "__main__":
    main()
