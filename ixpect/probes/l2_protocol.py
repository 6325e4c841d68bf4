"""l2_protocol: link-local and vendor Layer-2 protocols, which IXP policies forbid on the LAN.

Discovery (CDP, LLDP, EDP, FDP), link aggregation and trunking negotiation (LACP, PAgP,
DTP, VTP, UDLD), 802.1X, loopback keepalives, DEC MOP, IS-IS and any other 802.2 LLC
frame: each belongs between a member router and the IXP switch port at most, and a
port that lets it through leaks its configuration into everyone's LAN. Spanning tree is
the stp probe's.

None of these is routed, so no transit frame between hosts outside the LAN carries
one, and each rule is a property of the frame alone (untagged or behind VLAN tags):
- EtherType 0x88cc lldp, 0x888e eapol, 0x8808 mac-control, 0x9000 loopback, 0x6001/0x6002
  mop; 0x8809 slow protocols by subtype (1 lacp, 2 lacp-marker, 3 oam, else
  slow-protocols);
- 802.3 frames with a SNAP header: Cisco cdp, vtp, dtp, udld, pagp, Extreme edp,
  Foundry fdp by OUI and protocol id, any other SNAP protocol as llc (PVST+ is stp's);
- other 802.3 frames: DSAP 0xfe (ISO network layer) with UI control as isis, esis or
  clnp by its protocol id, anything else as llc (DSAP 0x42, spanning tree, is stp's).
"""

from __future__ import annotations

from ixpect.events import mac
from ixpect.probes import Probe

#: EtherType -> protocol name
ETHER_TYPES = {
    0x88CC: "lldp",
    0x888E: "eapol",  # 802.1X
    0x8808: "mac-control",  # PAUSE and PFC: never meant to pass a switch
    0x9000: "loopback",  # Ethernet configuration testing (Cisco keepalives)
    0x6001: "mop",  # DEC MOP dump/load
    0x6002: "mop",  # DEC MOP remote console
}
#: slow protocols (0x8809) by subtype; other subtypes are "slow-protocols"
SLOW_PROTOCOLS = 0x8809
SLOW_SUBTYPES = {1: "lacp", 2: "lacp-marker", 3: "oam"}
#: SNAP OUI << 16 | protocol id -> protocol name
SNAP = {
    0x00000C2000: "cdp",
    0x00000C2003: "vtp",
    0x00000C2004: "dtp",
    0x00000C0111: "udld",
    0x00000C0104: "pagp",
    0x00E02B00BB: "edp",  # Extreme Discovery Protocol
    0x00E0522000: "fdp",  # Foundry Discovery Protocol
}
#: spanning tree: the stp probe reports it
_STP_SAP, _PVST = 0x42, 0x00000C010B
#: ISO network layer (CLNS) SAP and its protocol ids (the octet after the UI control)
_ISO_SAP = 0xFE
_NLPIDS = {0x83: "isis", 0x82: "esis", 0x81: "clnp"}

PROTOCOLS = sorted({*ETHER_TYPES.values(), *SLOW_SUBTYPES.values(), "slow-protocols", *SNAP.values(),
                    *_NLPIDS.values(), "llc"})


class L2Protocol(Probe):
    ether_types = frozenset((*ETHER_TYPES, SLOW_PROTOCOLS))
    decided_by = ((14, 15),)  # the EtherType and the slow-protocols subtype

    def configure(self, cfg: dict) -> None:
        self.ignore = frozenset(cfg.get("ignore", ()))

    def ether(self, ts, buf, off, ethertype) -> None:
        if ethertype == SLOW_PROTOCOLS:
            name = SLOW_SUBTYPES.get(buf[off], "slow-protocols") if off < len(buf) else "slow-protocols"
        else:
            name = ETHER_TYPES[ethertype]
        self._found(ts, buf, name)

    def llc(self, ts, buf, off, dsap, ssap, control, snap) -> None:
        if snap >= 0:
            if snap == _PVST:
                return
            name = SNAP.get(snap, "llc")
        elif dsap == _STP_SAP:
            return
        elif dsap == _ISO_SAP and control == 3 and off + 3 < len(buf):
            name = _NLPIDS.get(buf[off + 3], "llc")
        else:
            name = "llc"
        self._found(ts, buf, name)

    def _found(self, ts, buf, name) -> None:
        if name not in self.ignore:
            self.emit("L2_PROTOCOL_FOUND", ts, {"mac_addr_source": mac(buf[6:12]), "protocol": name}, buf)
