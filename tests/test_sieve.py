"""The sieve: frames the probes already let pass are dropped in C, and nothing else.

The reference for the engine-level comparisons is the same engine without a sieve:
events and counters must not differ.
"""

from __future__ import annotations

import copy
import logging
import random
import struct
import sys

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from conftest import CORPUS, Recorder
from ixpect import engine as engine_module
from ixpect import pcap
from ixpect._frames import Block, Records, Sieve
from ixpect.members import MemberTable
from ixpect.pcap import frames

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
BC = "ff:ff:ff:ff:ff:ff"
STATIC = {"enable": True, "static_resolutions": [{"ip": "192.0.2.10", "mac": A}]}
STATIC_AB = {**STATIC, "static_resolutions": [*STATIC["static_resolutions"], {"ip": "192.0.2.11", "mac": B}]}
SIEVABLE = {  # every probe whose verdict some bytes decide, with one of each event
    "arp_neighbor": {**STATIC, "dynamic_enable": True, "prefixes": ["192.0.2.0/24"]},
    "arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24"]},
    "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD, 0x88CC]},
    "l2_protocol": {"enable": True, "ignore": ["lldp"]},
}


def arp(src=A, psrc="192.0.2.10", hwsrc=None, pdst="192.0.2.99", vlan=None):
    eth = Ether(src=src, dst=BC)
    body = ARP(op=1, hwsrc=hwsrc or src, psrc=psrc, pdst=pdst)
    return bytes(eth / Dot1Q(vlan=vlan) / body if vlan else eth / body)


def _calls(monkeypatch, probe: type, handler: str) -> list[tuple]:
    """The arguments (after self) of every call of the probe's handler, which still runs:
    the frames that reached the probes."""
    calls, real = [], getattr(probe, handler)
    monkeypatch.setattr(probe, handler, lambda self, *args: calls.append(args) or real(self, *args))
    return calls


@pytest.fixture
def unsieved(monkeypatch):
    """A Recorder factory for engines that never build a sieve."""
    def make(probes, members=None):
        with monkeypatch.context() as m:
            m.setattr(engine_module.Engine, "_build_sieve", lambda self, *args: None)
            return Recorder(probes, members)
    return make


def test_sieve_swallows_exactly_what_it_was_taught():
    sieve = Sieve({0x0806: (20, ((14, 16),))}, 100)
    frame = bytes(12) + b"\x08\x06" + b"\x00\x01" + bytes(4)
    other = bytes(12) + b"\x08\x06" + b"\x00\x02" + bytes(4)
    short = frame[:19]
    ipv4 = bytes(12) + b"\x08\x00" + b"\x00\x01" + bytes(4)
    tagged = bytes(12) + b"\x81\x00\x00\x07" + frame[12:]
    assert all(sieve.teach(f) for f in (frame, short, ipv4, tagged))  # only the first has a fingerprint
    items = [(1.0, frame), (2.0, other), (3.0, short), (4.0, ipv4), (5.0, tagged), (6.0, frame),
             (7.0, bytearray(frame)), (8, frame)]
    passed = list(sieve.over(items))
    assert passed == [(2.0, other), (3.0, short), (4.0, ipv4), (5.0, tagged), (7.0, bytearray(frame)), (8, frame)]
    assert sieve.counts() == {0x0806: (2, 40)}
    assert sieve.last == 6.0


def test_bytes_apart_are_learned_apart():
    """A rule with ranges apart swallows a frame once its bytes in the ranges and in
    the ranges apart were each taught, by one frame or by two; forget() drops both."""
    sieve = Sieve({0x0806: (18, ((14, 16),), -1, 0, False, (), ((16, 18),))}, 100)

    def frame(a: int, b: int) -> bytes:
        return bytes(12) + b"\x08\x06" + bytes([0, a, 0, b])
    sieve.teach(frame(1, 1))
    sieve.teach(frame(2, 2))
    alike = [frame(1, 2), frame(2, 1), frame(1, 1)]
    assert [f for _, f in sieve.over((1.0, f) for f in [*alike, frame(1, 3), frame(3, 1)])] == [frame(1, 3), frame(3, 1)]
    sieve.forget()
    assert [f for _, f in sieve.over((2.0, f) for f in alike)] == alike
    with pytest.raises(ValueError):
        Sieve({0x0806: (18, ((14, 16),), -1, 0, False, (), ((16, 19),))}, 100)


def test_the_destination_class_stands_for_the_destination():
    """A range (-1, 0) is the destination MAC's class: broadcast, another group
    address, or unicast, whichever unicast address it is."""
    sieve = Sieve({0x0806: (14, ((-1, 0),))}, 100)
    broadcast, group, unicast = (bytes.fromhex(d) + bytes(6) + b"\x08\x06" for d in ("ff" * 6, "01" * 6, "02" * 6))
    other_group, other_unicast = (bytes.fromhex(d) + bytes(6) + b"\x08\x06" for d in ("03" * 6, "0a" * 6))
    sieve.teach(broadcast)
    sieve.teach(unicast)
    frames = [broadcast, group, unicast, other_unicast, other_group]
    assert [f for _, f in sieve.over((1.0, f) for f in frames)] == [group, other_group]
    with pytest.raises(ValueError):  # its byte counts towards the key's bound
        Sieve({0x0806: (256, ((0, 256), (-1, 0)))}, 100)


def test_unicast_arp_replies_to_different_routers_are_alike(monkeypatch):
    """bum_rate and ip_control read the destination's class alone: a router's reply to
    one peer teaches the sieve its replies to every other peer."""
    from ixpect.probes.neighbor import ArpNeighbor

    judged = _calls(monkeypatch, ArpNeighbor, "arp")
    r = Recorder({"arp_neighbor": STATIC, "bum_rate": {"enable": True, "window": 60.0},
                  "ip_control": {"enable": True, "prefixes": ["192.0.2.0/24"]}})
    replies = [bytes(Ether(src=A, dst=peer) / ARP(op=2, hwsrc=A, psrc="192.0.2.10", hwdst=peer, pdst="192.0.2.20"))
               for peer in (B, C, "02:00:00:00:00:0d")]
    assert r.feed(*replies, arp(), *replies) == []
    assert [buf[:6] for _, buf, *_ in judged] == [replies[0][:6], bytes.fromhex("ffffffffffff")]
    r.engine.flush()
    assert r.engine.traffic()["arp"][0] == 7


