"""The allowed-traffic policy probes (l2_protocol, ip_control, mac_address) and ARP sender
checks: real captures from tcpdump's test suite where one exists, scapy-built frames
otherwise, and the ordinary peering traffic that must raise nothing."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6MLReport2, ICMPv6ND_Redirect, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, LLC, SNAP, STP, Dot1Q, Dot3, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ixpect import config
from ixpect.members import MemberTable
from ixpect.pcap import PcapError, frames
from ixpect.probes import ip_control, l2_protocol

from conftest import CORPUS, IXPECT, Recorder

A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"
BC = "ff:ff:ff:ff:ff:ff"
L2 = {"l2_protocol": {"enable": True}}
IPC = {"ip_control": {"enable": True, "prefixes": ["10.0.0.0/24", "192.0.2.0/24", "198.51.100.0/31"]}}


def replay(name: str, probes: dict) -> Counter:
    """(type, protocol) -> count of the events a capture of the corpus raises."""
    r = Recorder(probes)
    r.engine.feed(frames(CORPUS / name))
    return Counter((e.type, e.data.get("protocol")) for e in r.events)


def bgp4(src=A, dst=B):
    return Ether(src=src, dst=dst) / IP(src="192.0.2.10", dst="192.0.2.11") / TCP(sport=40000, dport=179, flags="PA") \
        / Raw(b"\xff" * 16 + b"\x00\x13\x04")


def bgp6(src=A, dst=B):
    return Ether(src=src, dst=dst) / IPv6(src="2001:db8::a", dst="2001:db8::b") / TCP(sport=179, dport=40001) \
        / Raw(b"x")


# --- l2_protocol: real captures ----------------------------------------------------

@pytest.mark.needs("test data")
@pytest.mark.parametrize("capture, expected", [
    ("3560_CDP.pcap", {"cdp": 3}),
    ("LLDP_and_CDP.pcap", {"cdp": 4, "lldp": 8}),
    ("lldp_8021_linkagg.pcap", {"lldp": 2}),
    ("DTP.pcap", {"dtp": 5, "llc": 5}),  # and a Cisco SNAP protocol we do not name
    ("rpvstp-trunk-native-vid5.pcap", {"dtp": 2, "vtp": 1, "loopback": 1}),  # its PVST+ BPDUs are stp's
    ("UDLD.pcap", {"udld": 29}),
    ("LACP.pcap", {"lacp": 20}),
    ("slow-ossp.pcap", {"slow-protocols": 1}),  # subtype 10: SyncE ESMC
    ("loopback.pcap", {"loopback": 6}),
    ("eapon1.pcap", {"eapol": 41}),
    ("ISIS_level2_adjacency.pcap", {"isis": 43}),
    ("ipx.pcap", {"llc": 64}),
    ("802.1D_spanning_tree.pcap", {}),
    ("MSTP_Intra-Region_BPDUs.pcap", {}),
])
def test_l2_protocol_in_real_captures(capture, expected):
    counts = replay(capture, L2)
    assert counts == Counter({("L2_PROTOCOL_FOUND", p): n for p, n in expected.items()})


@pytest.mark.needs("test data")
def test_l2_protocol_event_data():
    r = Recorder(L2)
    r.engine.feed(frames(CORPUS / "3560_CDP.pcap"))
    ev = r.events[0]
    assert ev.data == {"mac_addr_source": "00:19:06:ea:b8:85", "protocol": "cdp"}
    assert ev.frame is not None and ev.frame[14:22] == bytes.fromhex("aaaa0300000c2000")


def snap(oui, pid, dst="01:00:0c:cc:cc:cc"):
    return Dot3(src=A, dst=dst) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=oui, code=pid) / Raw(b"\x01" * 40)


def test_l2_protocol_built_frames():
    r = Recorder(L2)
    frames_ = [
        snap(0x0C, 0x0104),  # PAgP
        snap(0xE02B, 0x00BB, "00:e0:2b:00:00:00"),  # EDP
        snap(0xE052, 0x2000, "01:e0:52:cc:cc:cc"),  # FDP
        Ether(src=A, dst="01:80:c2:00:00:02", type=0x8809) / Raw(b"\x02\x01" + bytes(40)),  # LACP marker
        Ether(src=A, dst="01:80:c2:00:00:02", type=0x8809) / Raw(b"\x03" + bytes(41)),  # 802.3ah OAM
        Ether(src=A, dst="ab:00:00:01:00:00", type=0x6001) / Raw(bytes(46)),  # MOP dump/load
        Ether(src=A, dst="ab:00:00:02:00:00", type=0x6002) / Raw(bytes(46)),  # MOP remote console
        Ether(src=A, dst="01:80:c2:00:00:01", type=0x8808) / Raw(b"\x00\x01\xff\xff" + bytes(42)),  # PAUSE
        Ether(src=A, dst="01:80:c2:00:00:0e") / Dot1Q(vlan=7, type=0x88CC) / Raw(bytes(46)),  # tagged LLDP
        Dot3(src=A, dst="09:00:2b:00:00:05") / LLC(dsap=0xFE, ssap=0xFE, ctrl=3) / Raw(b"\x82" + bytes(40)),  # ES-IS
        Dot3(src=A, dst="03:00:00:00:00:01") / LLC(dsap=0xF0, ssap=0xF0, ctrl=3) / Raw(bytes(40)),  # NetBIOS
    ]
    assert [e.data["protocol"] for e in r.feed(*frames_)] == [
        "pagp", "edp", "fdp", "lacp-marker", "oam", "mop", "mop", "mac-control", "lldp", "esis", "llc"]
    assert {e.type for e in r.events} == {"L2_PROTOCOL_FOUND"}


def test_l2_protocol_leaves_stp_and_ordinary_traffic_alone():
    r = Recorder(L2)
    ieee = Dot3(src=B, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()
    pvst = Dot3(src=C, dst="01:00:0c:cc:cc:cd") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x0C, code=0x10B) / STP()
    assert r.feed(ieee, pvst, bgp4(), bgp6(), Ether(src=A, dst=BC) / ARP(psrc="192.0.2.10", hwsrc=A)) == []


@pytest.mark.needs("test data")
def test_l2_protocol_ignore_list_and_reload():
    r = Recorder({"l2_protocol": {"enable": True, "ignore": ["lldp", "lacp"]}})
    r.engine.feed(frames(CORPUS / "LLDP_and_CDP.pcap"))
    r.engine.feed(frames(CORPUS / "LACP.pcap"))
    assert Counter(e.data["protocol"] for e in r.events) == {"cdp": 4}
    r.engine.configure({"l2_protocol": {"enable": True, "ignore": []}})
    r.engine.feed(frames(CORPUS / "LACP.pcap"))
    assert Counter(e.data["protocol"] for e in r.events) == {"cdp": 4, "lacp": 20}


@pytest.mark.needs("test data")
def test_l2_protocol_and_ether_type_both_see_lldp():
    r = Recorder({**L2, "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD]}})
    r.engine.feed(frames(CORPUS / "lldp_8021_linkagg.pcap"))
    assert r.types() == ["L2_PROTOCOL_FOUND", "ETHER_TYPE_VIOLATION"] * 2


def test_malformed_llc_is_a_bad_packet():
    r = Recorder(L2)
    cases = {
        bytes(Dot3(src=A, dst="01:00:0c:cc:cc:cc") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3))
        + b"\x00\x00": "truncated SNAP header (2 bytes)",
        bytes(Ether(src=A, dst=B, type=2) / Raw(b"\xfe\xfe\x03")): "802.3 length 2 too short for an LLC header",
        bytes(Ether(src=A, dst=B, type=40) / Raw(b"\xf0\xf0")): "truncated LLC header (2 bytes)",
        bytes(Ether(src=A, dst=B, type=40) / Raw(b"\xf0\xf0\x00")): "truncated LLC control field",
    }
    for frame, reason in cases.items():
        assert [(e.type, e.data["reason"]) for e in r.feed(frame)] == [("IXPECT_BAD_PACKET", reason)], reason


# --- ip_control: real captures -----------------------------------------------------

@pytest.mark.needs("test data")
@pytest.mark.parametrize("capture, expected", [
    ("OSPFv2_Capture_FINAL.pcapng", {("ROUTING_PROTOCOL_FOUND", "ospf"): 30}),
    ("OSPFv3_broadcast_adjacency.pcap", {("ROUTING_PROTOCOL_FOUND", "ospfv3"): 38}),
    ("OSPFv3_with_AH.pcap", {("ROUTING_PROTOCOL_FOUND", "ospfv3"): 61}),  # behind an AH header
    ("EIGRP_adjacency.pcap", {("ROUTING_PROTOCOL_FOUND", "eigrp"): 53}),
    ("EIGRP_ipv6.pcap", {("ROUTING_PROTOCOL_FOUND", "eigrp"): 1}),
    ("ripv2_auth.pcap", {("ROUTING_PROTOCOL_FOUND", "ripv2"): 12}),
    ("PIMv2_bootstrap.pcap", {("ROUTING_PROTOCOL_FOUND", "pim"): 8}),
    ("PIMv2_hellos.pcap", {("ROUTING_PROTOCOL_FOUND", "pim"): 6}),
    ("vrrp.pcap", {("ROUTING_PROTOCOL_FOUND", "vrrp"): 165}),
    ("HSRP_failover.pcap", {("ROUTING_PROTOCOL_FOUND", "hsrp"): 39}),
    ("IGMP_V1.pcap", {("MULTICAST_GROUP_MEMBERSHIP_FOUND", "igmp"): 27}),
    ("IGMP_V2.pcap", {("MULTICAST_GROUP_MEMBERSHIP_FOUND", "igmp"): 18}),
    ("igmpv3-queries.pcap", {("MULTICAST_GROUP_MEMBERSHIP_FOUND", "igmp"): 6}),
    ("icmpv6.pcap", {("MULTICAST_GROUP_MEMBERSHIP_FOUND", "mld"): 4}),  # MLDv2 reports behind hop-by-hop
    # broadcast discovers; the unicast offers from 192.168.1.1 are outside this LAN's prefixes
    ("dhcp-rfc3004.pcap", {("DHCP_PACKET_FOUND", "dhcp"): 2}),
    # leasequery between a relay and a server in other subnets: routed, as transit would be
    ("dhcp-rfc4388.pcap", {}),
    ("dhcpv6-ia-pd.pcap", {("DHCP_PACKET_FOUND", "dhcpv6"): 4}),
    ("dhcpv4v6-rfc5970-rfc8572.pcap", {("DHCP_PACKET_FOUND", "dhcpv6"): 10, ("DHCP_PACKET_FOUND", "dhcp"): 2}),
    # single-hop BFD between routers is welcome on a peering LAN; so is unicast TFTP
    ("bfd-raw-auth-sha1.pcap", {}),
    ("bgp-bfd-cease.pcap", {}),
    ("tftp.pcap", {}),
])
def test_ip_control_in_real_captures(capture, expected):
    assert replay(capture, IPC) == Counter(expected)


@pytest.mark.needs("test data")
def test_ip_control_unicast_dhcp_on_the_lan():
    """A DHCP server answering by unicast is reported once the capture's LAN is the one configured."""
    counts = replay("dhcp-rfc3004.pcap", {"ip_control": {"enable": True, "prefixes": ["192.168.1.0/24"]}})
    assert counts == {("DHCP_PACKET_FOUND", "dhcp"): 4}
    counts = replay("dhcp-rfc4388.pcap", {"ip_control": {"enable": True, "prefixes": ["10.40.2.0/24"]}})
    assert counts == {("DHCP_PACKET_FOUND", "dhcp"): 34, ("DHCP_PACKET_FOUND", "bootp"): 2}


