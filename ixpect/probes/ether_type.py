"""ether_type: only the allowed EtherTypes (IPv4, ARP, IPv6 by default) belong on the LAN."""

from ixpect.decode import LLC
from ixpect.events import mac
from ixpect.probes import Probe


class EtherType(Probe):
    decided_by = ()  # the EtherType alone

    def configure(self, cfg: dict) -> None:
        self.allowed = frozenset(int(t, 16) if isinstance(t, str) else t for t in cfg["allowed_ether_types"])

    def other(self, ts: float, buf: bytes, ethertype: int) -> None:
        self.emit("ETHER_TYPE_VIOLATION", ts, {
            "mac_addr_source": mac(buf[6:12]),
            "ether_type": "llc" if ethertype == LLC else f"0x{ethertype:04x}",
        }, buf)