def test_arp_runs_the_probes_once_per_sender_and_once_per_target(monkeypatch):
    """arp_bogon judges the sender and the target address apart: a router asking for
    peers another router asked for runs no probe, a bogon target every time."""
    from ixpect.probes.bogon import ArpBogon

    judged = _calls(monkeypatch, ArpBogon, "arp")
    r = Recorder({"arp_neighbor": STATIC_AB, "arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24"]}})
    peers = ("192.0.2.20", "192.0.2.21", "192.0.2.22")
    events = r.feed(*(arp(pdst=p) for p in peers), *(arp(B, "192.0.2.11", pdst=p) for p in peers),
                    arp(pdst="8.8.4.4"), arp(B, "192.0.2.11", pdst="8.8.4.4"))
    a, b = (bytes.fromhex(m.replace(":", "")) for m in (A, B))
    assert [(sha, ".".join(map(str, tpa))) for _, _, _, sha, _, _, tpa in judged] == [
        (a, "192.0.2.20"), (a, "192.0.2.21"), (a, "192.0.2.22"), (b, "192.0.2.20"), (a, "8.8.4.4"), (b, "8.8.4.4")]
    assert [(e.type, e.data["mac_addr_source"]) for e in events] == [("ARP_BOGON_TARGET", A), ("ARP_BOGON_TARGET", B)]


def test_ns_runs_the_probes_once_per_router_and_once_per_target(monkeypatch):
    """Of an NS as routers send it the probes read the target only as ipv6_bogon does,
    on its own: a router soliciting a peer another router solicited runs no probe, an
    NS of another shape runs them as before, and one for a bogon target every time."""
    from socket import AF_INET6, inet_ntop, inet_pton

    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.utils6 import in6_getnsma, in6_getnsmac

    from ixpect.probes.bogon import Ipv6Bogon

    def ns(src, ip6, target, *options):
        group = in6_getnsma(inet_pton(AF_INET6, target))
        return bytes(Ether(src=src, dst=in6_getnsmac(group)) / IPv6(src=ip6, dst=inet_ntop(AF_INET6, group), hlim=255)
                     / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=src) / b"".join(map(bytes, options)))
    judged = _calls(monkeypatch, Ipv6Bogon, "nd")
    r = Recorder({"ipv6_bogon": {"enable": True, "prefixes": ["2001:db8::/64"]},
                  "bum_rate": {"enable": True, "window": 60.0}})
    peers = ("2001:db8::20", "2001:db8::21", "2001:db8::22")
    longer = ns(B, "2001:db8::b", peers[0], ICMPv6NDOptSrcLLAddr(lladdr=B))
    events = r.feed(*(ns(A, "2001:db8::a", p) for p in peers), *(ns(B, "2001:db8::b", p) for p in peers),
                    longer, longer, *[ns(A, "2001:db8::a", "2001:dead::1")] * 2)
    # a second option makes the NS longer than any rule takes: the probes, every time
    assert [(src[-1], target[-1]) for _, _, _, src, target, _ in judged] == [
        (0xA, 0x20), (0xA, 0x21), (0xA, 0x22), (0xB, 0x20), (0xB, 0x20), (0xB, 0x20), (0xA, 1), (0xA, 1)]
    assert [e.type for e in events] == ["IPV6_BOGON_TARGET"] * 2


def test_sieve_lets_frames_at_the_deadline_through():
    frame = bytes(12) + b"\x08\x06"
    sieve = Sieve({0x0806: (14, ())}, 10)
    sieve.teach(frame)
    sieve.deadline = 2.0
    assert list(sieve.over([(1.0, frame), (2.0, frame), (3.0, frame)])) == [(2.0, frame), (3.0, frame)]


def test_sieve_rejects_ranges_beyond_its_minimum_length():
    with pytest.raises(ValueError, match="outside"):
        Sieve({0x0806: (20, ((14, 30),))}, 10)


def test_repeated_good_arp_is_sieved_and_still_counted():
    r = Recorder({"arp_neighbor": STATIC})
    assert r.feed(*[arp()] * 1000) == []
    assert r.engine._sieve.counts()[0x0806][0] == 999  # all but the first, which taught it
    assert r.engine.frames == 1000
    assert r.engine.traffic()["arp"] == (1000, 1000 * 42)


@pytest.mark.parametrize("late, expected", [
    (arp(hwsrc=B, src=B), ["ARP_NEIGHBOR_SPOOFED_STATIC"]),  # another MAC claims the address
    (arp(src=B, hwsrc=A), ["ARP_SENDER_MISMATCH"]),  # the good pair, sent by someone else
    (arp(vlan=7, hwsrc=B), ["ARP_SENDER_MISMATCH", "ARP_NEIGHBOR_SPOOFED_STATIC"]),  # tagged
    (arp()[:30], ["IXPECT_BAD_PACKET"]),  # the good pair's first bytes, truncated
], ids=["spoofed", "sender-mismatch", "tagged", "truncated"])
def test_what_a_sieved_pair_cannot_hide(late, expected):
    r = Recorder({"arp_neighbor": STATIC})
    r.feed(arp(), arp())
    assert [e.type for e in r.feed(late)] == expected


def test_reconfiguring_forgets_what_was_sieved():
    r = Recorder({"arp_neighbor": STATIC})
    r.feed(arp(), arp(), arp())
    now_b = {"enable": True, "static_resolutions": [{"ip": "192.0.2.10", "mac": B}]}
    r.engine.configure({"arp_neighbor": now_b})
    assert [e.type for e in r.feed(arp())] == ["ARP_NEIGHBOR_SPOOFED_STATIC"]
    assert r.engine.frames == 4
    assert r.engine.traffic()["arp"][0] == 4


