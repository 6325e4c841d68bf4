"""`ixpect run --pcap` end to end on the bundled demo, and its exit codes."""

import json
import re
import subprocess
import sys
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
        assert set(e) == {"type", "timestamp", "id", "data", "member", "member_claimed"}
        assert re.fullmatch(r"2025-10-25T21:0\d:\d\d\.\d{6}Z", e["timestamp"])
        uuid.UUID(e["id"])
    spoof = next(e for e in events if e["type"] == "ARP_NEIGHBOR_SPOOFED_STATIC")
    assert spoof["data"] == {"mac_addr_source": "02:00:00:00:00:0c", "ip4_addr": "192.0.2.10",
                             "mac_addr": "02:00:00:00:00:0c", "mac_addr_expected": ["02:00:00:00:00:0a"]}
    # Gamma's router claims Alpha's address: Gamma sent it, Alpha is the victim
    assert spoof["member"] == {"asn": 64502, "name": "Gamma Hosting"}
    assert spoof["member_claimed"] == {"asn": 64500, "name": "Alpha Networks"}
    # the log notifier printed one line per batch, naming both
    assert re.search(r"^ARP_NEIGHBOR_SPOOFED_STATIC x1 .* member=AS64502 \(Gamma Hosting\) "
                     r"member_claimed=AS64500 \(Alpha Networks\)$", p.stderr, re.M)
    assert "538 frames processed" in p.stderr


def test_without_notifiers_events_go_to_the_log(tmp_path):
    """A config that names no notifier (what `ixf render` writes without --base) is not silent."""
    conf = tmp_path / "bare.conf.yaml"
    conf.write_text("probes:\n  stp: {enable: true}\n  arp_neighbor: {enable: true}\n")
    p = subprocess.run([*IXPECT, "check-config", conf], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == f"{conf}: ok\n"
    assert p.stderr == f"{conf}: no notifier configured: events go to the log notifier " \
                       "(stderr, the journal under systemd)\n"
    p = run("-c", conf, "--pcap", DEMO_PCAP)
    assert p.returncode == 0, p.stderr
    assert "no notifier configured" in p.stderr
    assert re.search(r"^STP_PACKET_FOUND x\d+ .* mac_addr_source=", p.stderr, re.M)
    assert re.search(r"^ARP_NEIGHBOR_UNKNOWN x\d+ ", p.stderr, re.M)
    # a config with a notifier of its own gets no log notifier on top
    conf.write_text("probes:\n  stp: {enable: true}\nevent:\n  notifiers:\n"
                    "    http: {channels: [{url: 'http://127.0.0.1:9/'}]}\n")
    p = subprocess.run([*IXPECT, "check-config", conf], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "")


def test_the_log_fallback_survives_the_preload(caplog):
    """A live daemon imports every notifier module before it drops privileges, the log
    notifier's module among them; the fallback to it must still work after that."""
    from ixpect import daemon, notify

    daemon.preload()
    with caplog.at_level("WARNING", logger="ixpect.notify"):
        chans = notify.channels({})
    assert [type(c.notifier).__name__ for c in chans] == ["LogNotifier"]
    assert notify.NO_NOTIFIER in caplog.text


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


#: what `ixpect run` with the log notifier needs none of, at start or per frame:
#: jsonschema explains a config that does not validate, jinja2 renders the templates
#: of mail and chat notifiers, scapy is for tests and tools only
NOT_IMPORTED = ("jsonschema", "referencing", "jinja2", "scapy", "requests", "urllib3", "prometheus_client",
                "difflib", "email", "pyroute2")


def test_a_run_imports_only_what_its_config_uses(tmp_path):
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(DEMO_CONF.read_text().replace("demo.members.json", str(REPO / "examples" / "demo.members.json")))
    code = ("import sys; from ixpect.cli import main; status = main(sys.argv[1:]);"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules}))); sys.exit(status)")
    p = subprocess.run([sys.executable, "-c", code, "run", "-c", conf, "--pcap", DEMO_PCAP, "--jsonl", tmp_path / "ev"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "ev").read_text().count("\n") > 20  # it did run the probes
    imported = set(p.stdout.split())
    assert "ixpect" in imported and "yaml" in imported
    assert imported.isdisjoint(NOT_IMPORTED), imported & set(NOT_IMPORTED)
