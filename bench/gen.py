#!/usr/bin/env python3
"""Generate the benchmark captures (deterministic) and their config.

    arp.pcap    1,000,000 ARP requests/replies among 1,000 member routers
                (the arpwatch comparison: only arp_neighbor enabled)
    mixed.pcap  1,000,000 frames of what a peering LAN port floods: ARP, ND
                (NS/NA), a few RAs, STP, LLDP and other EtherTypes, IPv4
                broadcasts and multicasts, unknown unicast (8 probes enabled)
    deployed.pcap
                the case exchanges deploy: the config `ixpect ixf render` makes
                of the largest real export in ../shared/ixf (DE-CIX Frankfurt,
                689 members) with every probe enabled, and 1,000,000 frames of
                that LAN's flooded traffic at 2,000 frames/s (see deployed_frames)

Frames are built once per kind with scapy, then varied with byte patches, so
generating a million frames takes seconds, not scapy's minutes.

usage: gen.py OUTDIR [FRAMES]
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import yaml
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from ixpect.probes import KINDS  # noqa: E402

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


def write(path: Path, frames, rate: int = 50_000) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII").pack
        for n, frame in enumerate(frames):
            t = T0 * 1_000_000 + n * 1_000_000 // rate
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


#: the largest real IX-F export of the test data, and its peering LAN
EXPORT, IXP_ID, VLAN_ID = HERE.parent.parent / "shared" / "ixf" / "decix-fra-2016-10-vnonstd.json", 1, 1
#: what the operator adds to the rendered config: every other probe, with their defaults
#: where they have one
BASE = {
    "bum_rate": {"enable": True, "window": "1min",
                 "thresholds": {"broadcast": 5000, "multicast": 5000, "unicast": 10000}},
    "ether_type": {"enable": True},
    "ip_control": {"enable": True},  # prefixes: the rendered LAN's, set below
    "ipv6_router": {"enable": True},
    "l2_protocol": {"enable": True},
    "mac_address": {"enable": True},
    "stp": {"enable": True},
}


def deployed_config(out: Path) -> dict:
    """Render the export twice: once to learn the LAN's prefixes, once with them in
    ip_control and every probe on (as an operator's base config would have it)."""
    render = [sys.executable, "-m", "ixpect", "ixf", "render", "--source", str(EXPORT),
              "--ixp-id", str(IXP_ID), "--vlan-id", str(VLAN_ID)]
    conf, base = out / "deployed.conf.yaml", out / "deployed.base.yaml"
    subprocess.run([*render, "-o", str(conf)], check=True, capture_output=True)
    rendered = yaml.safe_load(conf.read_text())["probes"]
    probes = {**BASE, "ip_control": {"enable": True, "prefixes": rendered["arp_bogon"]["prefixes"]
                                     + rendered["ipv6_bogon"]["prefixes"]}}
    base.write_text(yaml.safe_dump({"probes": probes, "event": {"notifiers": {}}}))
    subprocess.run([*render, "--base", str(base), "-o", str(conf)], check=True, capture_output=True)
    cfg = yaml.safe_load(conf.read_text())
    assert sum(p.get("enable", False) for p in cfg["probes"].values()) == len(KINDS), "not every probe is on"
    return cfg


def deployed_frames(cfg: dict, n: int, rng: random.Random):
    """What a monitor port of that LAN sees, by share of frames:
    - 30 % ARP requests of members for their peers (each router has 60 sessions),
      2 % ARP replies flooded as unknown unicast;
    - 24 % ARP requests for absent peers (300 sessions configured towards addresses
      nobody holds any more, retried every second or so);
    - 18 % NS to the solicited-node group of a peer, 4 % for absent peers,
      3 % unsolicited NA to all nodes;
    - 12 % unknown unicast IPv4/IPv6 transit (TCP between random hosts, 1,000 flows),
      3 % IPv4/IPv6 multicast (mDNS, SSDP);
    - rare strays: STP, LLDP, an RA, OSPF, ARP from an unlisted MAC, a bogon ARP."""
    arp4 = [(bytes.fromhex(e["mac"].replace(":", "")), IPv4Address(e["ip"]).packed)
            for e in cfg["probes"]["arp_neighbor"]["static_resolutions"]]
    nd6 = [(bytes.fromhex(e["mac"].replace(":", "")), IPv6Address(e["ip"]).packed)
           for e in cfg["probes"]["ipv6_neighbor"]["static_resolutions"] if not e["ip"].startswith("fe80")]
    lan4 = IPv4Network(cfg["probes"]["arp_bogon"]["prefixes"][0])
    taken4 = {ip for _, ip in arp4}
    absent4 = [a.packed for a in lan4.hosts() if a.packed not in taken4]
    lan6 = IPv6Network(cfg["probes"]["ipv6_bogon"]["prefixes"][0])
    peers4 = {i: rng.sample(range(len(arp4)), 60) for i in range(len(arp4))}
    peers6 = {i: rng.sample(range(len(nd6)), 60) for i in range(len(nd6))}
    absent_sessions4 = [(rng.randrange(len(arp4)), rng.choice(absent4)) for _ in range(300)]
    absent_sessions6 = [(rng.randrange(len(nd6)), (lan6.network_address + rng.randrange(1 << 32)).packed)
                        for _ in range(300)]
    arp_tmpl = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP()).ljust(60, b"\0")
    ns_tmpl = bytes(Ether(dst="33:33:ff:00:00:00") / IPv6(dst="ff02::1:ff00:0", hlim=255)
                    / ICMPv6ND_NS() / ICMPv6NDOptSrcLLAddr())
    na_tmpl = bytes(Ether(dst="33:33:00:00:00:01") / IPv6(dst="ff02::1", hlim=255)
                    / ICMPv6ND_NA(R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr())

    def arp_frame(sender, tip, target=None):
        smac, sip = sender
        f = bytearray(arp_tmpl)
        if target:
            f[0:6], f[21], f[32:38] = target[0], 2, target[0]
        f[6:12] = f[22:28] = smac
        f[28:32], f[38:42] = sip, tip
        return bytes(f)

    def ns_frame(sender, target):
        f = bytearray(ns_tmpl)
        f[3:6] = f[51:54] = target[13:]
        f[6:12] = f[80:86] = sender[0]
        f[22:38], f[62:78] = sender[1], target
        return icmp6_checksummed(f)

    def na_frame(sender):
        f = bytearray(na_tmpl)
        f[6:12] = f[80:86] = sender[0]
        f[22:38] = f[62:78] = sender[1]
        return icmp6_checksummed(f)

    flows = [(rng.choice(arp4)[0], rng.choice(arp4)[0], rng.getrandbits(32).to_bytes(4, "big"),
              rng.getrandbits(32).to_bytes(4, "big"), rng.randrange(1024, 65536)) for _ in range(1000)]
    ucast4 = bytes(Ether(dst="02:00:00:00:00:01") / IP(ttl=60) / TCP(dport=443, flags="A") / (b"x" * 20))
    ucast6 = bytes(Ether(dst="02:00:00:00:00:01") / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=60)
                   / TCP(dport=443, flags="A"))

    def transit(v6):
        dmac, smac, sip, dip, sport = rng.choice(flows)
        f = bytearray(ucast6 if v6 else ucast4)
        f[0:6], f[6:12] = dmac, smac
        if v6:
            f[22:26], f[38:42] = sip, dip
            f[54:56] = sport.to_bytes(2, "big")
        else:
            f[26:30], f[30:34] = sip, dip
            f[34:36] = sport.to_bytes(2, "big")
        return bytes(f)

    member_mac = arp4[0][0]
    text4 = [str(IPv4Address(ip)) for _, ip in arp4[:6]]
    mdns4 = bytes(Ether(src=member_mac, dst="01:00:5e:00:00:fb") / IP(src=text4[0], dst="224.0.0.251", ttl=255)
                  / UDP(sport=5353, dport=5353) / (b"m" * 30))
    mdns6 = bytes(Ether(src=member_mac, dst="33:33:00:00:00:fb") / IPv6(src=str(IPv6Address(nd6[0][1])), dst="ff02::fb")
                  / UDP(sport=5353, dport=5353) / (b"m" * 30))
    ssdp4 = bytes(Ether(src=arp4[1][0], dst="01:00:5e:7f:ff:fa") / IP(src=text4[1], dst="239.255.255.250", ttl=4)
                  / UDP(sport=1900, dport=1900) / (b"s" * 40))
    strays = [
        bytes(Dot3(src=arp4[2][0], dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()),
        bytes(Ether(src=arp4[3][0], dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07\x04" + bytes(43))),
        bytes(Ether(src=nd6[4][0], dst="33:33:00:00:00:01") / IPv6(src="fe80::4", dst="ff02::1", hlim=255)
              / ICMPv6ND_RA()),
        bytes(Ether(src=arp4[5][0], dst="01:00:5e:00:00:05") / IP(src=text4[5], dst="224.0.0.5", ttl=1, proto=89)
              / bytes(24)),
        arp_frame((bytes.fromhex("02aabbccdd01"), arp4[6][1]), arp4[7][1]),
        arp_frame(arp4[8], bytes((10, 0, 0, 1))),
    ]
    kinds = (("peer4", 300), ("reply4", 20), ("absent4", 240), ("peer6", 180), ("absent6", 40), ("na", 30),
             ("transit4", 80), ("transit6", 40), ("mdns4", 10), ("mdns6", 10), ("ssdp4", 10), ("stray", 1))
    choices = [k for k, w in kinds for _ in range(w)]
    for _ in range(n):
        k = rng.choice(choices)
        if k == "peer4":
            i = rng.randrange(len(arp4))
            yield arp_frame(arp4[i], arp4[rng.choice(peers4[i])][1])
        elif k == "reply4":
            i = rng.randrange(len(arp4))
            j = rng.choice(peers4[i])
            yield arp_frame(arp4[j], arp4[i][1], arp4[i])
        elif k == "absent4":
            i, tip = rng.choice(absent_sessions4)
            yield arp_frame(arp4[i], tip)
        elif k == "peer6":
            i = rng.randrange(len(nd6))
            yield ns_frame(nd6[i], nd6[rng.choice(peers6[i])][1])
        elif k == "absent6":
            i, tip = rng.choice(absent_sessions6)
            yield ns_frame(nd6[i], tip)
        elif k == "na":
            yield na_frame(rng.choice(nd6))
        elif k in ("transit4", "transit6"):
            yield transit(k == "transit6")
        elif k == "stray":
            yield rng.choice(strays)
        else:
            yield {"mdns4": mdns4, "mdns6": mdns6, "ssdp4": ssdp4}[k]


def icmp6_checksummed(f: bytearray) -> bytes:
    """The frame with its ICMPv6 checksum (a real NDP stack would drop it otherwise)."""
    f[56:58] = b"\0\0"
    body = bytes(f[22:54]) + (len(f) - 54).to_bytes(4, "big") + b"\0\0\0\x3a" + bytes(f[54:])
    total = sum(int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    f[56:58] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytes(f)


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    out.mkdir(parents=True, exist_ok=True)
    config(out)
    write(out / "arp.pcap", arp_frames(n, random.Random(1)))
    write(out / "mixed.pcap", mixed_frames(n, random.Random(2)))
    write(out / "deployed.pcap", deployed_frames(deployed_config(out), n, random.Random(3)), rate=2000)
    write(out / "empty.pcap", ())


if __name__ == "__main__":
    main()
