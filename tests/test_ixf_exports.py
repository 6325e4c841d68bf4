"""Every IX-F export in ../shared/ixf either renders to a valid config or fails with the expected message.

The table was written after checking each file by hand (SOURCES.md, VALIDATION.txt and an
independent count of members, addresses and MACs per (ixp_id, vlan_id)); the test computes the
outcome with `ixpect ixf render` and compares. Counts are for the selected LAN only (LINX's 605
members are spread over six infrastructures; ixp_id 0 "London Juniper" has 585 of them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import SHARED
from ixpect import config, members
from ixpect.cli import main
from ixpect.members import MemberTable

IXF = SHARED / "ixf"
pytestmark = pytest.mark.needs("test data")

# file: (ixp_id, vlan_id, outcome); outcome is
#   (members, IPv4, IPv6, MACs, ARP static entries, ND static entries incl. one EUI-64 fe80:: per MAC)
#   or the expected error message (a regex)
EXPECTED = {
    # 0.4, vlan_list/if_list are objects and VLAN mask_length is null: fields we read
    "amsix-2016-10-v0.4.json": (1, 501, r"schema 0.4 in 1105 place\(s\):\n  ixp_list\[0\]\.vlan\[0\]\.ipv4\.mask_length: "
                                        r"None is not of type 'integer'(.|\n)*"),
    "arix-2024-10-v1.0.json": (1, 1, (20, 21, 21, 0, 0, 0)),  # missing timestamp: a warning
    # undeclared VLANs 0/1/22; dotted Cisco MACs; '193.242.98.150/24' cleaned; two bad IPv6 dropped
    "catnix-2016-10-v0.5.json": (11, 0, (22, 22, 12, 22, 23, 36)),
    # version "2016.10.22.21" -> best effort 0.6; upper-case, comma-joined MACs (126 pairs) split
    "decix-fra-2016-10-vnonstd.json": (1, 1, (689, 807, 811, 942, 941, 1887)),
    # ECIX: no vlan_id on any entry (-> VLAN 0), no MACs
    "ecix-ber-2016-10-v0.5.json": (305, 0, (53, 60, 53, 0, 0, 0)),
    "ecix-dus-2016-10-v0.5.json": (300, 0, (109, 120, 111, 0, 0, 0)),
    "ecix-fra-2016-10-v0.5.json": (320, 0, (85, 94, 91, 0, 0, 0)),
    "ecix-ham-2016-10-v0.5.json": (310, 0, (51, 55, 49, 0, 0, 0)),
    "ecix-muc-2016-10-v0.5.json": (330, 0, (37, 40, 36, 0, 0, 0)),
    "franceix-mrs-2016-10-v0.5.json": (5, 5, (29, 29, 29, 28, 28, 56)),
    "franceix-par-2016-10-v0.5.json": (4, 4, (319, 319, 319, 306, 306, 612)),
    # connections say vlan_id 0, which ixp_list does not declare; misnamed ipv4.mac_address all ""
    "gigapix-2016-10-v0.5.json": (527, 0, (28, 28, 22, 0, 0, 0)),
    "inex-2016-10-v0.5.json": (1, 2, (83, 85, 57, 82, 82, 137)),
    "ix42-2021-10-v1.0.json": (1, 2, (30, 5, 31, 0, 0, 0)),  # url: null is a warning
    "linx-2016-10-v0.6.json": (0, 0, (585, 657, 452, 705, 711, 1183)),
    "lonap-2016-10-v0.5.json": (1, 1, (176, 235, 183, 228, 228, 409)),
    "megaport-multi-2016-10-v0.4.json": (1, 0, (159, 179, 179, 179, 179, 358)),
    "miaowoo-ashburn-2023-02-v1.0.json": (1, 1, (8, 0, 8, 0, 0, 0)),
    "nixcz-2016-10-v0.5.json": (15, 10, (140, 199, 199, 0, 0, 0)),  # leading spaces in IPv6 cleaned
    "nixsk-2016-10-v0.5.json": (552, 10, (36, 38, 38, 0, 0, 0)),
    "qcix-2020-03-v1.0.json": (1, 1, (19, 19, 19, 0, 0, 0)),
    "rix-2016-10-v0.5.json": (1, 0, (25, 35, 35, 0, 0, 0)),
    # "unknown" dropped; a Python list repr "[u'..', u'..']" yields its two MACs
    "sfmix-2016-10-v0.4.json": (155, 0, (47, 50, 50, 50, 50, 100)),
    # "true"/"600" strings in routeserver/max_prefix: fields not read, so warnings
    "six-seattle-2016-10-v0.5.json": (1, 2, (241, 266, 266, 0, 0, 0)),
    "suprnet-2020-03-v0.7.json": (1, 1, (23, 24, 21, 24, 24, 45)),
    "tie-telx-2016-10-v0.4.json": (1, 132, (119, 125, 125, 0, 0, 0)),  # url: [] is a warning
    "trex-2016-10-v0.5.json": (46, 4, (23, 23, 23, 0, 0, 0)),
    "trex-2020-02-v0.6.json": (46, 4, (18, 18, 18, 0, 0, 0)),
    # IPv4 and IPv6 in separate vlan_list entries with the same vlan_id: merged by address
    "generated/arouteserver-ixf-member-export-bcix-2017-v0.6.json": (0, 0, (81, 95, 87, 0, 0, 0)),
    "generated/arouteserver-ixf-member-export-grix-2017-v0.6.json": (0, 0, (28, 39, 35, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v0.6-auth.json": (1, 1, (4, 3, 2, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v0.6-unauth.json": (2, 2, (3, 3, 2, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v0.7-auth.json": (1, 1, (4, 3, 2, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v0.7-unauth.json": (2, 2, (3, 3, 2, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v1.0-auth.json": (1, 1, (4, 3, 2, 0, 0, 0)),
    "generated/ixpmanager-ci-known-good-v1.0-unauth.json": (2, 2, (3, 3, 2, 0, 0, 0)),
    "synthetic/arouteserver-ixpmanager-nested-vlan_list-v0.5.json":
        (1, 2, r"schema 0.5 in 2 place\(s\):\n  member_list\[0\]\.connection_list\[0\]\.vlan_list\[0\] "
               r"\(member AS112 AS112 Reverse DNS\): \[\{'vlan_id': 2"),
    # every IPv4 is like 195.69.147.300 (dropped); the one IPv6 remains
    "synthetic/peeringdb-test-ixf.member.dupe.ip.json": (42, 0, (1, 0, 1, 0, 0, 0)),
    "synthetic/peeringdb-test-ixf.member.null.ip.vlan.json":
        (42, 1, r"member_list\[0\]\.connection_list\[0\]\.vlan_list\[0\]\.ipv4 \(member AS1001 Netflix\): "
                r"None is not of type 'object'"),
    "synthetic/peeringdb-test-ixf.member.null.vlan_list_and_if_list.json":
        (1, 0, r"in 1 place\(s\):\n  member_list\[0\]\.connection_list\[0\]\.vlan_list \(member AS1001 Netflix\): "
               r"None is not of type 'array'$"),
    "synthetic/peeringdb-test-ixf.member.vlan_list_empty.json":
        (1, 0, r"no member address in ixp_id 1 vlan_id 0; this export has: none"),
    "synthetic/peeringdb-test-members.0.6.json":
        (42, 0, r"in 4 place\(s\):\n  \(top level\): 'ixp_list' is a required property\n"
                r"  member_list\[0\]\.connection_list\[0\] \(member AS2906 Netflix\): 'ixp_id' is a required property"),
}


def render(capsys, source, ixp_id, vlan_id, out, *extra) -> tuple[int, str, str]:
    code = main(["ixf", "render", "--source", str(source), "--ixp-id", str(ixp_id),
                 "--vlan-id", str(vlan_id), "-o", str(out), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_table_covers_every_export():
    files = {str(p.relative_to(IXF)) for p in IXF.rglob("*.json") if p.parent.name != "schemas"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_export(name, tmp_path, capsys):
    ixp_id, vlan_id, outcome = EXPECTED[name]
    out = tmp_path / "ixpect.conf.yaml"
    code, stdout, stderr = render(capsys, IXF / name, ixp_id, vlan_id, out)
    if isinstance(outcome, str):
        assert code == 1
        assert re.search(outcome, stderr), stderr
        # no config and no member table; only the status file records the failure
        assert [p.name for p in tmp_path.iterdir()] == ["ixpect.conf.status.json"]
        assert "failed" in json.loads((tmp_path / "ixpect.conf.status.json").read_text())
        return
    assert code == 0, stderr
    assert stdout == "changed\n"
    cfg = config.load(out)  # what the daemon does: validates against the config schema
    probes = cfg["probes"]
    arp, nd = probes["arp_neighbor"]["static_resolutions"], probes["ipv6_neighbor"]["static_resolutions"]
    assert (len(arp), len(nd), len({e["mac"] for e in arp + nd})) == (outcome[4], outcome[5], outcome[3])
    assert f"{outcome[0]} members, {outcome[1]} IPv4 and {outcome[2]} IPv6 addresses, {outcome[3]} MACs; " \
           f"{outcome[4]} ARP and {outcome[5]} ND static entries" in stderr
    assert Path(cfg["member_table"]) == tmp_path / "ixpect.conf.members.json"
    table = json.loads(Path(cfg["member_table"]).read_text())
    assert 0 < len({m["asn"] for m in table["ips"].values()}) <= outcome[0]  # claimed-twice ones are left out
    # rendering the same export again changes nothing
    assert render(capsys, IXF / name, ixp_id, vlan_id, out)[:2] == (0, "unchanged\n")


def test_decix_comma_joined_macs_are_split(tmp_path, capsys):
    doc = json.loads((IXF / "decix-fra-2016-10-vnonstd.json").read_text())
    joined = [v for m in doc["member_list"] for c in m["connection_list"] for v in c.get("vlan_list", [])
              if "," in v.get("mac_address", "") and v.get("vlan_id") == 1 and "ipv4" in v]
    assert len(joined) > 100
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, IXF / "decix-fra-2016-10-vnonstd.json", 1, 1, out)
    assert code == 0
    assert ("warning: unknown schema version: '2016.10.22.21' is not one of 0.4, 0.5, 0.6, 0.7, 1.0; "
            "validated against 0.6, the closest fit\n") in err
    arp = config.load(out)["probes"]["arp_neighbor"]["static_resolutions"]
    for v in joined:
        expected = {m.strip().lower() for m in v["mac_address"].split(",")}
        assert {e["mac"] for e in arp if e["ip"] == v["ipv4"]["address"]} == expected


def test_strict_turns_warnings_into_errors(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, IXF / "six-seattle-2016-10-v0.5.json", 1, 2, out, "--strict")
    assert code == 1
    assert "member_list[0].connection_list[0].vlan_list[0].ipv4.routeserver (member AS7575 AARNet Pty Ltd): " \
           "'true' is not of type 'boolean'" in err
    assert not out.exists()


def test_wrong_selection_names_what_exists(tmp_path, capsys):
    code, _, err = render(capsys, IXF / "inex-2016-10-v0.5.json", 1, 99, tmp_path / "c.yaml")
    assert code == 1
    assert "no member address in ixp_id 1 vlan_id 99; this export has: ixp_id 1 vlan_id 2 (142 addresses)" in err


def test_list_shows_ids_prefixes_and_counts(capsys):
    assert main(["ixf", "list", "--source", str(IXF / "inex-2016-10-v0.5.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ixp_id 1  INEX"
    assert out[1] == ("  vlan_id 2  Peering VLAN #1  193.242.111.0/25 2001:7f8:18::/64  "
                      "members 83  ipv4 85  ipv6 57  macs 82")
    assert len(out) == 6


def test_base_config_is_merged_under_the_rendered_keys(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text("""
event:
  collection_window: 15s
  notifiers:
    log: {channels: [{events: []}]}
