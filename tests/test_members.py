"""The member table: `member` is who sent the frame, `member_claimed` whose address it claims."""

import pytest

from conftest import REPO, Recorder
from ixpect import config
from ixpect.events import Batch, mac
from ixpect.members import MemberTable
from ixpect.notify.alertmanager import AlertmanagerNotifier
from ixpect.notify.log import describe
from ixpect.notify.render import Templates, render
from ixpect.pcap import frames

A = {"asn": 64500, "name": "Alpha"}
B = {"asn": 64501, "name": "Beta"}
AB = {**A, "shared_with": [B]}
TABLE = MemberTable({"02:00:00:00:00:0a": A, "02:00:00:00:00:0b": B, "02:00:00:00:00:ab": AB},
                    {"192.0.2.10": A, "192.0.2.11": B})


def test_the_sender_is_the_member_and_the_victim_is_claimed():
    # ARP_SENDER_MISMATCH: Alpha's router sends an ARP claiming Beta's MAC
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:0a", "mac_addr": "02:00:00:00:00:0b"}) == (A, B)
    # ARP_NEIGHBOR_SPOOFED_STATIC: Alpha announces Beta's address with its own MAC
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:0a", "ip4_addr": "192.0.2.11",
                       "mac_addr": "02:00:00:00:00:0a"}) == (A, B)
    # an unknown station claiming Beta's address: nobody known sent it, Beta is the victim
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:99", "ip4_addr": "192.0.2.11",
                       "mac_addr": "02:00:00:00:00:99"}) == (None, B)
    # a member's own address is no claim
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:0a", "ip4_addr": "192.0.2.10",
                       "mac_addr": "02:00:00:00:00:0a"}) == (A, None)
    # the claimed address decides even when the sender's MAC is named first
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:0b", "protocol": "ospf",
                       "ip4_addr_source": "192.0.2.10"}) == (B, A)
    # a stranger binds Beta's address to Alpha's MAC: the address is what was stolen
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:99", "ip4_addr": "192.0.2.11",
                       "mac_addr": "02:00:00:00:00:0a"}) == (None, B)
    assert TABLE.name({"table": "x", "limit": 1}) == (None, None)


def test_a_shared_mac_names_every_claimant_and_claims_none_of_them():
    assert TABLE.name({"mac_addr_source": "02:00:00:00:00:ab", "ip4_addr": "192.0.2.11",
                       "mac_addr": "02:00:00:00:00:ab"}) == (AB, None)


def test_both_members_reach_every_notifier_format():
    b = Batch("ARP_NEIGHBOR_SPOOFED_STATIC", {"mac_addr_source": "02:00:00:00:00:ab", "ip4_addr": "192.0.2.10"},
              AB, 1.0, 1.0, member_claimed=A)
    assert describe(b).endswith("member=AS64500 (Alpha) / AS64501 (Beta) member_claimed=AS64500 (Alpha)")
    assert b.to_json()["member_claimed"] == A
    templates = Templates()
    labels = AlertmanagerNotifier({}, {"url": "http://127.0.0.1:9"}, templates).alert(b, 1.0)["labels"]
    assert (labels["asn"], labels["member"]) == ("64500/64501", "Alpha / Beta")
    assert (labels["claimed_asn"], labels["claimed_member"]) == ("64500", "Alpha")
    for name in ("summary.txt", "slack.txt", "table.html"):
        text = render(templates.get(name), [b])
        assert "AS64500 (Alpha) / AS64501 (Beta)" in text, name
        assert text.count("AS64500 (Alpha)") == 2, name


def test_every_event_of_a_frame_names_its_sender():
    """The one rule, for every event type the demo capture raises (every probe's): an
    event about a frame carries the frame's Ethernet source, and `member` is its owner."""
    cfg = config.load(REPO / "examples" / "demo.conf.yaml")
    table = MemberTable.load(cfg["member_table"])
    r = Recorder(cfg["probes"], table)
    r.engine.feed(frames(REPO / "examples" / "demo.pcap"))
    r.engine.flush()
    types = set()
    for ev in r.events:
        if ev.frame is not None or "mac_addr_source" in ev.data:
            assert ev.member == table.macs.get(ev.data["mac_addr_source"]), ev
            types.add(ev.type)
        if ev.frame is not None:
            assert ev.data["mac_addr_source"] == mac(ev.frame[6:12]), ev
    assert len(types) >= 20, types


def test_a_member_table_with_a_bad_address_is_refused_with_its_name(tmp_path):
    path = tmp_path / "members.json"
    path.write_text('{"macs": {}, "ips": {"192.0.2.300": {"asn": 64500, "name": "A"}}}')
    with pytest.raises(ValueError, match=r"members.json: ips: '192.0.2.300' is not an IP address"):
        MemberTable.load(path)


def test_the_daemon_reads_the_member_table_once_per_load(tmp_path, monkeypatch):
    """Loading a config checks the member table by building it; the daemon uses that one."""
    (tmp_path / "members.json").write_text('{"macs": {"02:00:00:00:00:0a": {"asn": 64500, "name": "Alpha"}}, '
                                           '"ips": {"2001:db8::a": {"asn": 64500, "name": "Alpha"}}}')
    (tmp_path / "ixpect.conf.yaml").write_text("member_table: members.json\n")
    read = []
    real = MemberTable.load.__func__
    monkeypatch.setattr(MemberTable, "load", classmethod(lambda cls, path: read.append(path) or real(cls, path)))
    cfg, members = config.load_with_members(str(tmp_path / "ixpect.conf.yaml"))
    assert read == [str(tmp_path / "members.json")] == [cfg["member_table"]]
    assert members.macs == {"02:00:00:00:00:0a": A} and members.ips == {"2001:db8::a": A}
    with pytest.raises(config.ConfigError, match=r"ixpect.conf.yaml:1: member_table: .*members.json: cannot read"):
        (tmp_path / "members.json").unlink()
        config.load_with_members(str(tmp_path / "ixpect.conf.yaml"))
