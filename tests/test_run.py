"""`ixpect run --pcap` end to end on the bundled demo, and its exit codes."""

import json
import re
import subprocess
import uuid

import make_demo_pcap
from scapy.utils import wrpcap

from conftest import IXPECT, REPO

DEMO_CONF = REPO / "examples" / "demo.conf.yaml"
DEMO_PCAP = REPO / "examples" / "demo.pcap"

PROBE_EVENTS = {
    "ARP_BOGON_SOURCE", "ARP_BOGON_TARGET",
    "ARP_NEIGHBOR_NEW_DYNAMIC", "ARP_NEIGHBOR_UNKNOWN", "ARP_NEIGHBOR_SPOOFED_STATIC", "ARP_NEIGHBOR_SPOOFED_DYNAMIC",
    "IPV6_BOGON_SOURCE", "IPV6_BOGON_TARGET",
    "IPV6_NEIGHBOR_NEW_DYNAMIC", "IPV6_NEIGHBOR_UNKNOWN", "IPV6_NEIGHBOR_SPOOFED_STATIC", "IPV6_NEIGHBOR_SPOOFED_DYNAMIC",
    "IPV6_ROUTER_ADVERTISEMENT", "IPV6_ROUTER_SOLICITATION",
    "BUM_RATE_BROADCAST_EXCEEDED", "BUM_RATE_MULTICAST_EXCEEDED", "BUM_RATE_UNICAST_EXCEEDED",
    "ETHER_TYPE_VIOLATION", "STP_PACKET_FOUND",
}


def run(*args, **kw):
    return subprocess.run([*IXPECT, "run", *args], capture_output=True, text=True, timeout=60, **kw)


def test_demo_emits_every_probe_event_and_nothing_unexpected():
    p = run("-c", DEMO_CONF, "--pcap", DEMO_PCAP, "--jsonl", "-")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    types = {e["type"] for e in events}
    assert len(PROBE_EVENTS) == 19
    assert types == PROBE_EVENTS | {"IXPECT_BAD_PACKET"}  # the demo's one truncated ARP packet
    for e in events:
        assert set(e) == {"type", "timestamp", "id", "data", "member"}
        assert re.fullmatch(r"2025-10-25T21:0\d:\d\d\.\d{6}Z", e["timestamp"])
        uuid.UUID(e["id"])
    spoof = next(e for e in events if e["type"] == "ARP_NEIGHBOR_SPOOFED_STATIC")
    assert spoof["data"] == {"ip4_addr": "192.0.2.10", "mac_addr": "02:00:00:00:00:0c",
                             "mac_addr_expected": ["02:00:00:00:00:0a"]}
    assert spoof["member"] == {"asn": 64502, "name": "Gamma Hosting"}
    # the log notifier printed one line per batch, naming the member
    assert re.search(r"^ARP_NEIGHBOR_SPOOFED_STATIC x1 .* member=AS64502 \(Gamma Hosting\)$", p.stderr, re.M)
    assert "538 frames processed" in p.stderr


def test_demo_capture_is_what_its_script_builds(tmp_path):
    out = tmp_path / "demo.pcap"
    wrpcap(str(out), make_demo_pcap.build())
    assert out.read_bytes() == DEMO_PCAP.read_bytes()


def test_bad_capture_exits_2_after_processing_the_good_ones(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    p = run("-c", DEMO_CONF, "--pcap", bad, DEMO_PCAP, "--jsonl", tmp_path / "ev.jsonl")
    assert p.returncode == 2
    assert "not a pcap or pcapng file" in p.stderr and "Traceback" not in p.stderr
    assert len((tmp_path / "ev.jsonl").read_text().splitlines()) > 19


def test_missing_config_exits_1(tmp_path):
    p = run("-c", tmp_path / "nope.yaml", "--pcap", DEMO_PCAP)
    assert p.returncode == 1 and "Traceback" not in p.stderr
