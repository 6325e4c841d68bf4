"""The daemon on a real (virtual) peering LAN: peers send a scripted mix, the monitor
in its isolated namespace reports exactly the expected events, directly (AF_PACKET),
over a kernel vxlan device and over userspace VxLAN decap, and never sends a frame."""

from __future__ import annotations

import ctypes
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6)
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether
from scapy.packet import Raw

from pyroute2 import netns

from conftest import wait_for
from livenet import (BURST_MAC, IXPECT, PEER1_IP, PEER1_IP6, PEER1_MAC, PEER2_MAC, lan, monitor_ns,  # noqa: F401
                     needs_root, netns_up, read_jsonl, start, stop, without_capabilities, write_config)

pytestmark = [needs_root, pytest.mark.netns]

BCAST = "ff:ff:ff:ff:ff:ff"
BURST = 400


def lldp(mac: str) -> bytes:
    """An LLDPDU: chassis id (MAC), port id (interface name), TTL, end. (Built by hand:
    importing scapy.contrib.lldp would change how scapy dissects for other tests.)"""
    tlv = lambda kind, value: ((kind << 9) | len(value)).to_bytes(2, "big") + value  # noqa: E731
    return (tlv(1, b"\x04" + bytes.fromhex(mac.replace(":", ""))) + tlv(2, b"\x05eth0")
            + tlv(3, (120).to_bytes(2, "big")) + tlv(0, b""))


