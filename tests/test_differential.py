"""Differential test: the hand-written decoder against scapy's dissection, over every
Ethernet frame of tcpdump's test captures. Wherever our decoder accepts a frame, each
field it returns must equal scapy's."""

from __future__ import annotations

import logging
from collections import Counter
from ipaddress import IPv6Address

import pytest

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, _ICMPv6
from scapy.layers.ipsec import AH  # binds AH to IPv6 so that scapy walks through it too
from scapy.layers.l2 import ARP, LLC as LLCHeader, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from ixpect import decode
from ixpect.decode import ICMPV6, LLC, UDP as IP_UDP, Malformed
from ixpect.pcap import PcapError, frames

from conftest import CORPUS

logging.getLogger("scapy").setLevel(logging.ERROR)


def v6(a) -> str:
    return str(IPv6Address(a))


def ethernet_fields(pkt):
    """(EtherType after VLAN tags or LLC, innermost layer) as scapy sees them."""
    if isinstance(pkt, Dot3) or (isinstance(pkt, Ether) and pkt.type < 0x0600):
        return LLC, None
    layer = pkt
    while isinstance(layer.payload, (Dot1Q, Dot1AD)):
        layer = layer.payload
    if layer.type < 0x0600:  # a tagged 802.3 frame: the "type" is a length
        return LLC, None
    return layer.type, layer.payload


def check(buf: bytes, seen: Counter) -> None:
    try:
        et, off = decode.ethernet(buf)
    except Malformed:
        seen["malformed"] += 1
        return
    pkt = Ether(buf)
    assert (pkt.dst, pkt.src) == (buf[:6].hex(":"), buf[6:12].hex(":"))
    s_et, inner = ethernet_fields(pkt)
    assert et == s_et
    seen["ethernet"] += 1
    try:
        if et == decode.ETH_ARP:
            fields = decode.arp(buf, off)
            if fields is None:
                return
            a = inner
            assert isinstance(a, ARP)
            assert (a.hwtype, a.ptype, a.hwlen, a.plen) == (1, 0x0800, 6, 4)
            op, sha, spa, tha, tpa = fields
            assert (op, sha.hex(":"), ".".join(map(str, spa)), tha.hex(":"), ".".join(map(str, tpa))) == \
                (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst)
            seen["arp"] += 1
        elif et == decode.ETH_IPV4:
            src, dst, proto, p, end = decode.ipv4(buf, off, float("inf"))
            ip = inner
            assert isinstance(ip, IP)
            assert (".".join(map(str, src)), ".".join(map(str, dst)), proto) == (ip.src, ip.dst, ip.proto)
            assert end == off + ip.len
            assert p == (end if ip.frag else off + 4 * ip.ihl)
            seen["ipv4"] += 1
            if proto == IP_UDP and p < end and isinstance(ip.payload, UDP):
                assert decode.udp(buf, p, end) == (ip.payload.sport, ip.payload.dport)
                seen["udp"] += 1
        elif et == LLC:
            dsap, ssap, ctrl, snap = decode.llc(buf, off)
            llc = pkt.getlayer(LLCHeader)
            if llc is None:  # scapy did not take it for LLC (e.g. a tagged 802.3 frame)
                return
            assert (dsap, ssap) == (llc.dsap, llc.ssap)
            assert (ctrl if ctrl & 3 == 3 else ctrl >> 8) == llc.ctrl
            s = llc.getlayer(SNAP)
            assert snap == (s.OUI << 16 | s.code if s is not None else -1)
            seen["llc"] += 1
        elif et == decode.ETH_IPV6:
            src, dst, hlim, proto, p, end = decode.ipv6(buf, off, float("inf"))
            ip = inner
            assert isinstance(ip, IPv6)
            assert (v6(src), v6(dst), hlim) == (v6(ip.src), v6(ip.dst), ip.hlim)
            last, upper = ip, ip.payload
            while isinstance(upper, AH) or type(upper).__name__.startswith("IPv6ExtHdr"):
                if type(upper).__name__ == "IPv6ExtHdrFragment" and upper.offset:
                    assert proto == upper.nh and p == end
                    seen["ipv6 fragment"] += 1
                    return
                last, upper = upper, upper.payload
            assert proto == last.nh
            seen["ipv6"] += 1
            if proto == ICMPV6 and p < end:
                kind, target, lladdr = decode.nd(buf, p, end)
                assert isinstance(upper, (_ICMPv6, Raw)) or upper.name.startswith("ICMPv6")
                assert buf[p] == bytes(upper)[0]
                if kind:
                    if target is not None:
                        assert v6(target) == v6(upper.tgt)
                    opt = upper.payload
                    want = "ICMPv6NDOptDstLLAddr" if kind == decode.ND_NA else "ICMPv6NDOptSrcLLAddr"
                    while opt.name != "NoPayload" and type(opt).__name__ != want:
                        opt = opt.payload
                    assert lladdr == (bytes.fromhex(opt.lladdr.replace(":", "")) if opt.name != "NoPayload" else None)
                    seen[f"icmpv6 {kind}"] += 1
    except Malformed:
        seen["malformed"] += 1


@pytest.mark.needs("test data")
def test_decoder_agrees_with_scapy_on_the_tcpdump_corpus():
    seen: Counter = Counter()
    for path in sorted(CORPUS.iterdir()):
        try:
            for _, buf in frames(path):
                try:
                    check(buf, seen)
                except AssertionError as exc:
                    raise AssertionError(f"{path.name}: {buf.hex()}") from exc
        except PcapError:
            continue
    # the corpus must actually exercise each layer, or this test proves nothing
    assert seen["ethernet"] > 8000 and seen["arp"] > 1000 and seen["ipv6"] > 500, seen
    assert seen["ipv4"] > 3000 and seen["udp"] > 500 and seen["llc"] > 300, seen
    assert sum(v for k, v in seen.items() if k.startswith("icmpv6 ")) > 15, seen
