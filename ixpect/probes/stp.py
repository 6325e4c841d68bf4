"""stp: spanning tree BPDUs (IEEE and Cisco PVST+) must never reach the peering LAN."""

from ixpect.events import mac
from ixpect.probes import Probe

STP_DESTINATIONS = frozenset((bytes.fromhex("0180c2000000"), bytes.fromhex("01000ccccccd")))


class Stp(Probe):
    def llc(self, ts, buf, off, dsap, ssap, control, snap) -> None:
        dst = buf[:6]
        if dst in STP_DESTINATIONS:
            self.emit("STP_PACKET_FOUND", ts,
                      {"mac_addr_source": mac(buf[6:12]), "mac_addr_destination": mac(dst)}, buf)
