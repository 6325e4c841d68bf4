"""Turn a (schema-checked) export into clean records: one per (ixp_id, vlan_id, IP address).

What real exports do and what becomes of it:
- MACs as `AA:BB:..`, `aabb.ccdd.eeff`, `aa-bb-..`, comma-joined, with whitespace or as a Python
  list repr: all become lowercase colon form; "", "unknown", all-zero and multicast MACs are
  dropped with a warning.
- 0.4/0.5 put one `mac_address` on the VLAN entry: it feeds both address families. 0.6+ put
  `mac_addresses` under `ipv4`/`ipv6`: each feeds its own family.
- IPv4 and IPv6 of one port in separate `vlan_list` entries, and repeated entries, are merged by
  address (MACs united, several MACs per IP allowed).
- A VLAN entry without `vlan_id` belongs to VLAN 0, the id exports use for "the only one".
- Addresses with whitespace, a prefix length or comma-joined are cleaned; unparsable ones dropped
  with a warning.
Connection `state` is not used: its values are not comparable across exporters, and a static
entry for a port that is not up yet costs nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from ixpect.ixf import Problems

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_FAMILIES = (("ipv4", 4), ("ipv6", 6))
_SEP = re.compile(r"[\s,;]+")
_QUOTED = re.compile(r"u?(['\"])(.*)\1")
_MAC_SEP = re.compile(r"[:.\-]")
_HEX12 = re.compile(r"[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Member:
    asn: int
    name: str

    def __str__(self) -> str:
        return f"AS{self.asn} {self.name}"


@dataclass
class Address:
    ixp_id: int
    vlan_id: int
    ip: IP
    macs: set[str] = field(default_factory=set)
    owners: dict[int, Member] = field(default_factory=dict)  # ASN -> member; >1 is a conflict


@dataclass
class Vlan:
    id: int
    name: str = ""
    prefixes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    declared: bool = True


@dataclass
class Infrastructure:
    ixp_id: int
    shortname: str = ""
    vlans: dict[int, Vlan] = field(default_factory=dict)
    declared: bool = True


def parse_macs(value, where: str, problems: Problems) -> set[str]:
    """Every usable MAC in a field, lowercase colon form; the rest reported."""
    tokens = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str):
            problems.add("unusable MAC dropped", f"{where}: {item!r}")
            continue
        text = item.strip().strip("[]")
        parts = [t for t in _SEP.split(text) if t]
        if not parts:
            problems.add("empty MAC dropped", f"{where}: {item!r}")
        tokens += parts
    macs = set()
    for tok in tokens:
        quoted = _QUOTED.fullmatch(tok)
        raw = quoted.group(2) if quoted else tok
        digits = _MAC_SEP.sub("", raw)
        if not _HEX12.fullmatch(digits):
            problems.add("unusable MAC dropped", f"{where}: {raw!r}")
            continue
        mac = ":".join(digits[i:i + 2] for i in range(0, 12, 2)).lower()
        if mac == "00:00:00:00:00:00" or int(mac[:2], 16) & 1:
            problems.add("placeholder or multicast MAC dropped", f"{where}: {mac}")
            continue
        macs.add(mac)
    return macs


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The modified EUI-64 fe80:: address a router derives from its MAC (RFC 4291 appendix A)."""
    b = bytearray.fromhex(mac.replace(":", ""))
    b[0] ^= 0x02
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:]))