def test_sieved_frames_still_count():
    """bum_rate gets the sieve's tallies before its window ends: a storm of one
    repeated frame is reported with every frame counted, in each window."""
    r = Recorder({"arp_neighbor": STATIC, "bum_rate": {"enable": True, "window": 10.0,
                                                       "thresholds": {"broadcast": 3}}})
    r.feed(*[arp()] * 200, step=0.1)  # two windows of 100
    r.engine.flush()
    assert r.engine._sieve.counts()[0x0806][0] >= 190
    assert [(e.type, e.data["count"]) for e in r.events] == [("BUM_RATE_BROADCAST_EXCEEDED", 100)] * 2


def test_a_sources_first_frame_in_a_window_runs_only_the_counting_probes(monkeypatch):
    """When a window starts, each source's first frame of a quiet fingerprint is counted
    by bum_rate alone (which places the source in its table, in frame order); the other
    probes found that fingerprint quiet already and do not run again."""
    from ixpect.probes.neighbor import ArpNeighbor

    judged = _calls(monkeypatch, ArpNeighbor, "arp")
    r = Recorder({"arp_neighbor": STATIC_AB, "bum_rate": {"enable": True, "window": 10.0,
                                                       "thresholds": {"broadcast": 3}}})
    r.feed(*[arp(), arp(B, "192.0.2.11")] * 100, step=0.1)  # two windows, 50 frames of each source in each
    r.engine.flush()
    # the first frame of each source, and the one at the second window's start (which
    # runs the timers); not the other source's first frame in that window
    assert [ts for ts, *_ in judged] == [1000.0, 1000.1, 1010.0]
    assert sorted((e.data["mac_addr_source"], e.data["count"]) for e in r.events) == [(A, 50), (A, 50), (B, 50), (B, 50)]


def test_sieve_tallies_per_source_across_forgetting():
    """Counted per destination class and source MAC, whatever the fingerprint, and
    neither forget() nor recount() loses a count."""
    a, b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    frame, other = b"\xff" * 6 + a + b"\x08\x06\x01", b"\xff" * 6 + a + b"\x08\x06\x02"
    unicast = b + b + b"\x08\x06\x01"
    sieve = Sieve({0x0806: (15, ((0, 15),))}, 100, True)
    for f in (frame, other, unicast):
        sieve.teach(f)
    list(sieve.over([(1.0, frame)] * 3 + [(1.0, other), (1.0, unicast)]))
    sieve.forget()
    sieve.teach(frame)
    list(sieve.over([(2.0, frame)] * 2))
    sieve.recount()
    list(sieve.over([(3.0, frame)] * 2))  # its source not taught since: not swallowed
    assert sorted(sieve.tallies()) == [(b"\x00" + a, 6), (b"\x02" + b, 1)]
    assert sieve.tallies() == []


@pytest.mark.parametrize("restart", ["recount", "sources full"])
def test_a_fingerprint_forgets_its_source_when_the_sources_start_over(restart):
    """A fingerprint that covers both MACs remembers its source's place among the
    sources, and forgets it when they start over (a new window, or more sources than
    the limit, counted over all rules): another source taught first then takes that
    place, and must not get the first one's frames."""
    a, b, c = (bytes.fromhex(f"02000000000{i}") for i in (1, 2, 3))
    arp_a = b"\xff" * 6 + a + b"\x08\x06\x01"
    ipv6_b, ipv6_c = (b"\xff" * 6 + m + b"\x86\xdd\x60" for m in (b, c))
    sieve = Sieve({0x0806: (15, ((0, 15),)), 0x86DD: (15, ((0, 15),))}, 2, True)
    sieve.teach(arp_a)
    assert list(sieve.over([(1.0, arp_a)] * 2)) == []
    if restart == "recount":
        sieve.recount()
    else:
        sieve.teach(ipv6_c)  # the second source: the sources are full
    sieve.teach(ipv6_b)  # the first of the new sources
    assert list(sieve.over([(2.0, arp_a), (2.0, ipv6_b)])) == [(2.0, arp_a)]
    assert sorted(sieve.tallies()) == [(b"\x00" + a, 2), (b"\x00" + b, 1)]


def test_sieve_holds_many_fingerprints_exactly():
    """Its table grows past many sizes and still tells every taught fingerprint from
    every other one."""
    def frame(i: int) -> bytes:
        return bytes(12) + b"\x08\x06" + i.to_bytes(4, "big")
    sieve = Sieve({0x0806: (18, ((14, 18),))}, 1 << 16, False)
    for i in range(0, 40_000, 2):
        assert sieve.teach(frame(i))
    passed = [f for _, f in sieve.over((1.0, frame(i)) for i in range(40_000))]
    assert passed == [frame(i) for i in range(1, 40_000, 2)]
    assert sieve.counts()[0x0806] == (20_000, 20_000 * 18)


def test_sieve_tallies_keep_no_frame():
    """A counting probe gets counts per source, not the frames that taught the
    fingerprints: the sieve holds no frame."""
    frame = bytes.fromhex("ffffffffffff 020000000001 0806 0001") + bytes(range(1, 200))
    sieve = Sieve({0x0806: (42, ((0, 12), (20, 22)))}, 100, True)
    held = sys.getrefcount(frame)
    sieve.teach(frame)
    assert sys.getrefcount(frame) == held
    list(sieve.over([(1.0, frame)] * 2))
    assert sieve.tallies() == [(b"\x00" + frame[6:12], 2)]


