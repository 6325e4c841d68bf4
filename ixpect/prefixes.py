"""Prefix membership for packed addresses, as the probes see them on the wire."""

from __future__ import annotations

from ipaddress import ip_network


class Prefixes:
    """Membership of packed addresses in a few prefixes, with integer masks only
    (no address objects per frame)."""

    def __init__(self, prefixes):
        self.nets = tuple((int(n.network_address), int(n.netmask)) for n in map(ip_network, prefixes))

    def __contains__(self, packed: bytes) -> bool:
        a = int.from_bytes(packed, "big")
        for net, mask in self.nets:
            if a & mask == net:
                return True
        return False
