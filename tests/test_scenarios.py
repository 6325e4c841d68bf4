"""Scenarios built from real IX-F member lists (tests/scenario.py): thousands of legitimate
frames and injected violations through `ixpect run --pcap`, with the probes that judge
frames one by one and with every probe (the counting ones too).
Every event must be expected (precision 100%), every violation reported (recall 100%),
each naming the member that sent it and the member whose address it claimed.

Each export has seeds of its own; IXPECT_SCENARIO_SEEDS=N runs N of them per export
instead of one (a longer run: about 5 s of CPU per scenario)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest
import yaml

from conftest import IXPECT, SHARED
from ixpect import config
from ixpect.cli import main
from ixpect.pcapwrite import pcap
from scenario import Lan, Scenario, covering, observed

#: (export, ixp_id, vlan_id): declared prefixes or not, shared MACs and addresses,
#: comma-joined MACs, LAGs (several MACs per address), 0.4 to 0.7
EXPORTS = [
    ("suprnet-2020-03-v0.7.json", 1, 1),
    ("inex-2016-10-v0.5.json", 1, 2),
    ("catnix-2016-10-v0.5.json", 11, 0),
    ("sfmix-2016-10-v0.4.json", 155, 0),
    ("linx-2016-10-v0.6.json", 0, 0),
    ("decix-fra-2016-10-vnonstd.json", 1, 1),
]
SEEDS = int(os.environ.get("IXPECT_SCENARIO_SEEDS", "1"))
#: every probe that judges frames one by one
JUDGING = {
    "arp_neighbor": {"enable": True}, "arp_bogon": {"enable": True},
    "ipv6_neighbor": {"enable": True}, "ipv6_bogon": {"enable": True},
    "ipv6_router": {"enable": True}, "stp": {"enable": True}, "l2_protocol": {"enable": True},
    "ether_type": {"enable": True}, "ip_control": {"enable": True},
}
#: and the probes that count frames: every probe, as an exchange deploys them
EVERY_PROBE = {**JUDGING, "mac_address": {"enable": True}, "bum_rate": {"enable": True, "thresholds": {}}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """export -> {"judging" | "every": (config path, Lan)}: rendered by `ixpect ixf
    render` once to learn its prefixes, then again over a base config that turns every
    probe on and gives the LAN's prefixes; "judging" is that without mac_address and
    bum_rate."""
    cache: dict[str, dict] = {}

    def get(name, ixp_id, vlan_id) -> dict:
        if name not in cache:
            out = tmp_path_factory.mktemp("render") / "ixpect.conf.yaml"
            args = ["ixf", "render", "--source", str(SHARED / "ixf" / name), "--ixp-id", str(ixp_id),
                    "--vlan-id", str(vlan_id), "-o", str(out)]
            assert main(args) == 0
            first = config.load(out)
            neighbors = {f: [e["ip"] for e in first["probes"][p]["static_resolutions"] if not e["ip"].startswith("fe80")]
                         for f, p in ((4, "arp_neighbor"), (6, "ipv6_neighbor"))}
            prefixes = {f: first["probes"][p]["prefixes"] or covering(neighbors[f])
                        for f, p in ((4, "arp_bogon"), (6, "ipv6_bogon"))}
            base = out.with_name("base.yaml")
            base.write_text(yaml.safe_dump({"probes": {
                **EVERY_PROBE, "arp_bogon": {"prefixes": prefixes[4]}, "ipv6_bogon": {"prefixes": prefixes[6]},
                "ip_control": {"enable": True, "prefixes": prefixes[4] + prefixes[6]}}}))
            every = out.with_name("every.conf.yaml")
            assert main([*args[:-1], str(every), "--base", str(base)]) == 0
            lan = Lan(config.load(every), json.loads(out.with_name("every.conf.members.json").read_text()))
            judging = out.with_name("judging.conf.yaml")  # the same without the probes that count frames
            doc = yaml.safe_load(every.read_text())
            for probe in EVERY_PROBE.keys() - JUDGING.keys():
                doc["probes"][probe]["enable"] = False
            judging.write_text(yaml.safe_dump(doc))
            cache[name] = {"judging": (judging, lan), "every": (every, lan)}
        return cache[name]
    return get


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("export", EXPORTS, ids=lambda e: e[0].split("-")[0])
def test_scenario(rendered, tmp_path, export, seed):
    configs = rendered(*export)
    scenario = Scenario(configs["judging"][1], EXPORTS.index(export) * 1000 + seed)
    capture = tmp_path / "scenario.pcap"
    capture.write_bytes(pcap(scenario.pcap_frames()))
    assert sum(scenario.truth.values()) >= 10
    for probes, expected in (("judging", scenario.truth), ("every", scenario.truth + scenario.counted)):
        p = subprocess.run([*IXPECT, "run", "-c", configs[probes][0], "--pcap", capture, "--jsonl", "-"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        events = Counter(observed(json.loads(line)) for line in p.stdout.splitlines())
        false_alarms, missed = events - expected, expected - events
        assert not false_alarms and not missed, (probes, sorted(false_alarms), sorted(missed))