def _parse_ips(value, family: int, where: str, problems: Problems) -> list[IP]:
    """Usually one address; DE-CIX once joined two with a comma, like its MACs."""
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.add("empty address dropped", where)
        return []
    texts = [t for t in _SEP.split(str(value).strip()) if t]
    if len(texts) > 1:
        problems.add("comma-joined addresses split", f"{where}: {value!r}")
    out = []
    for text in texts:
        if "/" in text:
            problems.add("prefix length on an address ignored", f"{where}: {text!r}")
            text = text.split("/", 1)[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            problems.add("unparsable address dropped", f"{where}: {value!r}")
            continue
        if ip.version != family:
            problems.add("address of the wrong family dropped", f"{where}: {value!r}")
            continue
        out.append(ip)
    return out


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Export:
    """The parts of an export the monitor needs: infrastructures, VLANs and member addresses."""

    def __init__(self, doc: dict, problems: Problems):
        self.problems = problems
        self.infrastructures: dict[int, Infrastructure] = {}
        self.addresses: dict[tuple[int, int, IP], Address] = {}
        self.connections: dict[tuple[int, int], Counter] = {}  # (ixp_id, vlan_id) -> ASN -> ports
        for ixp in _list(doc.get("ixp_list")):
            self._ixp(ixp)
        for i, m in enumerate(_list(doc.get("member_list"))):
            self._member(i, m)

    def lan(self, ixp_id: int, vlan_id: int) -> list[Address]:
        """The selected LAN's addresses, sorted (IPv4 first) so output is deterministic."""
        return sorted((a for (x, v, _), a in self.addresses.items() if (x, v) == (ixp_id, vlan_id)),
                      key=lambda a: (a.ip.version, a.ip))

    def vlan(self, ixp_id: int, vlan_id: int) -> Vlan | None:
        ixp = self.infrastructures.get(ixp_id)
        return ixp.vlans.get(vlan_id) if ixp else None

    def _ixp(self, ixp) -> None:
        ixp_id = _int(ixp.get("ixp_id")) if isinstance(ixp, dict) else None
        if ixp_id is None:
            return
        infra = self.infrastructures.setdefault(ixp_id, Infrastructure(ixp_id))
        infra.shortname = str(ixp.get("shortname") or "")
        for v in _list(ixp.get("vlan")):
            vid = _int(v.get("id")) if isinstance(v, dict) else None
            if vid is None:
                continue
            vlan = infra.vlans.setdefault(vid, Vlan(vid))
            vlan.name = str(v.get("name") or "")
            for af, family in _FAMILIES:
                net = self._prefix(v.get(af), family, f"ixp_id {ixp_id} vlan {vid} {af}")
                if net is not None:
                    vlan.prefixes.append(net)

    def _prefix(self, spec, family: int, where: str):
        if not isinstance(spec, dict) or spec.get("prefix") in (None, ""):
            return None
        text = f"{str(spec['prefix']).strip()}/{spec.get('mask_length')}"
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            net = None
        if net is None or net.version != family:
            self.problems.add("unusable VLAN prefix ignored", f"{where}: {text!r}")
            return None
        return net

    def _member(self, index: int, m) -> None:
        asn = _int(m.get("asnum")) if isinstance(m, dict) else None
        if asn is None:
            return
        member = Member(asn, str(m.get("name") or "").strip() or f"AS{asn}")
        for c in _list(m.get("connection_list")):
            ixp_id = _int(c.get("ixp_id")) if isinstance(c, dict) else None
            if ixp_id is None:
                continue
            vlans = set()
            for v in _list(c.get("vlan_list")):
                if isinstance(v, dict):
                    vlans.add(self._vlan_entry(member, ixp_id, v))
            for vlan_id in vlans:  # a connection (one port or a LAG) counts once per VLAN
                self.connections.setdefault((ixp_id, vlan_id), Counter())[asn] += 1

    def _vlan_entry(self, member: Member, ixp_id: int, v: dict) -> int:
        """Record the entry's addresses and MACs; returns its VLAN id."""
        vlan_id = _int(v.get("vlan_id")) or 0
        where = f"{member} (ixp_id {ixp_id} vlan_id {vlan_id})"
        shared = parse_macs(v["mac_address"], where, self.problems) if "mac_address" in v else set()
        for af, family in _FAMILIES:
            spec = v.get(af)
            if not isinstance(spec, dict):
                continue
            if "mac_address" in spec:
                self.problems.add(f"misspelt key {af}.mac_address ignored (the schema says mac_addresses)", where)
            macs = shared | parse_macs(spec.get("mac_addresses", []), f"{where} {af}", self.problems)
            for ip in _parse_ips(spec.get("address"), family, f"{where} {af}.address", self.problems):
                addr = self.addresses.setdefault((ixp_id, vlan_id, ip), Address(ixp_id, vlan_id, ip))
                addr.macs |= macs
                addr.owners.setdefault(member.asn, member)
                self._note_vlan(ixp_id, vlan_id)
        return vlan_id

    def _note_vlan(self, ixp_id: int, vlan_id: int) -> None:
        """Connections may name infrastructures and VLANs that ixp_list does not declare."""
        infra = self.infrastructures.get(ixp_id)
        if infra is None:
            infra = self.infrastructures[ixp_id] = Infrastructure(ixp_id, declared=False)
        if vlan_id not in infra.vlans:
            infra.vlans[vlan_id] = Vlan(vlan_id, declared=False)


def counts(lan: list[Address]) -> dict[str, int]:
    """What an operator checks first: members, addresses per family, MACs."""
    return {"members": len({asn for a in lan for asn in a.owners}),
            "ipv4": sum(a.ip.version == 4 for a in lan), "ipv6": sum(a.ip.version == 6 for a in lan),
            "macs": len({m for a in lan for m in a.macs})}


def _list(value) -> list:
    return value if isinstance(value, list) else []
