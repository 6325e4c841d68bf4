"""`ixpect netns up|down` on real kernel objects: the nftables egress drop keeps every
frame sent from the capture namespace off the LAN (packet sockets with and without
qdisc bypass), `down` gives the port back with the flags it had, and a failed `up`
leaves nothing behind, nor disturbs a namespace that was already working."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import wait_for
from ixpect.netns import inside
from livenet import IXPECT, lan, monitor_ns, needs_root, netns_up  # noqa: F401

pytestmark = [needs_root, pytest.mark.netns]

SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20
IFF_NOARP, IFF_PROMISC = 0x80, 0x100
MARK = b"ixpect egress test frame"


def frame(seq: int) -> bytes:
    """A broadcast frame of an experimental EtherType that only this test sends."""
    return b"\xff" * 6 + bytes.fromhex("020000000e0e") + b"\x88\xb5" + MARK + seq.to_bytes(2, "big") + bytes(30)


def send_from(ns: str, ifname: str, count: int, bypass: bool) -> int:
    """Send `count` frames onto `ifname` from inside `ns` through a packet socket; how
    many the kernel refused (ENOBUFS: what a drop in the egress hook tells the sender)."""
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    refused = 0
    with sock:
        if bypass:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.bind((ifname, 0))
        for i in range(count):
            try:
                sock.send(frame(i))
            except OSError as exc:
                assert exc.errno == errno.ENOBUFS, exc
                refused += 1
    return refused


def flags(ifname: str, ns: str | None = None) -> int:
    cmd = ["ip", *(["-n", ns] if ns else []), "-j", "link", "show", ifname]
    raw = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[0]["flags"]
    return (IFF_NOARP if "NOARP" in raw else 0) | (IFF_PROMISC if "PROMISC" in raw else 0)


def egress_table(ns: str) -> list[dict]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "netdev", "ixpect"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["nftables"]


def namespaces() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def netns_cmd(*argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*IXPECT, "netns", *map(str, argv)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("bypass", [False, True], ids=["qdisc", "qdisc-bypass"])
def test_egress_drop_keeps_every_frame_off_the_lan(lan, monitor_ns, bypass):  # noqa: F811
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    send_from(monitor_ns, host_end, 50, bypass)
    ours = lambda: [f for f in lan.sniffer.from_monitor if MARK in f]  # noqa: E731
    counter = next(o["rule"]["expr"][0]["counter"] for o in egress_table(monitor_ns) if "rule" in o)
    assert counter["packets"] >= 50
    # The same sends without the table arrive: the sniffer would have seen them.
    subprocess.run(["ip", "netns", "exec", monitor_ns, "nft", "delete", "table", "netdev", "ixpect"], check=True)
    assert send_from(monitor_ns, host_end, 5, bypass) == 0
    wait_for(lambda: len(ours()) >= 5, what="the control frames on the LAN")
    assert len(ours()) == 5 and lan.sniffer.drops() == 0
    # `up` again (what a restart of the unit does) puts the drop back.
    netns_up("--name", monitor_ns, "--interface", host_end)
    send_from(monitor_ns, host_end, 50, bypass)
    send_from(monitor_ns, host_end, 50, not bypass)
    assert len(ours()) == 5


def test_egress_drop_on_a_vxlan_device(monitor_ns):  # noqa: F811
    netns_up("--name", monitor_ns, "--vxlan-vni", 4242, "--vxlan-local", "127.0.0.1", "--vxlan-port", 47891)
    listed = subprocess.run(["ip", "netns", "exec", monitor_ns, "nft", "list", "table", "netdev", "ixpect"],
                            capture_output=True, text=True, check=True).stdout
    assert 'type filter hook egress device "vxlan4242" priority filter; policy drop;' in listed


@pytest.mark.parametrize("before", [0, IFF_PROMISC, IFF_NOARP])
def test_down_restores_the_flags_up_found(lan, monitor_ns, before):  # noqa: F811
    host_end, _ = lan.monitor_port()
    subprocess.run(["ip", "link", "set", host_end, "arp", "off" if before & IFF_NOARP else "on",
                    "promisc", "on" if before & IFF_PROMISC else "off"], check=True)
    netns_up("--name", monitor_ns, "--interface", host_end)
    assert flags(host_end, monitor_ns) == IFF_NOARP | IFF_PROMISC
    assert netns_cmd("down", "--name", monitor_ns, "--interface", host_end).returncode == 0
    assert flags(host_end) == before


def test_failed_up_leaves_no_namespace_behind(lan, monitor_ns):  # noqa: F811
    done = netns_cmd("up", "--name", monitor_ns, "--interface", "ixt-nosuch0")
    assert done.returncode == 1 and "ixt-nosuch0 is neither in the host namespace" in done.stderr
    assert monitor_ns not in namespaces()
    # Failing after the interface was moved in (no nft on PATH): it comes back as it was.
    host_end, _ = lan.monitor_port()
    done = netns_cmd("up", "--name", monitor_ns, "--interface", host_end, env=os.environ | {"PATH": "/nonexistent"})
    assert done.returncode == 1 and "nft not found" in done.stderr
    assert monitor_ns not in namespaces()
    assert Path(f"/sys/class/net/{host_end}").exists() and flags(host_end) == 0


def test_failed_up_keeps_a_working_namespace(lan, monitor_ns):  # noqa: F811
    """A typo in the interface on a re-run changes nothing of what runs."""
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    done = netns_cmd("up", "--name", monitor_ns, "--interface", "ixt-typo0")
    assert done.returncode == 1
    assert monitor_ns in namespaces() and flags(host_end, monitor_ns) == IFF_NOARP | IFF_PROMISC
    assert "UP" in subprocess.run(["ip", "-n", monitor_ns, "-br", "link", "show", host_end],
                                  capture_output=True, text=True).stdout.split()[1]


def test_up_again_reapplies_in_place_without_a_flap(lan, monitor_ns):  # noqa: F811
    """What a reload of the unit does after a package update: the port stays up."""
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    changes = lambda: subprocess.run(["ip", "netns", "exec", monitor_ns, "cat",  # noqa: E731
                                      f"/sys/class/net/{host_end}/carrier_changes"],
                                     capture_output=True, text=True, check=True).stdout
    before = changes()
    subprocess.run(["ip", "netns", "exec", monitor_ns, "nft", "delete", "table", "netdev", "ixpect"], check=True)
    netns_up("--name", monitor_ns, "--interface", host_end)
    assert changes() == before
    assert 'policy drop' in subprocess.run(["ip", "netns", "exec", monitor_ns, "nft", "list", "table", "netdev",
                                            "ixpect"], capture_output=True, text=True, check=True).stdout