def test_a_fingerprint_taught_again_keeps_its_tally():
    """A frame at the deadline runs the probes and is taught again, as often as timers run."""
    frame, other = bytes(12) + b"\x08\x06\x01", bytes(11) + b"\x01\x08\x06\x02"
    sieve = Sieve({0x0806: (15, ((6, 15),))}, 4, True)
    for _ in range(10):
        sieve.teach(frame)
        list(sieve.over([(1.0, frame)] * 2))
    sieve.teach(other)
    list(sieve.over([(2.0, other)] * 3))
    assert sorted(sieve.tallies()) == [(b"\x02" + bytes(6), 20), (b"\x02" + bytes(5) + b"\x01", 3)]


def test_sieve_takes_only_packets_that_end_within_its_bytes():
    """IPv6: the payload length must keep the packet within the fingerprinted bytes."""
    sieve = Sieve({0x86DD: (86, ((14, 86),), 18, 54)}, 100)
    ns = bytes(12) + b"\x86\xdd" + b"\x60" + bytes(3) + (32).to_bytes(2, "big") + bytes(66)
    longer = ns[:18] + (40).to_bytes(2, "big") + ns[20:] + bytes(8)
    trailer = ns + b"junk"  # beyond the packet: no decoder reads it
    for f in (ns, longer):
        sieve.teach(f)
    assert list(sieve.over([(1.0, ns), (2.0, longer), (3.0, trailer)])) == [(2.0, longer)]


def _accepting(*values) -> bytes:
    return bytes(sum(1 << b for b in range(8) if 8 * i + b in values) for i in range(32))


def test_an_open_ended_rule_takes_whole_packets_by_their_headers():
    """Transit: by the header bytes only, for packets within the frame whose guard
    bytes (version, protocol) it accepts; the first of an EtherType's rules that
    takes a frame decides, and each keeps its own fingerprints."""
    ip4 = (34, ((26, 34),), 16, 14, True, ((14, _accepting(0x45)), (23, _accepting(6))))
    sieve = Sieve({0x0800: [(40, ((14, 40),), 16, 14), ip4]}, 100)
    tcp = bytes(12) + b"\x08\x00\x45\x00" + (40).to_bytes(2, "big") + bytes(5) + b"\x06" + bytes(2) \
        + bytes(range(1, 9)) + bytes(20)
    sieve.teach(tcp)
    other_payload = tcp[:34] + b"x" * 20
    longer = tcp[:16] + (60).to_bytes(2, "big") + tcp[18:] + bytes(20)
    with_trailer = tcp + b"junk"
    beyond = tcp[:16] + (41).to_bytes(2, "big") + tcp[18:]  # one byte more than the frame
    headless = tcp[:16] + (19).to_bytes(2, "big") + tcp[18:]  # shorter than its header
    udp = tcp[:23] + b"\x11" + tcp[24:]
    options = tcp[:14] + b"\x46" + tcp[15:]
    exact = tcp[:16] + (26).to_bytes(2, "big") + tcp[18:40]  # ends within 40 bytes: the first rule's
    items = [(float(i), f) for i, f in enumerate((other_payload, longer, with_trailer, beyond, headless, udp,
                                                  options, exact))]
    assert [f for _, f in sieve.over(items)] == [beyond, headless, udp, options, exact]
    assert sieve.counts() == {0x0800: (3, 54 + 74 + 58)}
    sieve.teach(exact)
    assert list(sieve.over([(9.0, exact)])) == []
    assert sieve.counts() == {0x0800: (4, 54 + 74 + 58 + 40)}  # the EtherType's rules together


def test_many_allowed_ether_types_sieve_as_many_as_the_sieve_takes():
    """Beyond MAX_RULES rules the EtherTypes run the probes, instead of the
    configuration failing."""
    from ixpect._frames import MAX_RULES
    with pytest.raises(ValueError, match=f"at most {MAX_RULES} rules"):
        Sieve({0x9000 + i: (14, ()) for i in range(MAX_RULES + 1)}, 10)
    types = [0x0800, 0x0806, 0x86DD, *range(0x9000, 0x9000 + MAX_RULES)]
    r = Recorder({"ether_type": {"enable": True, "allowed_ether_types": types}, "stp": {"enable": True}})
    first, last = (bytes(Ether(src=A, dst=B, type=t) / bytes(30)) for t in (0x9000, types[-1]))
    r.feed(first, first, last, last, bytes(Ether(src=A, dst=B, type=0x9999) / bytes(30)))
    assert r.engine._sieve.counts()[0x9000][0] == 1 and types[-1] not in r.engine._sieve.counts()
    assert r.types() == ["ETHER_TYPE_VIOLATION"] and r.engine.frames == 5


def test_sieve_rejects_guards_beyond_its_minimum_length():
    with pytest.raises(ValueError, match="guard"):
        Sieve({0x0800: (34, (), 16, 14, True, ((40, _accepting(6)),))}, 10)
    with pytest.raises(ValueError, match="guard"):
        Sieve({0x0800: (34, (), 16, 14, True, ((23, b"short"),))}, 10)
    with pytest.raises(ValueError, match="length field"):
        Sieve({0x0800: (34, (), -1, 0, True)}, 10)


def test_timers_still_run_while_everything_is_sieved(monkeypatch):
    """The collector's window closes at the first frame after its deadline, sieved or not."""
    ticks = []

    class Timer:
        deadline = 5.0

        def tick(self, now):
            ticks.append(now)
            self.deadline = float("inf")

    from ixpect.engine import Engine
    e = Engine({"arp_neighbor": STATIC}, lambda ev: None, timers=(Timer(),))
    e.feed((float(t), arp()) for t in range(10))
    assert ticks == [5.0]
    assert e.now == 9.0


def _run(make, probes, paths):
    r = make(probes)
    for path in paths:
        try:
            r.engine.feed(frames(path))
        except Exception:  # a damaged capture ends its replay, in both runs alike
            pass
    r.engine.flush()
    return _seen(r.events), r.engine.traffic(), r.engine.frames


def _seen(events):
    return [(e.type, e.timestamp, e.data) for e in events]


