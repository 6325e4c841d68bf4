"""Prefix membership for packed addresses, as the probes see them on the wire."""

from __future__ import annotations

from ipaddress import ip_network


#: addresses remembered as inside; the cache starts over when it grows past this,
#: so a flood of distinct addresses cannot exhaust memory
CACHE_LIMIT = 1 << 16


class Prefixes:
    """Membership of packed addresses in a few prefixes, with integer masks only
    (no address objects per frame). Addresses found inside are remembered in
    `inside`, which callers test first: the LAN's own addresses repeat all day."""

    def __init__(self, prefixes):
        self.nets = tuple((int(n.network_address), int(n.netmask)) for n in map(ip_network, prefixes))
        self.inside: set[bytes] = set()

    def __contains__(self, packed: bytes) -> bool:
        if packed in self.inside:
            return True
        a = int.from_bytes(packed, "big")
        for net, mask in self.nets:
            if a & mask == net:
                if len(self.inside) >= CACHE_LIMIT:
                    self.inside.clear()
                self.inside.add(packed)
                return True
        return False
