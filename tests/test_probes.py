"""Every probe: each event it raises, and each edge case that must raise nothing."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop)
from scapy.layers.l2 import ARP, LLC, SNAP, STP, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from conftest import Recorder

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BC = "ff:ff:ff:ff:ff:ff"


def arp(src, psrc, pdst="192.0.2.99", op=1, hwsrc=None, hwdst="00:00:00:00:00:00"):
    return Ether(src=src, dst=BC) / ARP(op=op, hwsrc=hwsrc or src, psrc=psrc, pdst=pdst, hwdst=hwdst)


def ns(mac, src, target, sllao=True, hlim=255):
    pkt = Ether(src=mac, dst="33:33:ff:00:00:01") / IPv6(src=src, dst="ff02::1:ff00:1", hlim=hlim) / ICMPv6ND_NS(tgt=target)
    return pkt / ICMPv6NDOptSrcLLAddr(lladdr=mac) if sllao else pkt


def na(mac, target, tllao=True, lladdr=None):
    pkt = Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=target, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=target)
    return pkt / ICMPv6NDOptDstLLAddr(lladdr=lladdr or mac) if tllao else pkt


# --- arp_neighbor ---------------------------------------------------------------

STATIC4 = {"enable": True, "static_resolutions": [
    {"ip": "192.0.2.10", "mac": A},
    {"ip": "192.0.2.11", "mac": B}, {"ip": "192.0.2.11", "mac": C},  # LAG: two MACs, one IP
]}


def test_arp_static_pairs_and_lag_raise_nothing():
    r = Recorder({"arp_neighbor": STATIC4})
    assert r.feed(arp(A, "192.0.2.10"), arp(B, "192.0.2.11"), arp(C, "192.0.2.11"), arp(A, "192.0.2.10")) == []


def test_arp_spoofed_static_names_the_expected_macs():
    r = Recorder({"arp_neighbor": STATIC4})
    (ev,) = r.feed(arp(A, "192.0.2.11", op=2))
    assert ev.type == "ARP_NEIGHBOR_SPOOFED_STATIC"
    assert ev.data == {"mac_addr_source": A, "ip4_addr": "192.0.2.11", "mac_addr": A, "mac_addr_expected": [B, C]}
    assert ev.timestamp == 1000.0 and ev.frame is not None


def test_arp_unknown_without_dynamic_learning_every_time():
    r = Recorder({"arp_neighbor": STATIC4})
    evs = r.feed(arp(A, "192.0.2.20"), arp(A, "192.0.2.20"))
    assert [e.type for e in evs] == ["ARP_NEIGHBOR_UNKNOWN"] * 2
    assert evs[0].data == {"mac_addr_source": A, "ip4_addr": "192.0.2.20", "mac_addr": A}


def test_arp_dynamic_learns_first_mac_and_flags_later_ones():
    r = Recorder({"arp_neighbor": {**STATIC4, "dynamic_enable": True}})
    evs = r.feed(arp(A, "192.0.2.20"), arp(A, "192.0.2.20", op=2), arp(B, "192.0.2.20"), arp(A, "192.0.2.20"))
    assert [e.type for e in evs] == ["ARP_NEIGHBOR_NEW_DYNAMIC", "ARP_NEIGHBOR_SPOOFED_DYNAMIC"]
    assert evs[1].data == {"mac_addr_source": B, "ip4_addr": "192.0.2.20", "mac_addr": B, "mac_addr_expected": [A]}


def test_arp_static_wins_over_dynamic_learning():
    r = Recorder({"arp_neighbor": {**STATIC4, "dynamic_enable": True}})
    assert [e.type for e in r.feed(arp(C, "192.0.2.10"))] == ["ARP_NEIGHBOR_SPOOFED_STATIC"]


def test_arp_prefixes_bound_dynamic_learning():
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True, "prefixes": ["192.0.2.0/24"]}})
    evs = r.feed(arp(A, "192.0.2.20"), arp(A, "198.51.100.1"))
    assert [e.type for e in evs] == ["ARP_NEIGHBOR_NEW_DYNAMIC", "ARP_NEIGHBOR_UNKNOWN"]


def test_arp_probe_never_teaches_or_spoofs():
    r = Recorder({"arp_neighbor": {**STATIC4, "dynamic_enable": True}})
    assert r.feed(arp(C, "0.0.0.0", pdst="192.0.2.10"), arp(C, "0.0.0.0", pdst="192.0.2.30")) == []
    # and the probed address is still unlearned afterwards
    assert [e.type for e in r.feed(arp(B, "192.0.2.30"))] == ["ARP_NEIGHBOR_NEW_DYNAMIC"]


def test_arp_learns_from_the_sender_pair_only():
    r = Recorder({"arp_neighbor": STATIC4})
    # the target pair of a reply carries someone else's claim: it teaches nothing
    assert r.feed(arp(A, "192.0.2.10", pdst="192.0.2.11", op=2, hwdst=A)) == []


def test_arp_of_other_hardware_type_is_ignored():
    r = Recorder({"arp_neighbor": STATIC4})
    assert r.feed(Ether(src=A, dst=BC) / ARP(hwtype=6, psrc="192.0.2.11")) == []


def test_arp_reload_keeps_learned_neighbors():
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    r.feed(arp(A, "192.0.2.20"))
    r.engine.configure({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    assert [e.type for e in r.feed(arp(A, "192.0.2.20"), arp(B, "192.0.2.20"))] == ["ARP_NEIGHBOR_SPOOFED_DYNAMIC"]


def test_arp_reload_applies_new_static_entries():
    r = Recorder({"arp_neighbor": STATIC4})
    assert r.feed(arp(A, "192.0.2.10")) == []
    r.engine.configure({"arp_neighbor": {"enable": True, "static_resolutions": [{"ip": "192.0.2.10", "mac": B}]}})
    assert [e.type for e in r.feed(arp(A, "192.0.2.10"))] == ["ARP_NEIGHBOR_SPOOFED_STATIC"]


# --- arp_bogon ------------------------------------------------------------------

BOGON4 = {"arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24", "203.0.113.0/25"]}}


def test_arp_bogon_source_and_target():
    r = Recorder(BOGON4)
    assert r.feed(arp(A, "192.0.2.1", pdst="203.0.113.5")) == []
    (src,) = r.feed(arp(A, "198.51.100.1", pdst="192.0.2.1"))
    assert src.type == "ARP_BOGON_SOURCE"
    assert src.data == {"mac_addr_source": A, "ip4_addr_source": "198.51.100.1"}
    (dst,) = r.feed(arp(A, "192.0.2.1", pdst="203.0.113.200"))
    assert dst.data == {"mac_addr_source": A, "ip4_addr_target": "203.0.113.200"}
    assert dst.type == "ARP_BOGON_TARGET"


def test_arp_probe_source_is_no_bogon():
    assert Recorder(BOGON4).feed(arp(A, "0.0.0.0", pdst="192.0.2.7")) == []


def test_arp_bogon_judges_requests_only_unless_replies():
    """DD-IX's IXpect judges requests; replies are an opt-in addition."""
    bogon_reply = arp(A, "198.51.100.1", pdst="203.0.113.200", op=2)
    assert Recorder(BOGON4).feed(bogon_reply) == []
    both = Recorder({"arp_bogon": {**BOGON4["arp_bogon"], "replies": True}})
    assert [e.type for e in both.feed(bogon_reply)] == ["ARP_BOGON_SOURCE", "ARP_BOGON_TARGET"]