def test_scripted_mix_matches_the_unsieved_engine(unsieved):
    script = [arp(), arp(pdst="8.8.8.8"), arp(psrc="192.0.2.20"), arp(psrc="192.0.2.20"),
              arp(psrc="192.0.2.20", hwsrc=B, src=B), arp(src=B, hwsrc=A), arp(), arp(vlan=3), arp()[:41],
              bytes(Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / bytes(20)),
              bytes(Ether(src=A, dst=BC, type=0x9000) / bytes(20))] * 3
    sieved = Recorder(SIEVABLE)
    assert sieved.engine._sieve is not None
    sieved.feed(*script)
    plain = unsieved(SIEVABLE)
    assert plain.engine._sieve is None
    plain.feed(*script)
    assert _seen(sieved.events) == _seen(plain.events)
    assert sieved.engine.traffic() == plain.engine.traffic()
    assert sieved.engine._sieve.counts()[0x0806][0] > 0


@pytest.mark.needs("test data")
def test_corpus_replays_match_the_unsieved_engine(unsieved):
    paths = sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert len(paths) > 800
    sieved = _run(Recorder, SIEVABLE, paths)
    plain = _run(unsieved, SIEVABLE, paths)
    assert sieved == plain
    assert sieved[1]["arp"][0] > 1000  # the corpus exercised the ARP path


def _sieved(r, *frames) -> int:
    """How many of `frames` the sieve swallowed."""
    before = r.engine._sieve.counts().get(0x0806, (0, 0))[0]
    r.feed(*frames)
    return r.engine._sieve.counts()[0x0806][0] - before


def test_a_full_sieve_that_pays_starts_over(monkeypatch):
    monkeypatch.setattr(engine_module, "SIEVE_LIMIT", 10)
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    pairs = [arp(psrc=f"10.0.0.{i}") for i in range(20)]
    r.feed(*pairs)  # each address new once
    assert _sieved(r, *pairs[:10] * 3) == 20  # the first round teaches, two are swallowed
    assert _sieved(r, *pairs[10:] * 2) == 10  # full, but it paid: it starts over
    assert _sieved(r, *pairs[:10]) == 0  # forgotten
    assert len(r.events) == 20


def test_a_challenged_address_leaves_the_sieve_to_others():
    """While an address is challenged its learned MAC's announcements all run the
    probes (the relearning clock needs them), without emptying the sieve: a spoofed
    frame empties it once, not for as long as the challenge lasts."""
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    others = [arp(src=f"02:00:00:00:01:{i:02x}", psrc=f"192.0.2.{100 + i}") for i in range(5)]
    learned = arp()  # A's 192.0.2.10
    r.feed(learned, *others)
    assert [e.type for e in r.feed(arp(src=B))] == ["ARP_NEIGHBOR_SPOOFED_DYNAMIC"]
    r.feed(*others)  # taught again after the challenge emptied the sieve
    assert _sieved(r, learned, *others, learned, *others) == 10  # all but A's
    assert r.engine.forgets == 1  # ixpect_sieve_forgets_total
    assert r.engine.probes["arp_neighbor"].challenged == {bytes((192, 0, 2, 10)): 1006.0}  # the last one heard


