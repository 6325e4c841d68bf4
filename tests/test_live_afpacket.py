"""The AF_PACKET ring when its interface goes away: a link flap is waited out, a
vanished device ends the capture (for systemd to restart) instead of spinning."""

import socket
import subprocess
import time
import uuid

import pytest

from ixpect.afpacket import AfPacketSource

from livenet import needs_root


@pytest.fixture
def veth_ns():
    ns, a, b = f"ixt-{uuid.uuid4().hex[:6]}", f"ixa{uuid.uuid4().hex[:6]}", f"ixb{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:  # without IPv6 the veths send nothing of their own (MLD, DAD) into the frames a test counts
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", b, "up"], check=True)
        yield ns, a, b
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_root
def test_link_down_is_waited_out_and_a_vanished_device_is_fatal(veth_ns, caplog):
    ns, ifname, _ = veth_ns
    source = AfPacketSource(ifname, ns)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", ifname, "down"], check=True)
        started = time.monotonic()
        assert source.read(0.3) == [] and source.read(0.3) == []
        assert time.monotonic() - started >= 0.25  # the second poll blocked: no spinning on the error
        assert "waiting for the link to come back" in caplog.text
        subprocess.run(["ip", "-n", ns, "link", "del", ifname], check=True)
        with pytest.raises(OSError, match=f"capture interface {ifname} is gone"):
            for _ in range(3):
                source.read(0.3)
    finally:
        source.close()


@needs_root
def test_frames_arrive_as_sent_with_their_vlan_tags(veth_ns):
    """The kernel strips a received VLAN tag into the ring's frame header; the source
    puts it back (802.1Q and 802.1ad alike), so that probes see the wire's bytes."""
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

    from ixpect.netns import inside

    ns, ifname, peer = veth_ns
    eth = Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff")
    sent = [bytes(eth / ARP(psrc="192.0.2.1")), bytes(eth / Dot1Q(vlan=42, prio=5) / ARP(psrc="192.0.2.2")),
            bytes(eth / Dot1AD(vlan=7) / Dot1Q(vlan=42) / ARP(psrc="192.0.2.3"))]
    source = AfPacketSource(ifname, ns, retire_ms=10)
    try:
        with inside(ns):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with tx:
            tx.bind((peer, 0))
            before = time.time()
            for frame in sent:
                tx.send(frame)
        got = []
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += source.read(0.2)
    finally:
        source.close()
    assert [frame for _, frame in got] == sent
    assert all(before - 1 < ts < time.time() + 1 for ts, _ in got)


@needs_root
def test_a_chunk_is_the_rings_memory_until_the_next_read_or_close(veth_ns):
    """A chunk walks the ring block in place: the next read gives the block back to the
    kernel, and close() does too, even of a chunk walked only in part, after which the
    chunk walks no further."""
    from scapy.layers.l2 import ARP, Ether

    from ixpect.netns import inside

    ns, ifname, peer = veth_ns
    source = AfPacketSource(ifname, ns, block_size=1 << 16, block_count=4, retire_ms=10)
    sent = [bytes(Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=f"192.0.2.{i}"))
            for i in range(40)]
    with inside(ns):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    got, chunk = [], None
    try:
        with tx:
            tx.bind((peer, 0))
            for i, frame in enumerate(sent):  # one a block, ten times round the ring: each block comes back
                tx.send(frame)
                deadline = time.monotonic() + 5
                while len(got) <= i and time.monotonic() < deadline:
                    got += source.read(0.2)
            tx.send(sent[0])
            tx.send(sent[1])
            deadline = time.monotonic() + 5
            while not chunk and time.monotonic() < deadline:
                chunk = source.read(0.2)
            assert next(chunk)[1] == sent[0]
    finally:
        source.close()
    assert [f for _, f in got] == sent
    assert len(chunk) == 0 and list(chunk) == []