def test_arp_bogon_reply_does_not_hide_the_same_request():
    """A silent reply must not teach the sieve to drop a request with the same addresses."""
    r = Recorder(BOGON4)
    reply = arp(A, "198.51.100.1", pdst="192.0.2.1", op=2)
    assert r.feed(reply, reply) == []
    assert [e.type for e in r.feed(arp(A, "198.51.100.1", pdst="192.0.2.1"))] == ["ARP_BOGON_SOURCE"]


# --- ipv6_neighbor --------------------------------------------------------------

STATIC6 = {"enable": True, "static_resolutions": [
    {"ip": "2001:db8::a", "mac": A}, {"ip": "fe80::a", "mac": A},
    {"ip": "2001:db8::b", "mac": B}, {"ip": "2001:db8::b", "mac": C},
]}


def test_nd_static_pairs_raise_nothing():
    r = Recorder({"ipv6_neighbor": STATIC6})
    assert r.feed(ns(A, "2001:db8::a", "2001:db8::b"), ns(A, "fe80::a", "fe80::b"),
                  na(B, "2001:db8::b"), na(C, "2001:db8::b")) == []


def test_nd_spoofed_static_from_na_target_and_tllao():
    r = Recorder({"ipv6_neighbor": STATIC6})
    (ev,) = r.feed(na(C, "2001:db8::a"))
    assert ev.type == "IPV6_NEIGHBOR_SPOOFED_STATIC"
    assert ev.data == {"mac_addr_source": C, "ip6_addr": "2001:db8::a", "mac_addr": C, "mac_addr_expected": [A]}


