"""Hand-written frame decoding for the per-frame path.

Each function decodes one layer from a `bytes` frame at an offset and returns plain
tuples of ints and `bytes` slices: no objects per frame, no text formatting (that
happens only when an event is raised). Truncated or inconsistent input raises
`Malformed` with a reason; the engine turns it into an IXPECT_BAD_PACKET event, so
the decoder never lets anything else escape. A frame at least `snaplen` long may
have been cut short by the capture: an IP packet longer than such a frame is
decoded as far as it was captured.
"""

from __future__ import annotations

import struct

#: 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 outer tag
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
#: pseudo EtherType of 802.3 frames (length field instead of a type): LLC/SNAP
LLC = -1

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD

ICMP, UDP, ICMPV6 = 1, 17, 58
ND_RS, ND_RA, ND_NS, ND_NA = 133, 134, 135, 136
#: length of each ND message before its options, from the ICMPv6 type octet on
_ND_FIXED = {ND_RS: 8, ND_RA: 16, ND_NS: 24, ND_NA: 24}
_OPT_SLLA, _OPT_TLLA = 1, 2

#: IPv6 extension headers with the generic (next, length in 8 octets - 1) layout
_EXT_GENERIC = frozenset((0, 43, 60, 135, 139, 140))
_EXT_FRAGMENT, _EXT_AH, _NO_NEXT, _ESP = 44, 51, 59, 50
#: the extension headers ipv6() walks through
IPV6_EXTENSIONS = _EXT_GENERIC | {_EXT_FRAGMENT, _EXT_AH}


class Malformed(Exception):
    """A frame that cannot be what its headers say it is."""

    @property
    def reason(self) -> str:
        return self.args[0]


def ethernet(buf: bytes) -> tuple[int, int]:
    """(EtherType, offset of its payload), skipping VLAN tags; 802.3 frames give LLC."""
    n = len(buf)
    if n < 14:
        raise Malformed(f"truncated Ethernet header ({n} bytes)")
    et = buf[12] << 8 | buf[13]
    off = 14
    while et in VLAN_TPIDS:
        if n < off + 4:
            raise Malformed("truncated VLAN tag")
        et = buf[off + 2] << 8 | buf[off + 3]
        off += 4
    if et < 0x0600:
        return LLC, off
    return et, off


_ARP_ETHER_IPV4 = bytes.fromhex("000108000604")
_ARP_BODY = struct.Struct("!H6s4s6s4s").unpack_from  # op, sha, spa, tha, tpa in one C call


def arp(buf: bytes, off: int) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """(op, sender MAC, sender IPv4, target MAC, target IPv4) of an Ethernet/IPv4 ARP
    packet, or None for ARP of another hardware or protocol type."""
    if buf[off:off + 6] == _ARP_ETHER_IPV4 and len(buf) >= off + 28:  # nearly all: two tests, not four
        return _ARP_BODY(buf, off + 6)
    if len(buf) < off + 8:
        raise Malformed(f"truncated ARP header ({len(buf) - off} bytes)")
    if buf[off:off + 6] == _ARP_ETHER_IPV4:
        raise Malformed(f"truncated ARP packet ({len(buf) - off} bytes)")
    if buf[off:off + 4] == _ARP_ETHER_IPV4[:4]:
        raise Malformed(f"ARP for Ethernet/IPv4 with address lengths {buf[off + 4]}/{buf[off + 5]}")
    return None


_IPV4 = struct.Struct("!BxHxxHxBxx4s4s").unpack_from  # ver/IHL, length, fragment, protocol, addresses


def ipv4(buf: bytes, off: int, snaplen: float) -> tuple[bytes, bytes, int, int, int]:
    """(source, destination, protocol, its offset, end of the IPv4 packet). A non-first
    fragment yields the protocol with no payload to decode (offset == end)."""
    n = len(buf)
    if n < off + 20:
        raise Malformed(f"truncated IPv4 header ({n - off} bytes)")
    vihl, length, frag, proto, src, dst = _IPV4(buf, off)
    if vihl >> 4 != 4:
        raise Malformed(f"IPv4 EtherType with IP version {vihl >> 4}")
    hlen = (vihl & 15) * 4
    if hlen < 20 or length < hlen:
        raise Malformed(f"IPv4 header length {hlen} with total length {length}")
    end = off + length
    if end > n:
        if n < snaplen:
            raise Malformed(f"IPv4 total length {length} exceeds the frame ({n - off})")
        end = n
    return src, dst, proto, end if frag & 0x1FFF else min(off + hlen, end), end


