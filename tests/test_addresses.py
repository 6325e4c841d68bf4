"""Addresses in canonical form take a shortcut (ixpect.addresses) in the config's format
check and the member table: both must accept, write and pack exactly what ipaddress does."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest

from ixpect import config
from ixpect.addresses import canonical_packed
from ixpect.members import MemberTable

HARD = ["::", "::1", "1::", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:102:304", "::102:304", "1:0:0:1::",
        "1:0:1:1:1:1:1:1", "fe80::1%eth0", "2001:DB8::1", "2001:db8::01", "0.0.0.0", "1.2.3.04", "1.2.3",
        "256.1.1.1", "1.2.3.4 ", " ::1", "::1\0", "\ud800", ""]


def spellings(n: int = 3000) -> list[str]:
    """Random addresses (with runs of zero groups) in every spelling: canonical,
    exploded, upper case, inet_ntop's (dotted tails), IPv4 with leading zeros."""
    rng, out = random.Random(20), list(HARD)
    for _ in range(n):
        groups = [rng.choice([0, 0, 0, 1, 0xffff, rng.randrange(65536)]) for _ in range(8)]
        packed = b"".join(g.to_bytes(2, "big") for g in groups)
        v6, v4 = ipaddress.IPv6Address(packed), ipaddress.IPv4Address(packed[:4])
        out += [str(v6), v6.exploded, str(v6).upper(), socket.inet_ntop(socket.AF_INET6, packed), str(v4),
                ".".join(f"{b:02}" for b in packed[:4])]
    return out


def parsed(cls, value: str):
    try:
        return cls(value)
    except ValueError:
        return None


@pytest.mark.parametrize("cls", [ipaddress.IPv4Address, ipaddress.IPv6Address])
def test_canonical_packed_is_ipaddress_on_its_own_spelling(cls):
    """Never an address in another spelling, nor a non-address; the packed bytes of
    ipaddress; and the shortcut is taken for nearly every canonical address (not the
    IPv6 ones with an IPv4 tail, which inet_ntop writes differently)."""
    taken = 0
    for value in spellings():
        address, packed = parsed(cls, value), canonical_packed(value, cls(0).version)
        if packed is not None:
            assert address is not None and str(address) == value and packed == address.packed, value
            taken += 1
    assert taken > 3000


@pytest.mark.parametrize("fmt, cls", [("ipv4", ipaddress.IPv4Address), ("ipv6", ipaddress.IPv6Address)])
def test_the_config_accepts_and_writes_addresses_as_ipaddress_does(fmt, cls):
    canonical = config._CANONICAL[fmt][0]
    for value in spellings():
        address = parsed(cls, value) if "%" not in value else None  # zone indices are refused
        try:
            got = canonical(value)
        except ValueError:
            got = None
        assert got == (str(address) if address else None), value


def test_the_member_table_packs_addresses_as_ipaddress_does():
    for value in spellings(500):
        try:
            expected = ipaddress.ip_address(value).packed
        except ValueError:
            with pytest.raises(ValueError, match="is not an IP address"):
                MemberTable({}, {value: {"asn": 64500, "name": "A"}})
            continue
        assert MemberTable({}, {value: {"asn": 64500, "name": "A"}}).packed_ips == {expected: {"asn": 64500,
                                                                                             "name": "A"}}