def test_a_sieve_that_does_not_pay_is_given_up(monkeypatch, caplog):
    """Made-up or too varied pairs cannot grow the sieve, nor make every frame pay for it."""
    caplog.set_level(logging.INFO, "ixpect.engine")
    monkeypatch.setattr(engine_module, "SIEVE_LIMIT", 10)
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    pairs = [arp(psrc=f"10.0.{i // 256}.{i % 256}") for i in range(100)]
    r.feed(*pairs, *pairs)  # new, then quiet but never repeated while the sieve filled
    assert [r.levelname for r in caplog.records if "varies too much to sieve" in r.message] == ["WARNING"]
    assert _sieved(r, *pairs) == 0
    assert r.engine._table[0x0806] == (r.engine._arp,)  # nothing left to learn
    assert r.engine.frames == 300 and len(r.events) == 100
    assert r.engine.unsieved == {0x0806}  # ixpect_sieve_given_up{ether_type="0x0806"} 1
    r.engine.configure({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    assert r.engine.unsieved == set() and r.engine._table[0x0806][-1] == r.engine._teach


def test_made_up_transit_gives_up_only_the_transit_rule(monkeypatch, caplog):
    """Transit with made-up addresses costs the sieve its transit rule (visibly), not
    the NS/NA it takes by another rule of the same EtherType."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    caplog.set_level(logging.INFO, "ixpect.engine")
    monkeypatch.setattr(engine_module, "SIEVE_LIMIT", 10)
    r = Recorder({"ip_control": {"enable": True, "prefixes": ["2001:db8::/64"]}, "ipv6_router": {"enable": True}})
    flows = [bytes(Ether(src=A, dst=B) / IPv6(src=f"2001:db8:1::{i:x}", dst="2001:db8:2::1") / TCP())
             for i in range(100)]
    ns = bytes(Ether(src=A, dst="33:33:ff:00:00:0b") / IPv6(src="2001:db8::a", dst="ff02::1:ff00:b", hlim=255)
               / ICMPv6ND_NS(tgt="2001:db8::b") / ICMPv6NDOptSrcLLAddr(lladdr=A))
    r.feed(*flows, *flows)
    assert [(m.levelname, m.getMessage()) for m in caplog.records if "varies too much" in m.message] == [
        ("WARNING", "EtherType 0x86dd varies too much to sieve (made-up addresses?): its transit packets run "
                    "the probes until the next reload (ixpect_sieve_given_up)")]
    assert r.engine.unsieved == {0x86DD}  # ixpect_sieve_given_up{ether_type="0x86dd"} 1
    assert r.engine._table[0x86DD][-1] == r.engine._teach
    before = r.engine._sieve.counts()[0x86DD][0]
    r.feed(*flows, ns, ns, ns)
    assert r.engine._sieve.counts()[0x86DD][0] - before == 2 and r.engine.frames == 303 and not r.events


@pytest.mark.parametrize("ignore, sieved", [([], 2), (["dhcp", "bootp"], 2), (["dhcp"], 0), (["ripv2"], 0)])
def test_udp_is_sieved_by_its_ports_unless_more_tells_what_is_ignored(ignore, sieved):
    """DHCP and BOOTP differ past the ports (the magic cookie), RIPv1 and v2 by a
    version byte: when one is ignored and the other not, UDP is never sieved."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    r = Recorder({"ip_control": {"enable": True, "prefixes": ["192.0.2.0/24"], "ignore": ignore}})
    base = Ether(src=A, dst=BC) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
    dhcp, bootp = bytes(base / BOOTP() / DHCP(options=[("message-type", "discover"), "end"])), bytes(base / BOOTP())
    dns = bytes(Ether(src=A, dst=B) / IP(src="198.51.100.1", dst="203.0.113.1") / UDP(sport=40000, dport=53))
    first = dhcp if "dhcp" in ignore else dns
    r.feed(first, first, first)
    assert r.engine._sieve.counts().get(0x0800, (0, 0))[0] == sieved
    r.feed(bootp)
    assert [e.data["protocol"] for e in r.events] == ["bootp"] * ("bootp" not in ignore)


def _legit() -> list[bytes]:
    """What members A (192.0.2.10, 2001:db8::a) and B (.20, ::b) send that raises
    nothing, most of a LAN's traffic, transit included."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
    out = []
    one, two = (A, "192.0.2.10", "2001:db8::a"), (B, "192.0.2.20", "2001:db8::b")
    for (mac, ip4, ip6), (peer, peer4, peer6) in ((one, two), (two, one)):
        out.append(arp(src=mac, psrc=ip4, pdst=peer4))
        out.append(bytes(Ether(src=mac, dst=peer) / ARP(op=2, hwsrc=mac, psrc=ip4, hwdst=peer, pdst=peer4)))
        out.append(bytes(Ether(src=mac, dst="33:33:ff:00:00:0b") / IPv6(src=ip6, dst="ff02::1:ff00:b", hlim=255)
                         / ICMPv6ND_NS(tgt=peer6) / ICMPv6NDOptSrcLLAddr(lladdr=mac)))
        out.append(bytes(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=ip6, dst="ff02::1", hlim=255)
                         / ICMPv6ND_NA(tgt=ip6) / ICMPv6NDOptDstLLAddr(lladdr=mac)))
        out.append(bytes(Ether(src=mac, dst="33:33:00:00:00:fb") / IPv6(src=ip6, dst="ff02::fb")
                         / UDP(sport=5353, dport=5353) / b"m"))
        out.append(bytes(Ether(src=mac, dst="01:80:c2:00:00:0e", type=0x88CC) / bytes(30)))
        out.append(bytes(Ether(src=mac, dst=peer) / IP(src="198.51.100.1", dst="203.0.113.1") / UDP(dport=53)))
        out += _transit(mac, peer)[:3]
    return out


def _transit(src, dst) -> list[bytes]:
    """TCP between hosts outside the LAN through the routers src and dst, IPv4 and
    IPv6 (what the sieve takes by the headers), UDP (by the ports), then the same
    headers with another payload, and with lengths or headers the decoder reads
    otherwise."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
    eth = Ether(src=src, dst=dst)
    four = eth / IP(src="198.51.100.1", dst="203.0.113.1", id=7) / TCP(sport=40000, dport=443)
    six = eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / TCP(sport=40000, dport=443)
    tcp4, tcp6 = bytes(four / (b"x" * 20)), bytes(six / (b"x" * 20))

    def length(frame: bytes, at: int, value: int) -> bytes:
        return frame[:at] + value.to_bytes(2, "big") + frame[at + 2:]
    return [tcp4, tcp6, bytes(eth / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=40000, dport=53)),
            bytes(four / (b"y" * 900)), bytes(six / (b"y" * 3)), tcp4 + b"trailer",  # alike: sieved
            length(tcp4, 16, 70), length(tcp4, 16, 12), length(tcp6, 18, 50),  # beyond the frame; headless
            tcp4[:14] + b"\x46" + tcp4[15:], tcp4[:14] + b"\x55" + tcp4[15:], tcp6[:14] + b"\x50" + tcp6[15:],
            bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / IPv6ExtHdrHopByHop() / TCP(dport=443)),
            bytes(eth / IP(src="198.51.100.1", dst="192.0.2.255") / TCP(dport=443)),  # directed broadcast
            bytes(eth / IP(src="192.0.2.10", dst="203.0.113.1", ttl=1) / TCP(dport=443)),
            bytes(eth / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=68, dport=67)),  # by the ports too
            bytes(eth / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=40000, dport=53) / b"other payload"),
            bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / UDP(sport=40000, dport=53) / b"q"),
            bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / UDP(sport=40000, dport=53) / b"query"),
            bytes(eth / IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / UDP(sport=40000, dport=53))[:-2]]


