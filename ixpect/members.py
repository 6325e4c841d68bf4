"""The member table: which IXP member owns a MAC or an IP, so that events name it.

Written by `ixpect ixf render` beside the config as JSON:
    {"macs": {"aa:bb:cc:dd:ee:ff": {"asn": 64500, "name": "Example"}},
     "ips":  {"192.0.2.1": {"asn": 64500, "name": "Example"}},
     "connections": {"64500": 1}}
MACs lowercase colon-separated, IPs in canonical text form (the spellings events use).
The optional `connections` gives, per ASN (a string, as JSON keys are), the member's
number of connections (ports or LAGs) to the LAN: the mac_address probe allows that
many MACs per member ("one MAC per port"); a member without an entry is not counted.
"""

from __future__ import annotations

import json
from pathlib import Path

#: event data keys that identify whom an event is about, in order: the station that
#: sent the frame, then the MAC or address it claimed
_KEYS = ("mac_addr_source", "mac_addr", "ip4_addr", "ip6_addr", "ip4_addr_source", "ip6_addr_source")


class MemberTable:
    def __init__(self, macs: dict[str, dict] | None = None, ips: dict[str, dict] | None = None,
                 connections: dict[str, int] | None = None):
        self.macs = macs or {}
        self.by_addr = {**(ips or {}), **self.macs}
        self.connections = {int(asn): n for asn, n in (connections or {}).items()}

    @classmethod
    def load(cls, path: str | Path) -> MemberTable:
        doc = json.loads(Path(path).read_text())
        return cls(doc.get("macs"), doc.get("ips"), doc.get("connections"))

    def lookup(self, data: dict) -> dict | None:
        for key in _KEYS:
            value = data.get(key)
            if value is not None:
                member = self.by_addr.get(value)
                if member is not None:
                    return member
        return None