def scripted_mix() -> dict[str, list]:
    """Frames per sender: valid ARP/ND, spoofed ARP and NA, RA, STP, LLDP, 0x88b5, a broadcast burst."""
    na = lambda mac: (Ether(src=mac, dst="33:33:00:00:00:01")  # noqa: E731
                      / IPv6(src=PEER1_IP6, dst="ff02::1", hlim=255)
                      / ICMPv6ND_NA(tgt=PEER1_IP6, R=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
    return {
        "peer1": [
            Ether(src=PEER1_MAC, dst=BCAST) / ARP(op=2, hwsrc=PEER1_MAC, psrc=PEER1_IP, hwdst=BCAST, pdst=PEER1_IP),
            na(PEER1_MAC),
            Dot3(src=PEER1_MAC, dst="01:80:c2:00:00:00") / LLC() / STP(),
            Ether(src=PEER1_MAC, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(lldp(PEER1_MAC)),
        ],
        "peer2": [
            Ether(src=PEER2_MAC, dst=BCAST) / ARP(op=2, hwsrc=PEER2_MAC, psrc=PEER1_IP, hwdst=BCAST, pdst=PEER1_IP),
            na(PEER2_MAC),
            Ether(src=PEER2_MAC, dst="33:33:00:00:00:01") / IPv6(src="fe80::2", dst="ff02::1", hlim=255)
            / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=PEER2_MAC),
            Ether(src=PEER2_MAC, dst=BCAST, type=0x88B5) / Raw(b"local experimental ethertype 1" * 2),
        ],
        # a host behind peer1's port floods the LAN
        "burst": [Ether(src=BURST_MAC, dst=BCAST) / IP(src="192.0.2.99", dst="255.255.255.255") / UDP(dport=9)] * BURST,
    }


EXPECTED = sorted([
    ("ARP_NEIGHBOR_SPOOFED_STATIC", {"mac_addr_source": PEER2_MAC, "ip4_addr": PEER1_IP, "mac_addr": PEER2_MAC,
                                     "mac_addr_expected": [PEER1_MAC]}),
    ("IPV6_NEIGHBOR_SPOOFED_STATIC", {"mac_addr_source": PEER2_MAC, "ip6_addr": PEER1_IP6, "mac_addr": PEER2_MAC,
                                      "mac_addr_expected": [PEER1_MAC]}),
    ("IPV6_ROUTER_ADVERTISEMENT", {"mac_addr_source": PEER2_MAC, "ip6_addr_source": "fe80::2"}),
    ("STP_PACKET_FOUND", {"mac_addr_source": PEER1_MAC, "mac_addr_destination": "01:80:c2:00:00:00"}),
    ("ETHER_TYPE_VIOLATION", {"mac_addr_source": PEER1_MAC, "ether_type": "llc"}),  # the BPDU is LLC
    ("ETHER_TYPE_VIOLATION", {"mac_addr_source": PEER1_MAC, "ether_type": "0x88cc"}),
    ("ETHER_TYPE_VIOLATION", {"mac_addr_source": PEER2_MAC, "ether_type": "0x88b5"}),
], key=repr)


def check_events(events: list[dict]) -> None:
    """Exactly EXPECTED, plus the burst reported with its full count (a burst that
    straddles two rate windows may be reported in two parts)."""
    burst = [e for e in events if e["type"] == "BUM_RATE_BROADCAST_EXCEEDED"]
    others = sorted(((e["type"], e["data"]) for e in events if e not in burst), key=repr)
    assert others == EXPECTED
    assert {e["data"]["mac_addr_source"] for e in burst} == {BURST_MAC}
    assert sum(e["data"]["count"] for e in burst) == BURST
    assert all(e["data"]["threshold"] == 10 and e["data"]["window"] == 2 for e in burst)


def burst_complete(jsonl: Path) -> list[dict] | None:
    events = read_jsonl(jsonl)
    burst = sum(e["data"]["count"] for e in events if e["type"] == "BUM_RATE_BROADCAST_EXCEEDED")
    return events if burst >= BURST and len(events) >= len(EXPECTED) + 1 else None


def test_monitor_reports_the_scripted_mix_and_never_transmits(lan, monitor_ns, tmp_path):  # noqa: F811
    host_end, _ = lan.monitor_port()
    monitor_mac = Path(f"/sys/class/net/{host_end}/address").read_text().strip()
    netns_up("--name", monitor_ns, "--interface", host_end)
    netns_up("--name", monitor_ns, "--interface", host_end)  # idempotent
    conf, jsonl = write_config(tmp_path / "ixpect.conf.yaml"), tmp_path / "events.jsonl"
    proc = start(["run", "-c", conf, "--interface", host_end, "--netns", monitor_ns, "--jsonl", jsonl,
                  "--user", "nobody"], tmp_path / "run.log")
    try:
        mix = scripted_mix()
        lan.send("peer1", mix["peer1"] + mix["burst"])
        lan.send("peer2", mix["peer2"])
        phase1 = wait_for(lambda: burst_complete(jsonl), what="the scripted events")

        # Phase 2: the peers look for neighbours everywhere; nobody may answer from the monitor.
        before = lan.sniffer.to_monitor
        lan.send("peer1", [Ether(src=PEER1_MAC, dst=BCAST) / ARP(hwsrc=PEER1_MAC, psrc=PEER1_IP, pdst=f"192.0.2.{i}")
                           for i in range(1, 255)])
        lan.send("peer1", [Ether(src=PEER1_MAC, dst="33:33:ff:00:00:%02x" % i)
                           / IPv6(src=PEER1_IP6, dst="ff02::1:ff00:%x" % i, hlim=255)
                           / ICMPv6ND_NS(tgt="2001:db8::%x" % i) / ICMPv6NDOptSrcLLAddr(lladdr=PEER1_MAC)
                           for i in range(3, 64)])
        lan.kernel_traffic("peer1", pings=3, unresolved=["192.0.2.3", "192.0.2.4", "192.0.2.5"])
        wait_for(lambda: lan.sniffer.to_monitor >= before + 254 + 61 + 3 + 3, what="phase 2 on the monitor port")
        assert stop(proc) == 0
    finally:
        stop(proc)
    events = read_jsonl(jsonl)
    check_events(phase1)
    later = events[len(phase1):]  # only the ARP scan's broadcast rate, from peer1
    assert {(e["type"], e["data"]["mac_addr_source"]) for e in later} <= {("BUM_RATE_BROADCAST_EXCEEDED", PEER1_MAC)}
    assert lan.sniffer.from_monitor == []
    assert lan.sniffer.drops() == 0  # it missed nothing the monitor might have sent...
    assert lan.sniffer.to_monitor > BURST + 254 + 61  # ...and did see the traffic towards the monitor
    log = (tmp_path / "run.log").read_text()
    assert "running as uid" in log and "CapEff=0000000000000000" in log
    assert "0 dropped by the kernel" in log
    assert all(f[6:12] != bytes.fromhex(monitor_mac.replace(":", "")) for f in lan.sniffer.from_monitor)


def vxlan_datagrams(vni: int) -> list[bytes]:
    header = bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
    mix = scripted_mix()
    return [header + bytes(f) for f in mix["peer1"] + mix["peer2"] + mix["burst"]]


def send_udp(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_frames_that_arrived_before_sigterm_are_still_judged(lan, monitor_ns, tmp_path):  # noqa: F811
    """A restart (systemd, a deployment) judges what is already in the ring, not only the
    block being read when SIGTERM comes: a daemon held with SIGSTOP while three bursts fill
    three ring blocks, then sent SIGTERM, reports all three."""
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    conf, jsonl = tmp_path / "ixpect.conf.yaml", tmp_path / "events.jsonl"
    conf.write_text('{"probes": {"arp_neighbor": {"enable": true, "dynamic_enable": true}}}')
    proc = start(["run", "-c", conf, "--interface", host_end, "--netns", monitor_ns, "--jsonl", jsonl],
                 tmp_path / "run.log")
    bursts = [[f"10.1.{b}.{i}" for i in range(1, 101)] for b in range(3)]
    try:
        proc.send_signal(signal.SIGSTOP)
        for burst in bursts:  # the kernel retires a block 50 ms after its first frame
            lan.send("peer1", [Ether(src=PEER1_MAC, dst=BCAST) / ARP(hwsrc=PEER1_MAC, psrc=ip, pdst="10.1.9.1")
                               for ip in burst])
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(20) == 0
    finally:
        stop(proc)
    seen = {e["data"]["ip4_addr"] for e in read_jsonl(jsonl) if e["type"] == "ARP_NEIGHBOR_NEW_DYNAMIC"}
    assert seen == {ip for burst in bursts for ip in burst}


def test_kernel_vxlan_device_in_the_capture_namespace(monitor_ns, tmp_path):  # noqa: F811
    vni, port = 4000 + secrets.randbelow(60000), free_udp_port()
    netns_up("--name", monitor_ns, "--vxlan-vni", vni, "--vxlan-local", "127.0.0.1", "--vxlan-port", port)
    netns_up("--name", monitor_ns, "--vxlan-vni", vni, "--vxlan-local", "127.0.0.1", "--vxlan-port", port)
    link = subprocess.run(["ip", "-n", monitor_ns, "-d", "link", "show", f"vxlan{vni}"], capture_output=True, text=True).stdout
    assert f"vxlan id {vni}" in link and "nolearning" in link and "NOARP" in link and "PROMISC" in link
    assert f"vxlan{vni}" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    conf, jsonl = write_config(tmp_path / "ixpect.conf.yaml"), tmp_path / "events.jsonl"
    proc = start(["run", "-c", conf, "--interface", f"vxlan{vni}", "--netns", monitor_ns, "--jsonl", jsonl],
                 tmp_path / "run.log")
    try:
        other_vni = bytes([0x08, 0, 0, 0]) + (vni + 1).to_bytes(3, "big") + b"\0" + bytes(scripted_mix()["peer2"][2])
        send_udp(port, [other_vni, *vxlan_datagrams(vni)])  # the kernel drops the other VNI
        check_events(wait_for(lambda: burst_complete(jsonl), what="the scripted events"))
        assert stop(proc) == 0
    finally:
        stop(proc)
    check_events(read_jsonl(jsonl))
    down = subprocess.run([*IXPECT, "netns", "down", "--name", monitor_ns, "--vxlan-vni", str(vni)],
                          capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert monitor_ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_userspace_vxlan_needs_no_capabilities(tmp_path):
    vni, port = 4000 + secrets.randbelow(60000), free_udp_port()
    conf, jsonl, log = write_config(tmp_path / "ixpect.conf.yaml"), tmp_path / "events.jsonl", tmp_path / "run.log"
    proc = start(["run", "-c", conf, "--vxlan", f"127.0.0.1:{port}", "--vni", vni, "--jsonl", jsonl], log,
                 preexec_fn=without_capabilities)
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
        frame = bytes(scripted_mix()["peer2"][2])
        bad = [bytes([0x08, 0, 0, 0]) + (vni + 1).to_bytes(3, "big") + b"\0" + frame,  # another VNI
               bytes(8) + frame,  # I flag clear
               bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + frame[:10]]  # no Ethernet header
        send_udp(port, bad + vxlan_datagrams(vni))
        check_events(wait_for(lambda: burst_complete(jsonl), what="the scripted events"))
        assert stop(proc) == 0
    finally:
        stop(proc)
    check_events(read_jsonl(jsonl))
    assert "2 malformed, 1 of another VNI (dropped)" in log.read_text()


def test_netns_down_returns_a_physical_interface_down(lan, monitor_ns):  # noqa: F811
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    link = subprocess.run(["ip", "-n", monitor_ns, "-d", "link", "show", host_end], capture_output=True, text=True).stdout
    assert "NOARP,PROMISC,UP,LOWER_UP" in link and "addrgenmode none" in link
    addrs = subprocess.run(["ip", "-n", monitor_ns, "-o", "addr", "show", "dev", host_end], capture_output=True, text=True)
    assert addrs.returncode == 0 and addrs.stdout == ""
    down = subprocess.run([*IXPECT, "netns", "down", "--name", monitor_ns, "--interface", host_end],
                          capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    flags = Path(f"/sys/class/net/{host_end}/flags").read_text()
    assert not int(flags, 16) & 0x1  # IFF_UP
    assert monitor_ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    again = subprocess.run([*IXPECT, "netns", "down", "--name", monitor_ns, "--interface", host_end],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def systemd_like(ns: str):
    """preexec_fn: the credentials systemd gives ixpect-capture (NetworkNamespacePath,
    CAP_NET_RAW as the only, ambient, capability of a user that is not root), with
    uid 0 made powerless by SECBIT_NOROOT so that the interpreter stays readable."""
    def become():
        netns.setns(ns)
        libc = ctypes.CDLL(None, use_errno=True)
        bits = 0x1 | 0x2 | 0x4 | 0x8  # NOROOT, NO_SETUID_FIXUP and their locks
        raw = 1 << 13  # CAP_NET_RAW
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)(raw, raw, raw, 0, 0, 0)  # effective, permitted, inheritable
        for ok in (libc.prctl(28, bits, 0, 0, 0) == 0, libc.capset(header, data) == 0,
                   libc.prctl(47, 2, 13, 0, 0) == 0):  # PR_CAP_AMBIENT_RAISE
            if not ok:
                raise OSError(ctypes.get_errno(), "setting up systemd-like credentials")
    return become


def test_capture_under_systemd_credentials_sheds_cap_net_raw(lan, monitor_ns, tmp_path):  # noqa: F811
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    conf, jsonl, log = write_config(tmp_path / "ixpect.conf.yaml"), tmp_path / "events.jsonl", tmp_path / "run.log"
    proc = start(["run", "-c", conf, "--interface", host_end, "--jsonl", jsonl], log, preexec_fn=systemd_like(monitor_ns))
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        for caps in ("CapEff", "CapPrm", "CapAmb"):  # (CapInh alone grants nothing without file capabilities)
            assert f"{caps}:\t0000000000000000" in status
        assert "executing again to shed CapEff=0000000000002000" in log.read_text()
        mix = scripted_mix()
        lan.send("peer1", mix["peer1"] + mix["burst"])
        lan.send("peer2", mix["peer2"])
        check_events(wait_for(lambda: burst_complete(jsonl), what="the scripted events"))
        assert stop(proc) == 0
    finally:
        stop(proc)
    assert not lan.sniffer.from_monitor and lan.sniffer.drops() == 0