def test_nd_ns_source_with_sllao_teaches_and_spoofs():
    r = Recorder({"ipv6_neighbor": {**STATIC6, "dynamic_enable": True}})
    evs = r.feed(ns(C, "2001:db8::20", "2001:db8::a"), ns(B, "2001:db8::20", "2001:db8::a"))
    assert [e.type for e in evs] == ["IPV6_NEIGHBOR_NEW_DYNAMIC", "IPV6_NEIGHBOR_SPOOFED_DYNAMIC"]
    assert evs[0].data == {"mac_addr_source": C, "ip6_addr": "2001:db8::20", "mac_addr": C}


def test_nd_unknown_without_learning():
    (ev,) = Recorder({"ipv6_neighbor": STATIC6}).feed(na(C, "2001:db8::99"))
    assert ev.type == "IPV6_NEIGHBOR_UNKNOWN"
    assert ev.data == {"mac_addr_source": C, "ip6_addr": "2001:db8::99", "mac_addr": C}


def test_nd_without_link_layer_option_or_from_dad_teaches_nothing():
    r = Recorder({"ipv6_neighbor": {**STATIC6, "dynamic_enable": True}})
    assert r.feed(ns(C, "2001:db8::a", "2001:db8::b", sllao=False),
                  ns(C, "::", "2001:db8::a", sllao=False),
                  ns(C, "::", "2001:db8::a"),  # DAD must not carry SLLAO; even so it teaches nothing
                  na(C, "2001:db8::a", tllao=False)) == []


def test_nd_uses_the_option_not_the_ethernet_source():
    r = Recorder({"ipv6_neighbor": STATIC6})
    (ev,) = r.feed(na(A, "2001:db8::a", lladdr=C))
    assert ev.data["mac_addr"] == C


def test_nd_with_hop_limit_below_255_is_a_bad_packet():
    r = Recorder({"ipv6_neighbor": STATIC6})
    (ev,) = r.feed(ns(C, "2001:db8::a", "2001:db8::b", hlim=64))
    assert ev.type == "IXPECT_BAD_PACKET" and "hop limit 64" in ev.data["reason"]


# --- ipv6_bogon -----------------------------------------------------------------

BOGON6 = {"enable": True, "prefixes": ["2001:db8::/64"], "ignore_link_local": True}


def test_ipv6_bogon_source_and_target():
    r = Recorder({"ipv6_bogon": BOGON6})
    assert r.feed(ns(A, "2001:db8::a", "2001:db8::b"), na(B, "2001:db8::b")) == []
    evs = r.feed(ns(A, "2001:db8:1::a", "2001:db8::b"), ns(A, "2001:db8::a", "2001:db8:2::1"))
    assert [(e.type, e.data) for e in evs] == [
        ("IPV6_BOGON_SOURCE", {"mac_addr_source": A, "ip6_addr_source": "2001:db8:1::a"}),
        ("IPV6_BOGON_TARGET", {"mac_addr_source": A, "ip6_addr_target": "2001:db8:2::1"}),
    ]


