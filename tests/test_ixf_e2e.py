"""End to end: render France-IX Marseille's real export, replay a capture in which someone answers
for a member's addresses with a foreign MAC, and check that the events name that member."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from conftest import IXPECT, SHARED

pytestmark = pytest.mark.needs("test data")
from ixpect.cli import main
from ixpect.ixf.normalise import link_local

EXPORT = SHARED / "ixf" / "franceix-mrs-2016-10-v0.5.json"
FOREIGN = "02:66:6f:72:65:69"
BASE = """\
event:
  collection_window: 1s
probes:
  arp_neighbor: {dynamic_enable: false}
  ipv6_neighbor: {dynamic_enable: false}
"""


def member_with_both_families():
    doc = json.loads(EXPORT.read_text())
    for m in doc["member_list"]:
        for c in m["connection_list"]:
            for v in c["vlan_list"]:
                if v.get("mac_address") and "ipv4" in v and "ipv6" in v:
                    return m, v
    raise AssertionError("no member with a MAC and both address families")


def test_spoofed_static_events_name_the_member(tmp_path, capsys):
    member, vlan = member_with_both_families()
    mac = vlan["mac_address"].lower()
    ip4, ip6 = vlan["ipv4"]["address"], vlan["ipv6"]["address"]
    base = tmp_path / "base.yaml"
    base.write_text(BASE)
    conf = tmp_path / "ixpect.conf.yaml"
    assert main(["ixf", "render", "--source", str(EXPORT), "--ixp-id", "5", "--vlan-id", "5",
                 "--base", str(base), "-o", str(conf)]) == 0
    assert capsys.readouterr().out == "changed\n"
    status = json.loads((tmp_path / "ixpect.conf.status.json").read_text())  # for the daemon's metrics
    assert status["entries"]["members"] > 0 and time.time() - 60 < status["refreshed"] <= time.time()

    bcast, peer4, peer6 = "ff:ff:ff:ff:ff:ff", "37.49.232.1", "2001:7f8:54:5::1"
    frames = [
        # the member's router, correctly: its MAC for its IPv4, and ND from its EUI-64 link-local
        Ether(src=mac, dst=bcast) / ARP(op=1, hwsrc=mac, psrc=ip4, pdst=peer4),
        Ether(src=mac, dst="33:33:ff:00:00:01") / IPv6(src=str(link_local(mac)), dst="ff02::1:ff00:1")
        / ICMPv6ND_NS(tgt=peer6) / ICMPv6NDOptSrcLLAddr(lladdr=mac),
        # someone else answering for the member's addresses
        Ether(src=FOREIGN, dst=bcast) / ARP(op=2, hwsrc=FOREIGN, psrc=ip4, pdst=peer4),
        Ether(src=FOREIGN, dst="33:33:00:00:00:01") / IPv6(src=ip6, dst="ff02::1")
        / ICMPv6ND_NA(tgt=ip6, R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=FOREIGN),
    ]
    pcap = tmp_path / "spoof.pcap"
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i
    wrpcap(str(pcap), frames)

    p = subprocess.run([*IXPECT, "run", "-c", str(conf), "--pcap", str(pcap), "--jsonl", "-"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    who = {"asn": member["asnum"], "name": member["name"]}
    # the sender is no member: the member is the one whose addresses were claimed
    assert [(e["type"], e["data"], e["member"], e["member_claimed"]) for e in events] == [
        ("ARP_NEIGHBOR_SPOOFED_STATIC", {"mac_addr_source": FOREIGN, "ip4_addr": ip4, "mac_addr": FOREIGN,
                                         "mac_addr_expected": [mac]}, None, who),
        ("IPV6_NEIGHBOR_SPOOFED_STATIC", {"mac_addr_source": FOREIGN, "ip6_addr": ip6, "mac_addr": FOREIGN,
                                          "mac_addr_expected": [mac]}, None, who),
    ]
