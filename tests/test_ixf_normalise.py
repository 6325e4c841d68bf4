"""The IX-F renderer's input rules: JSON parsing, MAC and address spellings, merging, atomic writes."""

from __future__ import annotations

import ipaddress
import os

import pytest

from ixpect.ixf import IxfError, Problems
from ixpect.ixf.fetch import parse
from ixpect.ixf.normalise import Export, link_local, parse_macs
from ixpect.ixf.render import write_if_changed


@pytest.mark.parametrize("raw, macs", [
    ("00:1B:21:3A:4F:5C", {"00:1b:21:3a:4f:5c"}),                      # DE-CIX upper case
    ("001b.213a.4f5c", {"00:1b:21:3a:4f:5c"}),                         # Cisco dotted (CATNIX)
    ("00-1b-21-3a-4f-5c ", {"00:1b:21:3a:4f:5c"}),                     # dashes, trailing space
    ("00:1B:21:3A:4F:5C,00:1B:21:3A:4F:5D", {"00:1b:21:3a:4f:5c", "00:1b:21:3a:4f:5d"}),  # comma-joined
    ("[u'00:1b:21:3a:4f:5c', u'00:1b:21:3a:4f:5d']", {"00:1b:21:3a:4f:5c", "00:1b:21:3a:4f:5d"}),  # SFMIX
    (["00:1b:21:3a:4f:5c", "00:1B:21:3A:4F:5C"], {"00:1b:21:3a:4f:5c"}),  # duplicates
])
def test_mac_spellings(raw, macs):
    problems = Problems()
    assert parse_macs(raw, "AS64500 X", problems) == macs
    assert not problems


@pytest.mark.parametrize("raw, kind", [
    ("", "empty MAC dropped"),
    ("unknown", "unusable MAC dropped"),
    ("00:1b:21:3a:4f", "unusable MAC dropped"),
    ("00:00:00:00:00:00", "placeholder or multicast MAC dropped"),
    ("01:00:5e:00:00:01", "placeholder or multicast MAC dropped"),
])
def test_unusable_macs_are_dropped_with_a_warning(raw, kind):
    problems = Problems()
    assert parse_macs(raw, "AS64500 X", problems) == set()
    assert list(problems.kinds) == [kind]
    assert problems.kinds[kind][0].startswith("AS64500 X")


def test_eui64_link_local():
    assert link_local("52:54:00:12:34:56") == ipaddress.IPv6Address("fe80::5054:ff:fe12:3456")
    assert link_local("02:00:00:00:00:0a") == ipaddress.IPv6Address("fe80::ff:fe00:a")


def test_af_split_entries_duplicates_and_zero_ids_merge():
    doc = {"member_list": [
        {"asnum": 64500, "name": "A", "connection_list": [{"ixp_id": 0, "vlan_list": [
            {"vlan_id": 0, "ipv4": {"address": "192.0.2.1", "mac_addresses": ["02:00:00:00:00:01"]}},
            {"vlan_id": 0, "ipv6": {"address": " 2001:DB8::1", "mac_addresses": ["02:00:00:00:00:01"]}},
            {"ipv4": {"address": "192.0.2.1/24", "mac_addresses": ["02:00:00:00:00:02"]}},  # no vlan_id: 0
        ]}]},
        {"asnum": 64501, "name": "B", "connection_list": [{"ixp_id": 0, "vlan_list": [
            {"vlan_id": 0, "ipv4": {"address": "192.0.2.1", "mac_addresses": []}}]}]},
    ]}
    problems = Problems()
    lan = Export(doc, problems).lan(0, 0)
    assert [(str(a.ip), sorted(a.macs), sorted(a.owners)) for a in lan] == [
        ("192.0.2.1", ["02:00:00:00:00:01", "02:00:00:00:00:02"], [64500, 64501]),
        ("2001:db8::1", ["02:00:00:00:00:01"], [64500]),
    ]
    assert list(problems.kinds) == ["prefix length on an address ignored"]


def test_write_if_changed_is_atomic_and_keeps_the_mode(tmp_path):
    path = tmp_path / "c.yaml"
    assert write_if_changed(path, "a: 1\n", 0o640)
    assert path.stat().st_mode & 0o777 == 0o640
    inode = path.stat().st_ino
    assert not write_if_changed(path, "a: 1\n", 0o600)
    assert path.stat().st_ino == inode  # untouched
    path.chmod(0o600)
    assert write_if_changed(path, "a: 2\n", 0o644)
    assert path.read_text() == "a: 2\n" and path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["c.yaml"]  # no temporary file left behind


@pytest.mark.parametrize("body, message", [
    (b"", "x: empty response"),
    (b"<html><body>Please log in</body></html>", "x: got HTML or XML, not JSON (a login or error page?)"),
    (b'{"version": "1.0",}', "x: invalid JSON at line 1 column 19: Expecting property name enclosed in double "
                            "quotes (19 bytes)"),
    (b'{"version": "1.0", "member_list": [', "x: invalid JSON at line 1 column 36: Expecting value "
                                             "(35 bytes; the document ends early: truncated?)"),
    (b"[]", "x: top level is a JSON list, not an object"),
    (b"\xff\xfe{}", "x: not UTF-8 text at byte 0"),
])
def test_parse_errors_say_what_arrived(body, message):
    with pytest.raises(IxfError) as e:
        parse("x", body)
    assert str(e.value) == message


def test_connections_count_ports_per_member_and_vlan():
    conn = lambda *vlans: {"ixp_id": 1, "vlan_list": [  # noqa: E731 - one connection, AF-split entries
        {"vlan_id": v, af: {"address": addr}} for v in vlans
        for af, addr in (("ipv4", f"192.0.2.{v}"), ("ipv6", f"2001:db8::{v}"))]}
    doc = {"member_list": [
        {"asnum": 64500, "name": "A", "connection_list": [conn(10), conn(10), conn(20)]},  # two ports on VLAN 10
        {"asnum": 64501, "name": "B", "connection_list": [conn(10, 20)]},
    ]}
    export = Export(doc, Problems())
    assert export.connections[(1, 10)] == {64500: 2, 64501: 1}
    assert export.connections[(1, 20)] == {64500: 1, 64501: 1}