def test_ipv6_bogon_link_local_ignored_or_not():
    frames = (ns(A, "fe80::a", "fe80::b"),)
    assert Recorder({"ipv6_bogon": BOGON6}).feed(*frames) == []
    evs = Recorder({"ipv6_bogon": {**BOGON6, "ignore_link_local": False}}).feed(*frames)
    assert [e.type for e in evs] == ["IPV6_BOGON_SOURCE", "IPV6_BOGON_TARGET"]


def test_ipv6_bogon_dad_source_ignored():
    evs = Recorder({"ipv6_bogon": BOGON6}).feed(ns(A, "::", "2001:db8::a", sllao=False))
    assert evs == []


def test_ipv6_bogon_checks_router_discovery_sources():
    """Neighbor Discovery in general: RS and RA sources count too (they have no target)."""
    ra = Ether(src=B, dst="33:33:00:00:00:01") / IPv6(src="2001:db8:5::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA()
    rs = Ether(src=C, dst="33:33:00:00:00:02") / IPv6(src="2001:db8:6::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS()
    quiet = [Ether(src=B, dst="33:33:00:00:00:01") / IPv6(src=s, dst="ff02::1", hlim=255) / ICMPv6ND_RA()
             for s in ("fe80::b", "2001:db8::b")]
    quiet.append(Ether(src=C, dst="33:33:00:00:00:02") / IPv6(src="::", dst="ff02::2", hlim=255) / ICMPv6ND_RS())
    r = Recorder({"ipv6_bogon": BOGON6})
    assert r.feed(*quiet) == []
    assert [(e.type, e.data) for e in r.feed(ra, rs)] == [
        ("IPV6_BOGON_SOURCE", {"mac_addr_source": B, "ip6_addr_source": "2001:db8:5::1"}),
        ("IPV6_BOGON_SOURCE", {"mac_addr_source": C, "ip6_addr_source": "2001:db8:6::1"}),
    ]


# --- ipv6_router ----------------------------------------------------------------

def test_router_advertisement_and_solicitation():
    r = Recorder({"ipv6_router": {"enable": True}})
    ra = Ether(src=B, dst="33:33:00:00:00:01") / IPv6(src="fe80::b", dst="ff02::1", hlim=255) / ICMPv6ND_RA()
    rs = Ether(src=C, dst="33:33:00:00:00:02") / IPv6(src="::", dst="ff02::2", hlim=255) / ICMPv6ND_RS()
    evs = r.feed(ra, rs, ns(A, "fe80::a", "fe80::b"))
    assert [(e.type, e.data) for e in evs] == [
        ("IPV6_ROUTER_ADVERTISEMENT", {"mac_addr_source": B, "ip6_addr_source": "fe80::b"}),
        ("IPV6_ROUTER_SOLICITATION", {"mac_addr_source": C, "ip6_addr_source": "::"}),
    ]


def test_router_advertisement_behind_extension_header_and_vlan_tag():
    ra = Ether(src=B, dst="33:33:00:00:00:01") / Dot1Q(vlan=100) / IPv6(src="fe80::b", dst="ff02::1", hlim=255) \
        / IPv6ExtHdrHopByHop() / ICMPv6ND_RA()
    assert [e.type for e in Recorder({"ipv6_router": {"enable": True}}).feed(ra)] == ["IPV6_ROUTER_ADVERTISEMENT"]


# --- stp ------------------------------------------------------------------------

def test_stp_ieee_and_pvst():
    r = Recorder({"stp": {"enable": True}})
    ieee = Dot3(src=B, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()
    pvst = Dot3(src=C, dst="01:00:0c:cc:cc:cd") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x0C, code=0x10B) / STP()
    other_llc = Dot3(src=A, dst="01:80:c2:00:00:14") / LLC(dsap=0xFE, ssap=0xFE, ctrl=3) / Raw(b"isis")
    evs = r.feed(ieee, pvst, other_llc)
    assert [(e.type, e.data) for e in evs] == [
        ("STP_PACKET_FOUND", {"mac_addr_source": B, "mac_addr_destination": "01:80:c2:00:00:00"}),
        ("STP_PACKET_FOUND", {"mac_addr_source": C, "mac_addr_destination": "01:00:0c:cc:cc:cd"}),
    ]


# --- ether_type -----------------------------------------------------------------

def test_ether_type_violations():
    r = Recorder({"ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, "0x86dd"]}})
    evs = r.feed(Ether(src=A, dst=BC) / IP() / UDP(), arp(A, "192.0.2.1"), Ether(src=A, type=0x86DD) / IPv6(),
                 Ether(src=B, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x00" * 30),
                 Ether(src=C, dst=BC) / Dot1Q(vlan=5) / Dot1Q(vlan=6, type=0x88B5) / Raw(b"x" * 30),
                 Dot3(src=A, dst="01:80:c2:00:00:00") / LLC() / STP())
    assert [e.data for e in evs] == [
        {"mac_addr_source": B, "ether_type": "0x88cc"},
        {"mac_addr_source": C, "ether_type": "0x88b5"},  # the innermost type of a QinQ frame
        {"mac_addr_source": A, "ether_type": "llc"},
    ]
    assert {e.type for e in evs} == {"ETHER_TYPE_VIOLATION"}


def test_ether_type_with_decoding_probes_still_sees_disallowed_arp():
    r = Recorder({"ether_type": {"enable": True, "allowed_ether_types": [0x0800]},
                  "arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24"]}})
    assert [e.type for e in r.feed(arp(A, "192.0.2.1", pdst="192.0.2.2"))] == ["ETHER_TYPE_VIOLATION"]


# --- bum_rate -------------------------------------------------------------------

BUM = {"bum_rate": {"enable": True, "window": 10.0, "thresholds": {"broadcast": 3, "multicast": 2}}}


def bcast(src):
    return Ether(src=src, dst=BC) / IP() / UDP()


def mcast(src):
    return Ether(src=src, dst="01:00:5e:00:00:01") / IP() / UDP()


def test_bum_rate_evaluated_at_window_end_per_source():
    r = Recorder(BUM)
    # window opens at t=1000 and ends at 1010: A sends 4 broadcasts (threshold 3), B exactly 3
    assert r.feed(*[bcast(A)] * 4, *[bcast(B)] * 3, t0=1000, step=1) == []
    (ev,) = r.feed(bcast(C), t0=1010.5)  # the first frame of the next window closes the previous
    assert ev.type == "BUM_RATE_BROADCAST_EXCEEDED"
    assert ev.data == {"mac_addr_source": A, "count": 4, "threshold": 3, "window": 10}
    assert ev.timestamp == 1010.0


def test_bum_rate_counts_reset_each_window_and_unthresholded_classes_are_silent():
    r = Recorder(BUM)
    r.feed(*[bcast(A)] * 3, t0=1000)
    r.feed(*[bcast(A)] * 3, t0=1012)  # 3 + 3 over two windows: never above 3 in one
    r.feed(*[Ether(src=A, dst=B) / IP()] * 50, t0=1030, step=0.01)  # unicast has no threshold
    r.engine.flush()
    assert r.events == []


def test_bum_rate_multicast_and_end_of_input_flush():
    r = Recorder(BUM)
    r.feed(*[mcast(C)] * 3, t0=1000)
    assert r.events == []
    r.engine.flush()
    assert [(e.type, e.data["count"]) for e in r.events] == [("BUM_RATE_MULTICAST_EXCEEDED", 3)]


def test_bum_rate_unicast():
    r = Recorder({"bum_rate": {"enable": True, "window": 60.0, "thresholds": {"unicast": 1}}})
    r.feed(*[Ether(src=A, dst=B) / IP()] * 2, bcast(A), bcast(A))
    r.engine.flush()
    assert [(e.type, e.data["count"]) for e in r.events] == [("BUM_RATE_UNICAST_EXCEEDED", 2)]


def test_bum_rate_skips_empty_windows_after_a_gap():
    r = Recorder(BUM)
    r.feed(*[bcast(A)] * 4, t0=1000)
    r.feed(bcast(B), t0=5000)  # long silence: one event for the old window, none for the gap
    r.feed(*[bcast(B)] * 3, t0=5001)
    r.engine.flush()
    assert [(e.data["mac_addr_source"], e.timestamp) for e in r.events] == [(A, 1010.0), (B, 5003.0)]


# --- malformed frames -----------------------------------------------------------

ALL = {
    "arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24"]},
    "arp_neighbor": {"enable": True, "dynamic_enable": True},
    "bum_rate": {"enable": True, "window": 60.0, "thresholds": {"broadcast": 10**9}},
    "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD]},
    "ipv6_bogon": {"enable": True, "prefixes": ["2001:db8::/32"]},
    "ipv6_neighbor": {"enable": True, "dynamic_enable": True},
    "ipv6_router": {"enable": True},
    "stp": {"enable": True},
}


def test_malformed_frames_become_bad_packet_events_with_reasons():
    good_ns = bytes(ns(A, "2001:db8::a", "2001:db8::b"))
    zero_len_opt = good_ns[:-7] + b"\x00" + good_ns[-6:]  # SLLAO length field 0
    cases = {
        b"\x01\x02\x03": "truncated Ethernet header (3 bytes)",
        bytes(arp(A, "192.0.2.1"))[:30]: "truncated ARP packet (16 bytes)",
        bytes(Ether(src=A) / Dot1Q())[:16]: "truncated VLAN tag",
        bytes(Ether(src=A) / IPv6())[:40]: "truncated IPv6 header (26 bytes)",
        bytes(Ether(src=A) / IPv6(plen=200) / UDP()): "IPv6 payload length 200 exceeds the frame (8)",
        bytes(Ether(src=A, dst=BC, type=0x86DD) / IP() / Raw(b"x" * 40)): "IPv6 EtherType with IP version 4",
        zero_len_opt: "ND option 1 with length 0",
        bytes(Ether(src=A) / ARP(hwlen=8)): "ARP for Ethernet/IPv4 with address lengths 8/4",
    }
    r = Recorder(ALL)
    for frame, reason in cases.items():
        evs = r.feed(frame)
        assert [e.type for e in evs] == ["IXPECT_BAD_PACKET"], reason
        assert evs[0].data["reason"] == reason
        assert ("mac_addr_source" in evs[0].data) == (len(frame) >= 12)


def test_random_garbage_never_escapes_the_engine():
    rng = random.Random(4)
    seeds = [bytes(arp(A, "192.0.2.1")), bytes(ns(A, "2001:db8::a", "2001:db8::b")),
             bytes(Ether(src=B) / Dot1Q() / IPv6() / IPv6ExtHdrHopByHop() / ICMPv6ND_RA())]
    frames = []
    for _ in range(20000):
        f = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            f[rng.randrange(12, len(f))] = rng.randrange(256)
        frames.append(bytes(f[:rng.randint(0, len(f))]))
    r = Recorder(ALL)
    r.feed(*frames)
    r.engine.flush()
    assert r.engine.frames == 20000
    assert "IXPECT_BAD_PACKET" in r.types()
    assert not any("internal error" in e.data.get("reason", "") for e in r.events)


# --- learning table caps ----------------------------------------------------------

def test_dynamic_table_cap_reports_once_and_learns_no_more():
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True, "max_dynamic": 2}})
    evs = r.feed(*(arp(A, f"192.0.2.{i}") for i in (1, 2, 3, 4)), arp(A, "192.0.2.1"))
    assert [(e.type, e.data.get("ip4_addr")) for e in evs] == [
        ("ARP_NEIGHBOR_NEW_DYNAMIC", "192.0.2.1"), ("ARP_NEIGHBOR_NEW_DYNAMIC", "192.0.2.2"),
        ("IXPECT_TABLE_FULL", None), ("ARP_NEIGHBOR_UNKNOWN", "192.0.2.3"),
        ("ARP_NEIGHBOR_UNKNOWN", "192.0.2.4"),  # learned ones stay known: nothing for .1
    ]
    assert evs[2].data == {"table": "arp_neighbor.dynamic", "limit": 2}
    assert len(r.engine.probes["arp_neighbor"].dynamic) == 2


