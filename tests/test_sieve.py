"""The sieve: frames the probes already let pass are dropped in C, and nothing else.

The reference for the engine-level comparisons is the same engine without a sieve:
events and counters must not differ.
"""

from __future__ import annotations

import logging

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from conftest import CORPUS, Recorder
from ixpect import engine as engine_module
from ixpect._frames import Sieve
from ixpect.pcap import frames

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
BC = "ff:ff:ff:ff:ff:ff"
STATIC = {"enable": True, "static_resolutions": [{"ip": "192.0.2.10", "mac": A}]}
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


def test_a_probe_that_counts_turns_the_sieve_off():
    r = Recorder({"arp_neighbor": STATIC, "bum_rate": {"enable": True, "window": 10.0,
                                                       "thresholds": {"broadcast": 3}}})
    assert r.engine._sieve is None
    r.feed(*[arp()] * 5, step=0.1)
    r.engine.flush()
    assert r.types() == ["BUM_RATE_BROADCAST_EXCEEDED"]


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


def test_a_sieve_that_does_not_pay_is_given_up(monkeypatch, caplog):
    """Made-up or too varied pairs cannot grow the sieve, nor make every frame pay for it."""
    caplog.set_level(logging.INFO, "ixpect.engine")
    monkeypatch.setattr(engine_module, "SIEVE_LIMIT", 10)
    r = Recorder({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    pairs = [arp(psrc=f"10.0.{i // 256}.{i % 256}") for i in range(100)]
    r.feed(*pairs, *pairs)  # new, then quiet but never repeated while the sieve filled
    assert "varies too much to sieve" in caplog.text
    assert _sieved(r, *pairs) == 0
    assert r.engine._table[0x0806] == (r.engine._arp,)  # nothing left to learn
    assert r.engine.frames == 300 and len(r.events) == 100
    assert r.engine.unsieved == {0x0806}  # ixpect_sieve_given_up{ether_type="0x0806"} 1
    r.engine.configure({"arp_neighbor": {"enable": True, "dynamic_enable": True}})
    assert r.engine.unsieved == set() and r.engine._table[0x0806][-1] == r.engine._teach