@pytest.mark.needs("test data")
def test_ip_control_event_data_ipv4_and_ipv6():
    r = Recorder(IPC)
    r.engine.feed(frames(CORPUS / "OSPFv2_Capture_FINAL.pcapng"))
    r.engine.feed(frames(CORPUS / "OSPFv3_broadcast_adjacency.pcap"))
    ospf, ospf6 = r.events[0], r.events[-1]
    assert ospf.data == {"mac_addr_source": "00:25:45:60:17:c1", "protocol": "ospf",
                         "ip4_addr_source": "192.168.121.5"}
    assert set(ospf6.data) == {"mac_addr_source", "protocol", "ip6_addr_source"}
    assert ospf6.data["ip6_addr_source"].startswith("fe80::")


@pytest.mark.needs("test data")
def test_ip_control_directed_broadcast_from_ripv1():
    r = Recorder(IPC)
    r.engine.feed(frames(CORPUS / "ripv1v2.pcap"))  # RIPv1 to 10.0.0.255, RIPv2 to 224.0.0.9
    assert [(e.type, e.data.get("protocol")) for e in r.events] == [
        ("IP_DIRECTED_BROADCAST", None), ("ROUTING_PROTOCOL_FOUND", "ripv1")] * 2 \
        + [("ROUTING_PROTOCOL_FOUND", "ripv2")] * 2
    assert r.events[0].data == {"mac_addr_source": "08:11:96:1c:10:c8", "ip4_addr_source": "10.0.0.20",
                                "ip4_addr_destination": "10.0.0.255"}