def test_bum_rate_source_cap_keeps_counting_known_sources():
    r = Recorder({"bum_rate": {"enable": True, "window": 10.0, "max_sources": 2, "thresholds": {"broadcast": 3}}})
    macs = [f"02:00:00:00:01:{i:02x}" for i in range(50)]
    evs = r.feed(bcast(A), bcast(B), *(bcast(m) for m in macs), bcast(A), bcast(A), bcast(A), t0=1000, step=0.01)
    assert [(e.type, e.data) for e in evs] == [("IXPECT_TABLE_FULL", {"table": "bum_rate.sources", "limit": 2})]
    r.engine.flush()
    assert [(e.type, e.data["mac_addr_source"], e.data["count"]) for e in r.events[1:]] == [
        ("BUM_RATE_BROADCAST_EXCEEDED", A, 4)]
    assert len(r.engine.probes["bum_rate"].broadcast) == 0  # the window was cleared


# --- relearning ---------------------------------------------------------------------

#: with bum_rate (which counts every frame) no ARP frame is sieved
SIEVE = {"on": {}, "off": {"bum_rate": {"enable": True, "window": 60.0, "thresholds": {}}}}
RELEARN4 = {"arp_neighbor": {"enable": True, "dynamic_enable": True, "relearn_after": 600.0}}
RELEARN6 = {"ipv6_neighbor": {"enable": True, "dynamic_enable": True, "relearn_after": 600.0}}


