"""The member table: events name the station that sent the frame first."""

from ixpect.members import MemberTable

A = {"asn": 64500, "name": "Alpha"}
B = {"asn": 64501, "name": "Beta"}


def test_lookup_prefers_the_sender_then_the_claimed_address():
    table = MemberTable({"02:00:00:00:00:0a": A, "02:00:00:00:00:0b": B}, {"192.0.2.11": B})
    # ARP_SENDER_MISMATCH: Alpha's router sends an ARP claiming Beta's MAC
    assert table.lookup({"mac_addr_source": "02:00:00:00:00:0a", "mac_addr": "02:00:00:00:00:0b"}) == A
    assert table.lookup({"mac_addr": "02:00:00:00:00:0b", "ip4_addr": "192.0.2.99"}) == B
    assert table.lookup({"mac_addr": "02:00:00:00:00:99", "ip4_addr": "192.0.2.11"}) == B
    assert table.lookup({"mac_addr_source": "02:00:00:00:00:99"}) is None
