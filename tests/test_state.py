"""Learned neighbors survive a restart (`--state-dir`): the second run knows the
first run's pairs, so it neither re-announces them as NEW_DYNAMIC nor lets a spoofer
of one pass; a damaged state file is moved aside, never fatal."""

from __future__ import annotations

import json
import subprocess
import sys

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from ixpect.pcapwrite import pcap

A, B, SPOOFER = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:66"
CONFIG = """\
probes:
  arp_neighbor: {enable: true, dynamic_enable: true}
  ipv6_neighbor: {enable: true, dynamic_enable: true}
event:
  notifiers:
    log: {channels: [{}]}
"""


def arp(mac: str, ip: str) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst="192.0.2.254"))


def na(mac: str, ip: str) -> bytes:
    return bytes(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=ip, dst="ff02::1", hlim=255)
                 / ICMPv6ND_NA(tgt=ip, R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))


def replay(tmp_path, name: str, frames: list[bytes]) -> tuple[list[tuple[str, dict]], str]:
    """Run `ixpect run --pcap` on the frames with the state dir; (events, log)."""
    (tmp_path / f"{name}.pcap").write_bytes(pcap([(1_700_000_000.0 + i, f) for i, f in enumerate(frames)]))
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(CONFIG)
    jsonl = tmp_path / f"{name}.jsonl"
    result = subprocess.run([sys.executable, "-m", "ixpect", "run", "-c", conf, "--pcap", tmp_path / f"{name}.pcap",
                             "--state-dir", tmp_path / "state", "--jsonl", jsonl],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(e["data"].pop("mac_addr_source") == e["data"]["mac_addr"] for e in events)  # each sends its own
    return [(e["type"], e["data"]) for e in events], result.stderr


def test_a_restart_keeps_learned_neighbors(tmp_path):
    teach = [arp(A, "192.0.2.1"), arp(B, "192.0.2.2"), na(A, "2001:db8::a")]
    events, _ = replay(tmp_path, "first", teach)
    assert events == [
        ("ARP_NEIGHBOR_NEW_DYNAMIC", {"ip4_addr": "192.0.2.1", "mac_addr": A}),
        ("ARP_NEIGHBOR_NEW_DYNAMIC", {"ip4_addr": "192.0.2.2", "mac_addr": B}),
        ("IPV6_NEIGHBOR_NEW_DYNAMIC", {"ip6_addr": "2001:db8::a", "mac_addr": A}),
    ]
    state = json.loads((tmp_path / "state" / "neighbors.json").read_text())
    assert state == {"version": 1,
                     "arp_neighbor": {"192.0.2.1": {"mac": A, "since": 1_700_000_000.0},
                                      "192.0.2.2": {"mac": B, "since": 1_700_000_001.0}},
                     "ipv6_neighbor": {"2001:db8::a": {"mac": A, "since": 1_700_000_002.0}}}

    # the same neighbors again, a spoofer of one of them, and one new address
    events, log = replay(tmp_path, "second", teach + [arp(SPOOFER, "192.0.2.2"), na(SPOOFER, "2001:db8::a"),
                                                      arp(B, "192.0.2.3")])
    assert "restored 2 arp_neighbor entries, 1 ipv6_neighbor entries" in log
    assert events == [
        ("ARP_NEIGHBOR_SPOOFED_DYNAMIC", {"ip4_addr": "192.0.2.2", "mac_addr": SPOOFER, "mac_addr_expected": [B]}),
        ("IPV6_NEIGHBOR_SPOOFED_DYNAMIC", {"ip6_addr": "2001:db8::a", "mac_addr": SPOOFER,
                                           "mac_addr_expected": [A]}),
        ("ARP_NEIGHBOR_NEW_DYNAMIC", {"ip4_addr": "192.0.2.3", "mac_addr": B}),
    ]
    state = json.loads((tmp_path / "state" / "neighbors.json").read_text())
    assert set(state["arp_neighbor"]) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert state["arp_neighbor"]["192.0.2.1"]["since"] == 1_700_000_000.0  # learned by the first run


def test_a_damaged_state_file_is_moved_aside(tmp_path):
    damaged = ('{"version": 1, "arp_neighbor": {"192.0.2.1": {"mac": "02:00"',  # cut short
               '{"version": 1, "arp_neighbor": {"not an address": {"mac": "02:00:00:00:00:0a", "since": 0}}}')
    for n, damage in enumerate(damaged):
        (tmp_path / "state").mkdir(exist_ok=True)
        (tmp_path / "state" / "neighbors.json").write_text(damage)
        events, log = replay(tmp_path, f"run{n}", [arp(A, "192.0.2.1")])
        assert "unreadable learned neighbors" in log and "moved aside to neighbors.json.bad" in log
        assert (tmp_path / "state" / "neighbors.json.bad").read_text() == damage
        assert events == [("ARP_NEIGHBOR_NEW_DYNAMIC", {"ip4_addr": "192.0.2.1", "mac_addr": A})]
        assert json.loads((tmp_path / "state" / "neighbors.json").read_text())["arp_neighbor"] == {
            "192.0.2.1": {"mac": A, "since": 1_700_000_000.0}}
        (tmp_path / "state" / "neighbors.json").unlink()


def test_a_table_kept_for_a_disabled_probe_returns_when_a_reload_enables_it(tmp_path):
    from ixpect import config
    from ixpect.daemon import Monitor

    state = tmp_path / "state"
    state.mkdir()
    (state / "neighbors.json").write_text(json.dumps({"version": 1, "arp_neighbor": {
        "192.0.2.1": {"mac": A, "since": 1.0}}}))
    off = config.load_text(CONFIG.replace("arp_neighbor: {enable: true", "arp_neighbor: {enable: false"))
    monitor = Monitor("unused.yaml", off, None, state_dir=str(state))
    try:
        monitor.state.save()  # saving while the probe is off keeps its table in the file
        monitor.state.saved = None  # (nothing changed: force the write)
        monitor.state.save()
        assert json.loads((state / "neighbors.json").read_text())["arp_neighbor"] == {
            "192.0.2.1": {"mac": A, "since": 1.0}}
        monitor.configure(config.load_text(CONFIG), None)  # SIGHUP with the probe on
        assert monitor.engine.probes["arp_neighbor"].dynamic == {bytes([192, 0, 2, 1]): bytes.fromhex("02000000000a")}
    finally:
        monitor.close()