def timed(r, *frames_at):
    """Feed (time, frame) pairs; return (type, mac_addr, expected or previous) of the events."""
    before = len(r.events)
    r.engine.feed((t, bytes(f)) for t, f in frames_at)
    return [(e.type.removeprefix("ARP_NEIGHBOR_").removeprefix("IPV6_NEIGHBOR_"), e.data["mac_addr"],
             e.data.get("mac_addr_expected", e.data.get("mac_addr_previous"))) for e in r.events[before:]]


@pytest.mark.parametrize("sieve", SIEVE)
def test_a_router_swap_is_relearned_once_the_old_mac_is_silent(sieve):
    r = Recorder({**RELEARN4, **SIEVE[sieve]})
    old = [(1000.0 + i, arp(A, "192.0.2.20", f"192.0.2.{30 + i % 5}")) for i in range(50)]
    assert timed(r, *old) == [("NEW_DYNAMIC", A, None)]
    # the new router from 1100 on; the old one is gone
    new = [(1100.0 + 60 * i, arp(B, "192.0.2.20", "192.0.2.30")) for i in range(15)]
    assert timed(r, *new) == [("SPOOFED_DYNAMIC", B, [A])] * 10 + [("NEW_DYNAMIC", B, A)]
    # the old MAC comes back: a flip-flop, reported against the new one
    assert timed(r, (2100.0, arp(A, "192.0.2.20"))) == [("SPOOFED_DYNAMIC", A, [B])]


@pytest.mark.parametrize("sieve", SIEVE)
def test_a_spoofer_never_replaces_a_learned_mac_that_is_still_active(sieve):
    r = Recorder({**RELEARN4, **SIEVE[sieve]})
    # the owner's announcements, all alike: once judged, the sieve (when on) swallows them
    owner = [(1000.0 + 30 * i, arp(A, "192.0.2.20", "192.0.2.30")) for i in range(200)]
    spoofer = [(1010.0 + 30 * i, arp(B, "192.0.2.20", "192.0.2.30")) for i in range(5, 200)]
    events = timed(r, *sorted(owner + spoofer, key=lambda p: p[0]))
    assert events == [("NEW_DYNAMIC", A, None)] + [("SPOOFED_DYNAMIC", B, [A])] * 195


def test_relearning_in_neighbor_discovery():
    r = Recorder(RELEARN6)
    assert timed(r, (1000.0, na(A, "2001:db8::20")), (1001.0, na(B, "2001:db8::20")),
                 (1602.0, ns(B, "2001:db8::20", "2001:db8::30"))) == [
        ("NEW_DYNAMIC", A, None), ("SPOOFED_DYNAMIC", B, [A]), ("NEW_DYNAMIC", B, A)]