def _vocabulary() -> list[bytes]:
    """Frames of every kind the sieved probes judge, good and bad, few enough that
    a random sequence repeats them (and the sieve learns)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import (ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS,
                                    ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrHopByHop)
    from scapy.layers.l2 import LLC, STP, Dot3
    macs, x = (A, B, C), "02:00:00:00:00:99"  # members' and an unlisted one
    out = []
    for src in (*macs, x):
        for psrc in ("192.0.2.10", "192.0.2.20", "192.0.2.30", "0.0.0.0", "8.8.8.8"):
            out.append(arp(src=src, psrc=psrc, pdst="192.0.2.20"))
            out.append(arp(src=src, psrc=psrc, pdst="8.8.4.4"))
        out.append(arp(src=src, hwsrc=A))
        out.append(bytes(Ether(src=src, dst=B) / ARP(op=2, hwsrc=src, psrc="192.0.2.30", hwdst=B, pdst="192.0.2.20")))
        for ip6 in ("2001:db8::a", "2001:db8::b", "fe80::1", "::", "2001:dead::1"):
            for target in ("2001:db8::b", "2001:dead::2"):
                base = Ether(src=src, dst="33:33:ff:00:00:0b") / IPv6(src=ip6, dst="ff02::1:ff00:b", hlim=255)
                out.append(bytes(base / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=src)))
            out.append(bytes(Ether(src=src, dst="33:33:00:00:00:01") / IPv6(src=ip6, dst="ff02::1", hlim=255)
                             / ICMPv6ND_NA(tgt=ip6 if ip6 != "::" else "2001:db8::b")
                             / ICMPv6NDOptDstLLAddr(lladdr=src)))
        ns = Ether(src=src, dst="33:33:ff:00:00:0a") / IPv6(src="2001:db8::b", dst="ff02::1:ff00:a", hlim=255) \
            / ICMPv6ND_NS(tgt="2001:db8::a")
        out.append(bytes(ns / ICMPv6NDOptSrcLLAddr(lladdr=A)))  # another's link-layer address
        out.append(bytes(ns / ICMPv6NDOptSrcLLAddr(lladdr=src)) + b"trailer")
        out.append(bytes(ns / ICMPv6NDOptSrcLLAddr(lladdr=src) / ICMPv6NDOptSrcLLAddr(lladdr=A)))  # longer
        hlim = bytearray(bytes(ns / ICMPv6NDOptSrcLLAddr(lladdr=src)))
        hlim[21] = 254
        out.append(bytes(hlim))
        out.append(bytes(Ether(src=src, dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2", hlim=255)
                         / ICMPv6ND_RS()))
        out.append(bytes(Ether(src=src, dst="33:33:00:00:00:fb") / IPv6(src="fe80::1", dst="ff02::fb")
                         / UDP(sport=5353, dport=5353) / b"m"))
        out.append(bytes(Ether(src=src, dst="33:33:00:01:00:02") / IPv6(src="fe80::1", dst="ff02::1:2")
                         / UDP(sport=546, dport=547) / b"d"))
        out.append(bytes(Ether(src=src, dst="33:33:00:00:00:16") / IPv6(src="fe80::1", dst="ff02::16", hlim=1)
                         / IPv6ExtHdrHopByHop() / ICMPv6MLReport2()))
        out.append(bytes(Ether(src=src, dst=BC) / IP(src="192.0.2.30", dst="192.0.2.255") / UDP(dport=9)))
        out.append(bytes(Ether(src=src, dst="01:80:c2:00:00:0e", type=0x88CC) / bytes(30)))
        out.append(bytes(Ether(src=src, dst="01:80:c2:00:00:02", type=0x8809) / (b"\x01" + bytes(40))))
        out.append(bytes(Ether(src=src, dst=BC, type=0x9000) / bytes(30)))
        out.append(bytes(Ether(src=src, dst=B, type=0x86DD) / bytes(30)))  # not IPv6 at all
        out += _transit(src, B)
    out.append(bytes(Ether(src=C, dst="33:33:00:00:00:01") / IPv6(src="fe80::c", dst="ff02::1", hlim=255)
                     / ICMPv6ND_RA()))
    out.append(bytes(Dot3(src=C, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()))
    out.append(arp(vlan=5))
    out.append(arp()[:30])
    return out


C = "02:00:00:00:00:0c"
MEMBERS = {"macs": {A: {"asn": 1, "name": "One"}, B: {"asn": 2, "name": "Two"}, C: {"asn": 2, "name": "Two"}},
           "ips": {"192.0.2.10": {"asn": 1, "name": "One"}, "192.0.2.20": {"asn": 2, "name": "Two"},
                   "2001:db8::a": {"asn": 1, "name": "One"}, "2001:db8::b": {"asn": 2, "name": "Two"}},
           "connections": {"1": 1, "2": 1}}
EVERY_PROBE = {  # all of them, windows and limits small enough for random sequences to cross
    **SIEVABLE,
    "arp_neighbor": {**SIEVABLE["arp_neighbor"], "relearn_after": 3.0},
    "arp_bogon": {"enable": True, "prefixes": ["192.0.2.0/24"], "replies": True},
    "ipv6_neighbor": {"enable": True, "dynamic_enable": True, "relearn_after": 3.0, "prefixes": ["2001:db8::/64"],
                      "static_resolutions": [{"ip": "2001:db8::a", "mac": A}]},
    "ipv6_bogon": {"enable": True, "prefixes": ["2001:db8::/64"]},
    "ipv6_router": {"enable": True},
    "ip_control": {"enable": True, "prefixes": ["192.0.2.0/24", "2001:db8::/64"]},
    "stp": {"enable": True},
    "bum_rate": {"enable": True, "window": 5.0, "max_sources": 3,
                 "thresholds": {"broadcast": 20, "multicast": 20, "unicast": 5}},
    "mac_address": {"enable": True, "window": 7.0},
}


def _listed(part, tmp_path, rng):
    """The frames as a list of (timestamp, frame) pairs: the sieve judges the objects."""
    yield part


def _pcap_chunks(part, tmp_path, rng):
    """The frames as the pcap reader hands them on from a file, in chunks of a few
    records, cut at a random snaplen (0: none)."""
    snaplen = rng.choice((0, 0, 64, 90))
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)
    for t, f in part:
        cut = f[:snaplen] if snaplen else f
        out += struct.pack("<IIII", int(t), round((t - int(t)) * 1e6), len(cut), len(f)) + cut
    path = tmp_path / f"part{rng.random()}.pcap"
    path.write_bytes(out)
    yield from pcap.chunks(str(path), 1.0)


def _ring(frames) -> bytearray:
    """`frames` laid out as a TPACKET_V3 block from offset 8, a VLAN tag stripped into
    the frame header as the kernel does."""
    ring = bytearray(b"\xee" * 8)
    for t, f in frames:
        status, tci, tpid = 0, 0, 0
        if f[12:14] in (b"\x81\x00", b"\x88\xa8") and len(f) >= 18:
            status, tpid, tci, f = 0x50, f[12] << 8 | f[13], f[14] << 8 | f[15], f[:12] + f[16:]
        size = (48 + len(f) + 15) // 16 * 16
        ring += struct.pack("=IIIIIIHHIIHH", size, int(t), round((t - int(t)) * 1e9), len(f), len(f), status,
                            48, 0, 0, tci, tpid, 0)
        ring += bytes(8) + f + bytes(size - 48 - len(f))
    return ring


def _ring_blocks(part, tmp_path, rng):
    """The frames as TPACKET_V3 ring blocks of 50 frames."""
    for start in range(0, len(part), 50):
        yield Block(_ring(part[start:start + 50]), 8, len(part[start:start + 50]))


READERS = {"list": _listed, "pcap": _pcap_chunks, "ring": _ring_blocks}


def _replay(sequence, reload_at: int, reader, tmp_path, seed) -> tuple[tuple, int]:
    """(events, traffic and frames; frames the sieve dropped)."""
    r = Recorder(EVERY_PROBE, MemberTable(**MEMBERS))
    swallowed, rng = 0, random.Random(seed)
    for part in (sequence[:reload_at], sequence[reload_at:]):
        for chunk in reader(part, tmp_path, rng):
            r.engine.feed(chunk)
        swallowed += sum(n for n, _ in r.engine._sifted().values())
        r.engine.configure(copy.deepcopy(EVERY_PROBE))  # as a SIGHUP does
    r.engine.flush()
    return ([(e.type, e.timestamp, e.data, e.frame) for e in r.events], r.engine.traffic(), r.engine.frames), swallowed


@pytest.mark.parametrize("reader", READERS)
def test_random_sequences_match_the_unsieved_engine(monkeypatch, tmp_path, reader):
    """Every probe on, counting ones included: whatever the sieve drops must still
    reach every counter, timer and table, so events and counters are the engine's
    without the sieve, over random sequences of good, bad and repeated frames, from
    a list of pairs and from both readers, which the sieve walks in C."""
    monkeypatch.setattr(pcap, "CHUNK", 64)
    vocabulary, legit = _vocabulary(), _legit()
    swallowed = total = 0
    for seed in range(100):
        rng = random.Random(seed)
        hot = rng.sample(legit, 9) + rng.sample(vocabulary, 1)  # what a LAN repeats most
        t, sequence = 1000.0, []
        for _ in range(400):
            t += rng.choice((0.0, 0.001, 0.01, 0.05, 0.1)) if rng.random() < 0.97 else 3.0
            sequence.append((t, rng.choice(hot) if rng.random() < 0.9 else rng.choice(vocabulary)))
        reload_at = rng.randrange(len(sequence))
        sieved, dropped = _replay(sequence, reload_at, READERS[reader], tmp_path, seed)
        with monkeypatch.context() as m:
            m.setattr(engine_module.Engine, "_build_sieve", lambda self, *args: None)
            plain, _ = _replay(sequence, reload_at, READERS[reader], tmp_path, seed)
        assert sieved == plain, seed
        total += len(sequence)
        swallowed += dropped
    assert swallowed > total / 10  # the sieve did drop frames: the comparison is not vacuous


@pytest.mark.parametrize("damage, offset", [("header", 0), ("frame", 12)])
@pytest.mark.parametrize("sieved", [False, True])
def test_a_damaged_ring_block_raises_after_the_frames_before_it(damage, offset, sieved):
    """A frame header or frame beyond the ring is a ValueError once the frames before
    it were walked, whether the sieve walks the block or Python does."""
    frame = arp()
    ring = _ring([(1.0, frame), (2.0, frame), (3.0, frame)])
    third = 8 + 2 * (len(ring) - 8) // 3
    struct.pack_into("=I", ring, third + offset, len(ring) if damage == "header" else 1 << 16)
    if damage == "header":  # the second frame points beyond the ring
        struct.pack_into("=I", ring, 8 + (len(ring) - 8) // 3, len(ring))
    sieve = Sieve({0x0806: (42, ((14, 20),))}, 10)
    sieve.teach(frame)
    block, got = Block(ring, 8, 3), []
    with pytest.raises(ValueError, match="beyond"):
        for item in sieve.over(block) if sieved else block:
            got.append(item)
    assert got == ([] if sieved else [(1.0, frame), (2.0, frame)])
    assert sieve.counts()[0x0806][0] == (2 if sieved else 0)
    assert len(block) == 0


def test_a_closed_ring_block_walks_no_further():
    frame = arp()
    block = Block(_ring([(1.0, frame), (2.0, frame)]), 8, 2)
    assert len(block) == 2 and next(block) == (1.0, frame) and len(block) == 1
    block.close()
    assert not block and list(block) == []


def test_sieved_records_pause_at_their_budget(tmp_path):
    """A chunk of a capture file ends after `budget` records, swallowed ones included,
    so that signals are acted on between chunks however much the sieve drops."""
    frame, other = arp(), arp(psrc="192.0.2.20")
    path = tmp_path / "a.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 1) + b"".join(
        struct.pack("<IIII", t, 0, len(f), len(f)) + f for t, f in enumerate([frame] * 5 + [other])))
    sieve = Sieve({0x0806: (42, ((14, 42),))}, 10)
    sieve.teach(frame)
    records = frames(path)
    records.budget = 3
    assert list(sieve.over(records)) == [] and not records.done
    records.budget = 3
    assert list(sieve.over(records)) == [(5.0, other)] and not records.done
    records.budget = 3
    assert list(sieve.over(records)) == [] and records.done
    assert sieve.counts()[0x0806] == (5, 5 * len(frame))


def test_records_refuse_a_negative_offset():
    with pytest.raises(ValueError, match="negative"):
        Records(bytes(64), -16, False, 1e-6, "x", ValueError, False, 0)
