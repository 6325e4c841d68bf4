"""The member table: which IXP member owns a MAC or an IP, so that events name it.

Written by `ixpect ixf render` beside the config as JSON:
    {"macs": {"aa:bb:cc:dd:ee:ff": {"asn": 64500, "name": "Example"}},
     "ips":  {"192.0.2.1": {"asn": 64500, "name": "Example"}},
     "connections": {"64500": 1}}
MACs lowercase colon-separated, IPs in canonical text form (the spellings events use).
A MAC or IP the export lists for several members names all of them: the first (lowest
ASN) as `asn`/`name`, the others in `shared_with` ([{asn, name}]).
The optional `connections` gives, per ASN (a string, as JSON keys are), the member's
number of connections (ports or LAGs) to the LAN, for the mac_address probe.

Who an event names: `member` is the owner of the station that sent the frame, its
Ethernet source (event data `mac_addr_source`); `member_claimed` is the owner of an address
or MAC the frame claims (`ip4_addr`, `ip6_addr`, `mac_addr`, `ip4_addr_source`,
`ip6_addr_source`, in that order: a spoofed address before the MAC it was bound to)
when that is a different member: the victim of a spoof.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ixpect.addresses import canonical_packed

#: event data keys of what a frame claims, most specific first
CLAIMS = ("ip4_addr", "ip6_addr", "mac_addr", "ip4_addr_source", "ip6_addr_source")


def asns(member: dict | None) -> frozenset[int]:
    """Every ASN a member record names (one, or several for a shared MAC or IP)."""
    if member is None:
        return frozenset()
    return frozenset((member["asn"], *(m["asn"] for m in member.get("shared_with", ()))))


class MemberTable:
    def __init__(self, macs: dict[str, dict] | None = None, ips: dict[str, dict] | None = None,
                 connections: dict[str, int] | None = None):
        self.macs = macs or {}
        self.ips = ips or {}
        self.by_addr = {**self.ips, **self.macs}
        self.packed_ips: dict[bytes, dict] = {}  # the addresses as frames carry them (4 or 16 bytes)
        for addr, member in self.ips.items():
            version = 6 if ":" in addr else 4  # the only one ip_address() could find
            try:
                packed = canonical_packed(addr, version) or (IPv6Address if version == 6 else IPv4Address)(addr).packed
                self.packed_ips[packed] = member
            except ValueError:
                raise ValueError(f"ips: {addr!r} is not an IP address") from None
        self.connections = {int(asn): n for asn, n in (connections or {}).items()}

    @classmethod
    def load(cls, path: str | Path) -> MemberTable:
        """Raises OSError, or ValueError naming what is wrong."""
        try:
            doc = json.loads(Path(path).read_text())
        except ValueError as exc:  # not UTF-8, or not JSON
            raise ValueError(f"{path}: not JSON: {exc}") from None
        sections = ("macs", "ips", "connections")
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k, {}), dict) for k in sections):
            raise ValueError(f"{path}: not a member table (a JSON object of macs, ips and connections)")
        try:
            return cls(doc.get("macs"), doc.get("ips"), doc.get("connections"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def name(self, data: dict) -> tuple[dict | None, dict | None]:
        """(member, member_claimed) of an event's data."""
        sender = self.macs.get(data.get("mac_addr_source"))
        for key in CLAIMS:
            owner = self.by_addr.get(data.get(key))
            if owner is not None and owner != sender and not asns(owner) & asns(sender):
                return sender, owner
        return sender, None