def udp(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """(source port, destination port) of a UDP header."""
    if p + 8 > end:
        raise Malformed("truncated UDP header")
    return buf[p] << 8 | buf[p + 1], buf[p + 2] << 8 | buf[p + 3]


def llc(buf: bytes, off: int) -> tuple[int, int, int, int]:
    """(DSAP, SSAP, control, SNAP) of the 802.2 LLC header at `off`, right after the
    802.3 length field; SNAP is the 40-bit OUI and protocol id (OUI << 16 | PID) of a
    SNAP header (DSAP/SSAP 0xaa, UI), else -1. Control is one octet for U-format
    frames and two for I/S-format ones."""
    length = buf[off - 2] << 8 | buf[off - 1]
    if length < 3:
        raise Malformed(f"802.3 length {length} too short for an LLC header")
    if len(buf) < off + 3:
        raise Malformed(f"truncated LLC header ({len(buf) - off} bytes)")
    dsap, ssap, ctrl = buf[off], buf[off + 1], buf[off + 2]
    if ctrl & 3 != 3:  # I or S format: a second control octet
        if len(buf) < off + 4:
            raise Malformed("truncated LLC control field")
        return dsap, ssap, ctrl << 8 | buf[off + 3], -1
    if dsap == 0xAA and ssap == 0xAA and ctrl == 3:
        if len(buf) < off + 8:
            raise Malformed(f"truncated SNAP header ({len(buf) - off - 3} bytes)")
        return dsap, ssap, ctrl, int.from_bytes(buf[off + 3:off + 8], "big")
    return dsap, ssap, ctrl, -1


def ipv6(buf: bytes, off: int, snaplen: float) -> tuple[bytes, bytes, int, int, int, int]:
    """(source, destination, hop limit, upper-layer protocol, its offset, end of the
    IPv6 payload), walking the extension header chain. A non-first fragment or ESP
    yields the protocol with no payload to decode (offset == end)."""
    n = len(buf)
    if n < off + 40:
        raise Malformed(f"truncated IPv6 header ({n - off} bytes)")
    if buf[off] >> 4 != 6:
        raise Malformed(f"IPv6 EtherType with IP version {buf[off] >> 4}")
    end = off + 40 + (buf[off + 4] << 8 | buf[off + 5])
    if end > n:
        if n < snaplen:
            raise Malformed(f"IPv6 payload length {end - off - 40} exceeds the frame ({n - off - 40})")
        end = n
    proto = buf[off + 6]
    p = off + 40
    while proto in IPV6_EXTENSIONS:  # one test for a packet without any
        if proto in _EXT_GENERIC:
            length = 8 * (buf[p + 1] + 1) if p + 2 <= end else 0
        elif proto == _EXT_FRAGMENT:
            if p + 8 <= end and (buf[p + 2] << 8 | buf[p + 3]) & 0xFFF8:
                return buf[off + 8:off + 24], buf[off + 24:off + 40], buf[off + 7], buf[p], end, end
            length = 8
        else:  # _EXT_AH
            length = 4 * (buf[p + 1] + 2) if p + 2 <= end else 0
        if length == 0 or p + length > end:
            raise Malformed(f"truncated IPv6 extension header {proto}")
        proto = buf[p]
        p += length
    if proto in (_ESP, _NO_NEXT):
        p = end
    return buf[off + 8:off + 24], buf[off + 24:off + 40], buf[off + 7], proto, p, end


def nd(buf: bytes, p: int, end: int) -> tuple[int, bytes | None, bytes | None]:
    """(ICMPv6 type, target address or None, link-layer address option or None) of a
    router/neighbor solicitation or advertisement; type 0 for any other ICMPv6 message.
    The link-layer option is the source one (NS, RS, RA) or the target one (NA)."""
    if p + 4 > end:
        raise Malformed("truncated ICMPv6 header")
    kind = buf[p]
    fixed = _ND_FIXED.get(kind)
    if fixed is None:
        return 0, None, None
    o = p + fixed
    if o > end:
        raise Malformed(f"truncated ICMPv6 type {kind}")
    target = buf[p + 8:p + 24] if kind >= ND_NS else None
    want = _OPT_TLLA if kind == ND_NA else _OPT_SLLA
    lladdr = None
    while o < end:
        if o + 2 > end:
            raise Malformed("truncated ND option")
        length = buf[o + 1] * 8
        if length == 0:
            raise Malformed(f"ND option {buf[o]} with length 0")
        if o + length > end:
            raise Malformed(f"ND option {buf[o]} exceeds the packet")
        if buf[o] == want and lladdr is None:
            lladdr = buf[o + 2:o + 8]
        o += length
    return kind, target, lladdr