probes:
  arp_neighbor:
    dynamic_enable: false
    static_resolutions: [{ip: 37.49.232.250, mac: "02:00:5e:00:01:fa"}]   # the IXP's own router
  arp_bogon:
    prefixes: [185.1.0.0/24]
  ipv6_neighbor: {enable: false}
""")
    base.chmod(0o600)
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, IXF / "franceix-mrs-2016-10-v0.5.json", 5, 5, out, "--base", str(base))
    assert code == 0, err
    assert "no notifier configured" not in err
    cfg = config.load(out)
    assert cfg["event"]["collection_window"] == 15
    assert cfg["probes"]["arp_neighbor"]["dynamic_enable"] is False
    assert {"ip": "37.49.232.250", "mac": "02:00:5e:00:01:fa"} in cfg["probes"]["arp_neighbor"]["static_resolutions"]
    assert len(cfg["probes"]["arp_neighbor"]["static_resolutions"]) == 29
    assert cfg["probes"]["arp_bogon"]["prefixes"] == ["185.1.0.0/24", "37.49.232.0/24"]
    # the probes the export feeds are on, unless the base turns one off
    assert [cfg["probes"][p]["enable"] for p in ("arp_bogon", "arp_neighbor", "ipv6_bogon", "ipv6_neighbor")] \
        == [True, True, True, False]
    assert out.stat().st_mode & 0o777 == 0o600  # the base may hold notifier secrets


def test_render_without_base_says_events_go_to_the_log(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, IXF / "franceix-mrs-2016-10-v0.5.json", 5, 5, out)
    assert code == 0, err
    assert f"{out}: no notifier configured: events go to the log notifier (stderr, the journal under systemd) " \
           "(--base adds notifiers)\n" in err
    assert config.load(out)["event"]["notifiers"] == {}


def test_vlan_without_prefix_disables_its_bogon_probe(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert render(capsys, IXF / "miaowoo-ashburn-2023-02-v1.0.json", 1, 1, out)[0] == 0
    probes = config.load(out)["probes"]
    assert probes["arp_bogon"]["enable"] is False  # an empty prefix list would make every address a bogon
    assert probes["ipv6_bogon"]["prefixes"] == ["2a0e:b107:1b20::/64"]


def test_custom_template_and_template_errors(tmp_path, capsys):
    tpl = tmp_path / "t.j2"
    tpl.write_text("member_table: {{ member_table | tojson }}\nprobes:\n"
                   "  arp_neighbor:\n    static_resolutions: {{ arp_static | tojson }}\n"
                   "# {{ ixp.shortname }} {{ vlan.name }}\n")
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, IXF / "franceix-mrs-2016-10-v0.5.json", 5, 5, out, "--template", str(tpl))
    assert code == 0, err
    assert len(config.load(out)["probes"]["arp_neighbor"]["static_resolutions"]) == 28
    before = out.read_bytes()
    tpl.write_text("probes: {{ nonexistent.key }}\n")
    code, _, err = render(capsys, IXF / "franceix-mrs-2016-10-v0.5.json", 5, 5, out, "--template", str(tpl))
    assert code == 1 and f"{tpl}: template error: 'nonexistent' is undefined" in err
    tpl.write_text("probes:\n  arp_neighbor: {enable: maybe}\n")
    code, _, err = render(capsys, IXF / "franceix-mrs-2016-10-v0.5.json", 5, 5, out, "--template", str(tpl))
    assert code == 1 and "does not validate" in err and "probes.arp_neighbor.enable" in err
    assert out.read_bytes() == before


def test_member_table_names_route_servers_and_link_locals(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert render(capsys, IXF / "suprnet-2020-03-v0.7.json", 1, 1, out)[0] == 0
    table = MemberTable.load(tmp_path / "c.members.json")
    doc = json.loads((IXF / "suprnet-2020-03-v0.7.json").read_text())
    rs = [(m, v) for m in doc["member_list"] for c in m["connection_list"] for v in c["vlan_list"]
          if v.get("ipv4", {}).get("routeserver")]
    assert rs
    for m, v in rs:
        mac = v["ipv4"]["mac_addresses"][0].lower()
        assert table.ips[v["ipv4"]["address"]] == {"asn": m["asnum"], "name": m["name"]}
        assert table.name({"mac_addr_source": mac})[0]["asn"] == m["asnum"]
    # every member with an address on the LAN has its connections counted, for MEMBER_MAC_COUNT_EXCEEDED
    members = {m["asnum"] for m in doc["member_list"]
               if any(v.get("vlan_id") == 1 for c in m["connection_list"] if c["ixp_id"] == 1 for v in c["vlan_list"])}
    assert set(table.connections) == members and all(n >= 1 for n in table.connections.values())


def test_macs_and_addresses_of_several_asns_name_them_all(tmp_path, capsys):
    """LINX lists hundreds of MACs for two ASNs: each is attributed to every claimant, never unknown."""
    code, _, stderr = render(capsys, IXF / "linx-2016-10-v0.6.json", 0, 0, tmp_path / "c.yaml")
    assert code == 0 and "MAC claimed by several ASNs (events name them all)" in stderr
    table = MemberTable.load(tmp_path / "c.members.json")
    doc = json.loads((IXF / "linx-2016-10-v0.6.json").read_text())
    claimants: dict[str, set] = {}
    for m in doc["member_list"]:
        for c in m["connection_list"]:
            for v in c["vlan_list"] if c["ixp_id"] == 0 else ():
                for family in ("ipv4", "ipv6"):
                    for mac in (v.get(family) or {}).get("mac_addresses") or ():
                        claimants.setdefault(mac.lower(), set()).add(m["asnum"])
    shared = {mac: asns for mac, asns in claimants.items() if len(asns) > 1}
    assert len(shared) > 100
    for mac, asns in claimants.items():
        member, claimed = table.name({"mac_addr_source": mac})
        assert members.asns(member) == asns and claimed is None, mac
        assert member["asn"] == min(asns)