def udp4(sport, dport, dst="192.0.2.255", mac_dst=BC, payload=b"x" * 20):
    return Ether(src=A, dst=mac_dst) / IP(src="192.0.2.10", dst=dst) / UDP(sport=sport, dport=dport) / payload


def udp6(sport, dport, dst="ff02::1", mac_dst="33:33:00:00:00:01", payload=b"x" * 20):
    return Ether(src=A, dst=mac_dst) / IPv6(src="fe80::a", dst=dst) / UDP(sport=sport, dport=dport) / payload


def test_ip_control_built_frames():
    r = Recorder(IPC)
    evs = r.feed(
        udp6(521, 521, "ff02::9", "33:33:00:00:00:09"),  # RIPng
        udp6(2029, 2029, "ff02::66", "33:33:00:00:00:66"),  # HSRP for IPv6
        udp4(49152, 3785, "224.0.0.1", "01:00:5e:00:00:01"),  # BFD echo to a group address
        udp4(1234, 69, "255.255.255.255"),  # TFTP broadcast
        Ether(src=A, dst="33:33:00:00:00:12") / IPv6(src="fe80::a", dst="ff02::12", nh=112, hlim=255)
        / Raw(b"\x31\x01" + bytes(30)),  # VRRPv3 for IPv6
        Ether(src=A, dst=BC) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
        / BOOTP(chaddr=A) / DHCP(options=[("message-type", "discover"), "end"]),
        Ether(src=A, dst=B) / IP(src="192.0.2.1", dst="192.0.2.11") / ICMP(type=5, code=1, gw="192.0.2.2")
        / IP(src="192.0.2.11", dst="203.0.113.1") / UDP(),
        Ether(src=A, dst=B) / IPv6(src="fe80::a", dst="fe80::b", hlim=255)
        / ICMPv6ND_Redirect(tgt="fe80::c", dst="2001:db8:9::1"),
        Ether(src=A, dst="33:33:00:00:00:16") / IPv6(src="fe80::a", dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop() / ICMPv6MLReport2(),
    )
    assert [(e.type, e.data["protocol"]) for e in evs if e.type != "IP_DIRECTED_BROADCAST"] == [
        ("ROUTING_PROTOCOL_FOUND", "ripng"), ("ROUTING_PROTOCOL_FOUND", "hsrp"), ("ROUTING_PROTOCOL_FOUND", "bfd"),
        ("DHCP_PACKET_FOUND", "tftp"), ("ROUTING_PROTOCOL_FOUND", "vrrp"), ("DHCP_PACKET_FOUND", "dhcp"),
        ("ICMP_REDIRECT_FOUND", "icmp-redirect"), ("ICMP_REDIRECT_FOUND", "icmpv6-redirect"),
        ("MULTICAST_GROUP_MEMBERSHIP_FOUND", "mld")]
    assert evs[6].data == {"mac_addr_source": A, "protocol": "icmp-redirect", "ip4_addr_source": "192.0.2.1"}


def test_ip_control_ordinary_traffic_raises_nothing():
    r = Recorder(IPC)
    assert r.feed(
        bgp4(), bgp6(), bgp4(dst=BC),
        udp4(49152, 3784, "192.0.2.11", B),  # single-hop BFD control, unicast
        udp4(49152, 3785, "192.0.2.11", B),  # BFD echo, unicast
        udp4(40000, 1985, "192.0.2.11", B),  # an ephemeral port that is HSRP's, unicast
        udp4(53, 40000, "192.0.2.11", B),
        udp4(1234, 5678, "255.255.255.255"),  # limited broadcast is not directed
        udp4(1234, 5678, "198.51.100.1"),  # a /31 has no broadcast address
        Ether(src=A, dst=B) / IP(src="192.0.2.10", dst="192.0.2.11") / ICMP(type=8),
        Ether(src=A, dst=B) / IP(src="192.0.2.10", dst="192.0.2.11", frag=10, proto=17)
        / b"\x00\x44\x00\x43" / (b"x" * 32),  # looks like DHCP, but is no UDP header
        Ether(src=A, dst=B) / IP(src="192.0.2.10", dst="192.0.2.11", frag=100, proto=89) / (b"x" * 32),  # not first
        Ether(src=A, dst=BC) / ARP(psrc="192.0.2.10", hwsrc=A),
    ) == []


TRANSIT4, TRANSIT6 = ("203.0.113.1", "198.18.0.1"), ("2001:db8:f00::1", "2001:db8:bad::1")


def transit(version, proto, sport=None, dport=None, ttl=63, addrs=None, mac_dst=B):
    """A packet between two hosts outside the LAN, forwarded by A's router to B's."""
    src, dst = addrs or (TRANSIT4 if version == 4 else TRANSIT6)
    ip = IP(src=src, dst=dst, ttl=ttl, proto=proto) if version == 4 else IPv6(src=src, dst=dst, hlim=ttl, nh=proto)
    payload = UDP(sport=sport, dport=dport) / Raw(bytes(300)) if proto == 17 else Raw(bytes(40))
    return Ether(src=A, dst=mac_dst) / ip / payload


@pytest.mark.parametrize("version", [4, 6])
def test_ip_control_never_reports_transit_whatever_its_ports(version):
    """Every rule's protocol number, ICMP type and port, both ports the protocol's own,
    between off-LAN hosts: data, never control traffic of this LAN."""
    icmp, types, ports, protocols = ip_control.RULES[version]
    frames_ = [transit(version, 17, port, port) for port in ports]
    frames_ += [transit(version, 17, a, b) for a in (67, 68, 546, 547) for b in (67, 68, 546, 547)]
    frames_ += [transit(version, 17, 40000, port) for port in ports]
    frames_ += [transit(version, proto) for proto in protocols]
    frames_ += [transit(version, icmp) / Raw(bytes([t])) for t in types]
    assert Recorder(IPC).feed(*frames_) == []


@pytest.mark.parametrize("version", [4, 6])
def test_ip_control_reports_the_same_packets_on_the_lan(version):
    lan = ("192.0.2.10", "192.0.2.11") if version == 4 else ("2001:db8:0:1::a", "2001:db8:0:1::b")
    icmp, types, ports, protocols = ip_control.RULES[version]
    probes = {"ip_control": {"enable": True, "prefixes": ["192.0.2.0/24", "2001:db8:0:1::/64"]}}
    r = Recorder(probes)
    found = []
    for port, (name, _, group_only) in ports.items():
        evs = r.feed(transit(version, 17, port, port, addrs=lan, mac_dst=C if not group_only else "01:00:5e:00:00:01"))
        found += [e.data["protocol"] for e in evs]
        if group_only:  # ... and only to a group MAC
            assert r.feed(transit(version, 17, port, port, addrs=lan, mac_dst=C)) == []
    for proto, name in protocols.items():
        (ev,) = r.feed(transit(version, proto, addrs=lan))
        assert ev.data["protocol"] == name and ev.data[f"ip{version}_addr_source"] == lan[0]
    assert {n for n, *_ in ports.values()} - {"dhcp"} <= set(found)
    # the TTL a protocol mandates marks its link messages even between off-LAN addresses
    for name, ttl in ip_control.MANDATED_TTL.items():
        proto = next((p for p, n in protocols.items() if n == name), None)
        if proto is not None:
            assert [e.data["protocol"] for e in r.feed(transit(version, proto, ttl=ttl))] == [name]


def test_ip_control_rogue_dhcp_server_answering_by_unicast():
    offer = Ether(src=A, dst=B) / IP(src="192.0.2.10", dst="192.0.2.99", ttl=64) / UDP(sport=67, dport=68) \
        / BOOTP(op=2, chaddr=B) / DHCP(options=[("message-type", "offer"), "end"])
    (ev,) = Recorder(IPC).feed(offer)
    assert (ev.type, ev.data["protocol"], ev.data["ip4_addr_source"]) == ("DHCP_PACKET_FOUND", "dhcp", "192.0.2.10")
    reply6 = Ether(src=A, dst=B) / IPv6(src="fe80::a", dst="fe80::b") / UDP(sport=547, dport=546) / Raw(b"\x07" + bytes(40))
    assert [e.data["protocol"] for e in Recorder(IPC).feed(reply6)] == ["dhcpv6"]


def test_ip_control_fragments_are_judged_by_their_first_one():
    first = Ether(src=A, dst="01:00:5e:00:00:05") / IP(src="192.0.2.10", dst="224.0.0.5", proto=89, flags="MF") \
        / (b"x" * 24)
    assert [e.data["protocol"] for e in Recorder(IPC).feed(first)] == ["ospf"]


def test_ip_control_directed_broadcast_without_protocol():
    (ev,) = Recorder(IPC).feed(udp4(1234, 5678, "192.0.2.255"))
    assert (ev.type, ev.data) == ("IP_DIRECTED_BROADCAST", {
        "mac_addr_source": A, "ip4_addr_source": "192.0.2.10", "ip4_addr_destination": "192.0.2.255"})


@pytest.mark.needs("test data")
def test_ip_control_ignore_and_no_prefixes():
    r = Recorder({"ip_control": {"enable": True, "ignore": ["mld", "igmp"]}})
    r.engine.feed(frames(CORPUS / "icmpv6.pcap"))
    r.engine.feed(frames(CORPUS / "IGMP_V2.pcap"))
    r.engine.feed(frames(CORPUS / "ripv1v2.pcap"))  # without prefixes: no directed broadcast
    assert Counter(e.data["protocol"] for e in r.events) == {"ripv1": 2, "ripv2": 2}


def test_ip_control_malformed_ipv4_and_udp_are_bad_packets():
    good = bytes(udp4(520, 520, "224.0.0.9", "01:00:5e:00:00:09"))
    cases = {
        good[:30]: "truncated IPv4 header (16 bytes)",
        bytes(Ether(src=A, type=0x0800) / IPv6()): "IPv4 EtherType with IP version 6",
        good[:14] + b"\x44" + good[15:]: "IPv4 header length 16 with total length 48",
        good[:16] + b"\x00\x10" + good[18:]: "IPv4 header length 20 with total length 16",
        good[:16] + b"\x01\x00" + good[18:]: "IPv4 total length 256 exceeds the frame (48)",
        bytes(Ether(src=A, dst=BC) / IP(src="192.0.2.10", dst="192.0.2.1", proto=17) / b"\x02\x08\x02"):
            "truncated UDP header",
    }
    r = Recorder(IPC)
    for frame, reason in cases.items():
        assert [(e.type, e.data["reason"]) for e in r.feed(frame)] == [("IXPECT_BAD_PACKET", reason)], reason


def test_ipv4_is_not_decoded_without_an_ipv4_probe():
    broken = bytes(udp4(520, 520))[:30]
    assert Recorder(L2).feed(broken) == []
    assert Recorder({"arp_neighbor": {"enable": True}}).feed(broken) == []
    assert [e.type for e in Recorder(IPC).feed(broken)] == ["IXPECT_BAD_PACKET"]


def test_ipv6_feeds_nd_and_ip6_probes_alike():
    ra = Ether(src=B, dst="33:33:00:00:00:01") / IPv6(src="fe80::b", dst="ff02::1", nh=58, hlim=255) \
        / Raw(b"\x86\x00\x00\x00\x40\x00\x07\x08" + bytes(8))
    mld = Ether(src=A, dst="33:33:00:00:00:16") / IPv6(src="fe80::a", dst="ff02::16", hlim=1) / ICMPv6MLReport2()
    r = Recorder({**IPC, "ipv6_router": {"enable": True}})
    assert [e.type for e in r.feed(ra, mld)] == ["IPV6_ROUTER_ADVERTISEMENT", "MULTICAST_GROUP_MEMBERSHIP_FOUND"]
    # ip_control alone does not judge neighbor discovery: no hop-limit check, no ND parsing
    bad_ra = Ether(src=B) / IPv6(src="fe80::b", dst="ff02::1", nh=58, hlim=64) \
        / Raw(b"\x86\x00\x00\x00\x40\x00\x07\x08" + bytes(8))
    assert Recorder(IPC).feed(bad_ra) == []


# --- arp_neighbor: ARP_SENDER_MISMATCH ----------------------------------------------

def arp(src, hwsrc, psrc="192.0.2.10"):
    return Ether(src=src, dst=BC) / ARP(op=1, hwsrc=hwsrc, psrc=psrc, pdst="192.0.2.99")


STATIC = {"enable": True, "static_resolutions": [{"ip": "192.0.2.10", "mac": A}]}


def test_arp_sender_mismatch():
    r = Recorder({"arp_neighbor": STATIC})
    assert r.feed(arp(A, A), arp(A, A)) == []
    (ev,) = r.feed(arp(B, A))  # the pair is correct, but another station sent it
    assert (ev.type, ev.data) == ("ARP_SENDER_MISMATCH",
                                  {"mac_addr_source": B, "mac_addr": A, "ip4_addr": "192.0.2.10"})
    evs = r.feed(arp(B, C))  # a spoofed pair from yet another station: both findings
    assert [e.type for e in evs] == ["ARP_SENDER_MISMATCH", "ARP_NEIGHBOR_SPOOFED_STATIC"]


def test_arp_sender_mismatch_can_be_turned_off():
    r = Recorder({"arp_neighbor": {**STATIC, "sender_mismatch": False}})
    assert r.feed(arp(B, A)) == []


@pytest.mark.needs("test data")
def test_arp_sender_mismatch_in_a_real_capture():
    counts = replay("bgp-4byte-asn.pcap", {"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    assert counts == {("ARP_NEIGHBOR_NEW_DYNAMIC", None): 9}  # 12 ARP packets, each from its sender
    counts = replay("arp-oobr.pcap", {"arp_neighbor": {"enable": True, "sender_mismatch": True}})
    assert counts[("ARP_SENDER_MISMATCH", None)] == 429  # a fuzzed capture


# --- mac_address --------------------------------------------------------------------

MEMBERS = MemberTable(
    macs={A: {"asn": 64500, "name": "One"}, B: {"asn": 64500, "name": "One"},
          C: {"asn": 64501, "name": "Two"}, D: {"asn": 64502, "name": "Three"}},
    ips={"192.0.2.10": {"asn": 64500, "name": "One"}},
    connections={"64500": 1, "64501": 1})
MAC = {"mac_address": {"enable": True, "window": 3600.0}}


def test_mac_address_unknown_once_per_window():
    r = Recorder(MAC, MEMBERS)
    stranger = "02:00:00:00:00:99"
    evs = r.feed(bgp4(A, C), bgp4(stranger, A), bgp4(stranger, A), bgp4(C, A))
    assert [(e.type, e.data) for e in evs] == [("MAC_ADDRESS_UNKNOWN", {"mac_addr_source": stranger})]
    assert evs[0].member is None and evs[0].frame is not None
    assert r.feed(bgp4(stranger, A), t0=4500) == []  # the window opened at 1000 lasts an hour
    assert [e.type for e in r.feed(bgp4(stranger, A), t0=4600)] == ["MAC_ADDRESS_UNKNOWN"]  # the next one


def arp_from(src, ip, dst=BC):
    return Ether(src=src, dst=dst) / ARP(op=1, hwsrc=src, psrc=ip, pdst="192.0.2.1")


def test_registered_macs_are_never_too_many():
    """One is 64500's only connection, but A and B are both listed for it: not a violation."""
    r = Recorder(MAC, MEMBERS)
    assert r.feed(bgp4(A, C), bgp4(B, C), arp_from(A, "192.0.2.10"), arp_from(B, "192.0.2.10")) == []
    r.engine.flush()
    assert r.events == []


def test_member_mac_count_exceeded_by_an_unlisted_mac_speaking_for_the_member():
    stranger = "02:00:00:00:00:99"
    r = Recorder(MAC, MEMBERS)
    r.feed(bgp4(A, C), arp_from(stranger, "192.0.2.10"), arp_from(stranger, "192.0.2.10"))
    r.engine.flush()
    unknown, (ev,) = r.events[:1], r.events[1:]
    assert [e.type for e in unknown] == ["MAC_ADDRESS_UNKNOWN"]
    assert ev.type == "MEMBER_MAC_COUNT_EXCEEDED"
    assert ev.data == {"mac_addr_source": stranger, "ip4_addr": "192.0.2.10", "asn": 64500, "connections": 1,
                       "mac_addrs": [A, stranger]}
    assert ev.member is None and ev.member_claimed == {"asn": 64500, "name": "One"}
    assert ev.frame == bytes(arp_from(stranger, "192.0.2.10"))


def test_an_unlisted_mac_alone_is_within_the_count():
    """The member's router was swapped and the export not yet updated: one MAC on one port
    (the neighbor probes report the new MAC for the address; the count is not exceeded)."""
    r = Recorder(MAC, MEMBERS)
    r.feed(arp_from("02:00:00:00:00:99", "192.0.2.10"))
    r.engine.flush()
    assert r.types() == ["MAC_ADDRESS_UNKNOWN"]


def test_member_mac_count_resets_each_window():
    stranger = "02:00:00:00:00:99"
    r = Recorder(MAC, MEMBERS)
    r.feed(bgp4(A, C))
    r.feed(arp_from(stranger, "192.0.2.10"), t0=1000 + 3600)  # A then the stranger: a router swap
    assert r.types() == ["MAC_ADDRESS_UNKNOWN"]
    r.feed(bgp4(A, C), t0=1000 + 3601)  # A comes back while the stranger is active
    r.engine.flush()
    assert r.types() == ["MAC_ADDRESS_UNKNOWN", "MEMBER_MAC_COUNT_EXCEEDED"]


def test_mac_address_reload_with_a_new_member_table():
    r = Recorder(MAC, MEMBERS)
    stranger = "02:00:00:00:00:99"
    assert [e.type for e in r.feed(bgp4(stranger, A))] == ["MAC_ADDRESS_UNKNOWN"]
    r.engine.configure(MAC, MemberTable(macs={stranger: {"asn": 64503, "name": "New"}}))
    assert r.feed(bgp4(stranger, A)) == []
    assert [e.data["mac_addr_source"] for e in r.feed(bgp4(A, C))] == [A]


def test_member_table_connections_field(tmp_path):
    path = tmp_path / "members.json"
    path.write_text('{"macs": {"02:00:00:00:00:0a": {"asn": 64500, "name": "One"}}, "connections": {"64500": 2}}')
    assert MemberTable.load(path).connections == {64500: 2}
    path.write_text('{"macs": {}, "ips": {}}')  # a table without the field still loads
    assert MemberTable.load(path).connections == {}


# --- every policy probe over the whole corpus -----------------------------------------

def test_schema_lists_exactly_the_protocol_names():
    probes = config.schema()["properties"]["probes"]["properties"]
    assert probes["l2_protocol"]["properties"]["ignore"]["items"]["enum"] == l2_protocol.PROTOCOLS
    assert probes["ip_control"]["properties"]["ignore"]["items"]["enum"] == ip_control.PROTOCOLS
    events = set(config.schema()["$defs"]["event_type"]["enum"])
    assert set(ip_control.EVENTS.values()) | {ip_control.BROADCAST, "L2_PROTOCOL_FOUND", "MAC_ADDRESS_UNKNOWN",
                                              "MEMBER_MAC_COUNT_EXCEEDED", "ARP_SENDER_MISMATCH"} <= events


@pytest.mark.needs("test data")
def test_the_corpus_through_every_policy_probe_without_internal_errors():
    r = Recorder({**L2, **IPC, **MAC, "arp_neighbor": {"enable": True, "dynamic_enable": True}}, MEMBERS)
    for path in sorted(CORPUS.iterdir()):
        try:
            r.engine.feed(frames(path))
        except PcapError:
            continue
    types = Counter(r.types())
    assert not [e for e in r.events if "internal error" in e.data.get("reason", "")]
    assert types["L2_PROTOCOL_FOUND"] > 300 and types["ROUTING_PROTOCOL_FOUND"] > 500, types
    assert types["MAC_ADDRESS_UNKNOWN"] > 100 and types["IXPECT_BAD_PACKET"] > 0, types


# --- end to end: config loader, member table file, `ixpect run --pcap` --------------

def test_policy_probes_through_ixpect_run(tmp_path):
    (tmp_path / "members.json").write_text(json.dumps({
        "macs": {A: {"asn": 64500, "name": "One"}, B: {"asn": 64500, "name": "One"}},
        "connections": {"64500": 1}}))
    (tmp_path / "ixpect.conf.yaml").write_text(
        "member_table: members.json\n"
        "probes:\n"
        "  l2_protocol: {enable: true, ignore: [lldp]}\n"
        "  ip_control: {enable: true, prefixes: [192.0.2.0/24]}\n"
        "  mac_address: {enable: true}\n"  # the default window of an hour
        "  arp_neighbor: {enable: true, static_resolutions: [{ip: 192.0.2.10, mac: '02:00:00:00:00:0a'}]}\n")
    lldp = Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes(46))
    wrpcap(str(tmp_path / "in.pcap"),
           [bgp4(A, B), lldp, snap(0x0C, 0x2000), udp4(1234, 5678), bgp4(B, A), arp(C, A), bgp4(A, B)])
    p = subprocess.run([*IXPECT, "run", "-c", tmp_path / "ixpect.conf.yaml", "--pcap", tmp_path / "in.pcap",
                        "--jsonl", "-"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    events = [(e["type"], e["data"], e["member"], e["member_claimed"]) for e in map(json.loads, p.stdout.splitlines())]
    one = {"asn": 64500, "name": "One"}
    assert events == [  # B is One's too (listed): no MEMBER_MAC_COUNT_EXCEEDED
        ("L2_PROTOCOL_FOUND", {"mac_addr_source": A, "protocol": "cdp"}, one, None),
        ("IP_DIRECTED_BROADCAST", {"mac_addr_source": A, "ip4_addr_source": "192.0.2.10",
                                   "ip4_addr_destination": "192.0.2.255"}, one, None),
        ("MAC_ADDRESS_UNKNOWN", {"mac_addr_source": C}, None, None),
        ("ARP_SENDER_MISMATCH", {"mac_addr_source": C, "mac_addr": A, "ip4_addr": "192.0.2.10"}, None, one),
    ]
