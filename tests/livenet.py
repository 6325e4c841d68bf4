"""Real kernel topologies for the live tests: namespaces "peer1", "peer2" and the
monitor's, joined by a bridge in a fourth ("lan"), all with a random suffix so that
concurrent runs on one machine do not collide. The peers send raw frames built
with scapy; their kernels keep quiet otherwise (IPv6 off), so that every event the
monitor reports is one the test scripted."""

from __future__ import annotations

import ctypes
import json
import secrets
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from pyroute2 import IPRoute, NetNS, netns
from scapy.layers.inet import ICMP

from ixpect.netns import inside

from conftest import wait_for

IXPECT = [sys.executable, "-m", "ixpect"]
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_STATISTICS = 263, 6
SO_RCVBUFFORCE = 33
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4

needs_root = pytest.mark.needs("root")  # namespaces, veth pairs, AF_PACKET

PEER1_MAC, PEER2_MAC, BURST_MAC = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:0b:0b"
PEER1_IP, PEER2_IP = "192.0.2.1", "192.0.2.2"
PEER1_IP6, PEER2_IP6 = "2001:db8::1", "2001:db8::2"


def without_capabilities() -> None:
    """preexec_fn: empty the bounding, inheritable and ambient sets, so that even uid 0
    execs with no capability (the interpreter may live under /root, out of reach of
    another user; a container may hand its processes inheritable capabilities)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # fails only where there is none
    header, data = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def sysctl(ns: str, key: str, value: str) -> None:
    with inside(ns):
        Path("/proc/sys", *key.split(".")).write_text(value)


def quiet_namespace(name: str) -> None:
    netns.create(name)
    for scope in ("all", "default"):
        sysctl(name, f"net.ipv6.conf.{scope}.disable_ipv6", "1")


class Lan:
    """The bridge and the peers; `monitor_port()` adds a veth whose host end is
    for `ixpect netns up --interface`."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.ns = {n: f"ixt-{n}-{self.tag}" for n in ("lan", "peer1", "peer2")}
        self.namespaces = list(self.ns.values())
        self.host_links: list[str] = []
        for name in self.namespaces:
            quiet_namespace(name)
        with NetNS(self.ns["lan"]) as lan:
            lan.link("add", ifname="br0", kind="bridge", br_stp_state=0, br_forward_delay=0,
                     br_group_fwd_mask=0x4000)  # forward LLDP too: the bridge is the "LAN"
            lan.link("set", index=lan.link_lookup(ifname="br0")[0], state="up")
        for peer, mac, ip in (("peer1", PEER1_MAC, PEER1_IP), ("peer2", PEER2_MAC, PEER2_IP)):
            self._port(f"p{peer[-1]}{self.tag}", self.ns[peer], "eth0", mac)
            with NetNS(self.ns[peer]) as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=idx, address=ip, prefixlen=24)
        self.sniffer: Sniffer | None = None

    def _port(self, bridge_end: str, ns: str | None, ifname: str, mac: str | None = None) -> None:
        """A veth from the bridge to `ifname` in `ns` (the host namespace when None)."""
        with IPRoute() as ipr:
            ipr.link("add", ifname=bridge_end, kind="veth", peer={"ifname": f"t{bridge_end}"})
            ipr.link("set", index=ipr.link_lookup(ifname=bridge_end)[0], net_ns_fd=self.ns["lan"])
            peer_idx = ipr.link_lookup(ifname=f"t{bridge_end}")[0]
            if ns is not None:
                ipr.link("set", index=peer_idx, net_ns_fd=ns)
            else:
                ipr.link("set", index=peer_idx, ifname=ifname)
                self.host_links.append(ifname)
        with NetNS(ns) if ns else IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=f"t{bridge_end}" if ns else ifname)[0]
            settings = {"ifname": ifname} if ns else {}
            if mac:
                settings["address"] = mac
            if settings:
                ipr.link("set", index=idx, **settings)
            if ns:
                ipr.link("set", index=idx, state="up")
        with NetNS(self.ns["lan"]) as lan:
            idx = lan.link_lookup(ifname=bridge_end)[0]
            lan.link("set", index=idx, master=lan.link_lookup(ifname="br0")[0], state="up")

    def monitor_port(self) -> tuple[str, str]:
        """(host end for the monitor, its bridge port); a sniffer watches the bridge port."""
        host_end, bridge_end = f"ixm{self.tag}", f"pm{self.tag}"
        self._port(bridge_end, None, host_end)
        self.sniffer = Sniffer(self.ns["lan"], bridge_end)
        return host_end, bridge_end

    def send(self, peer: str, frames) -> None:
        with inside(self.ns[peer]):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sock:
            sock.bind(("eth0", 0))
            for f in frames:
                sock.send(bytes(f))

    def kernel_traffic(self, peer: str, pings: int, unresolved: list[str]) -> None:
        """Let the peer's own IP stack send: broadcast pings, and datagrams to addresses
        nobody has, for which its kernel ARPs."""
        with inside(self.ns[peer]):
            icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with icmp, udp:
            icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            for seq in range(pings):
                icmp.sendto(bytes(ICMP(type="echo-request", id=0x1c5, seq=seq)), ("192.0.2.255", 0))
            for addr in unresolved:
                udp.sendto(b"anyone?", (addr, 9))

    def close(self) -> None:
        if self.sniffer is not None:
            self.sniffer.close()
        for name in self.namespaces:
            try:
                netns.remove(name)
            except OSError:
                pass
        with IPRoute() as ipr:
            for link in self.host_links:
                for idx in ipr.link_lookup(ifname=link):
                    ipr.link("del", index=idx)


class Sniffer(threading.Thread):
    """Counts every frame the monitor's bridge port receives from the monitor (any
    incoming frame: the monitor's side may only ever listen) and every outgoing one."""

    def __init__(self, ns: str, ifname: str):
        super().__init__(daemon=True)
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sock.bind((ifname, 3))  # Python applies htons() to the bind address
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)  # a burst must not overflow it
        self.sock.settimeout(0.2)
        self.from_monitor: list[bytes] = []
        self.to_monitor = 0
        self.dropped = 0
        self.running = True
        self.start()

    def run(self) -> None:
        while self.running:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                self.to_monitor += 1
            else:
                self.from_monitor.append(frame)

    def drops(self) -> int:
        """Frames the kernel dropped for this sniffer so far: a sniffer that missed
        frames could have missed one from the monitor, so tests assert it is 0."""
        _, dropped = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.dropped += dropped  # reading the statistics resets them
        return self.dropped

    def close(self) -> None:
        self.running = False
        self.join(2)
        self.sock.close()


@pytest.fixture
def lan():
    topo = Lan()
    try:
        yield topo
    finally:
        topo.close()


def write_config(path: Path, **overrides) -> Path:
    """The probes of the scripted mix: static neighbors for both peers, IPv4/ARP/IPv6
    only, a broadcast threshold only the burst exceeds."""
    cfg = {
        "probes": {
            "arp_neighbor": {"enable": True, "static_resolutions": [
                {"ip": PEER1_IP, "mac": PEER1_MAC}, {"ip": PEER2_IP, "mac": PEER2_MAC}]},
            "ipv6_neighbor": {"enable": True, "static_resolutions": [
                {"ip": PEER1_IP6, "mac": PEER1_MAC}, {"ip": PEER2_IP6, "mac": PEER2_MAC}]},
            "ipv6_router": {"enable": True},
            "stp": {"enable": True},
            "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD]},
            "bum_rate": {"enable": True, "window": "2s", "thresholds": {"broadcast": 10}},
        },
        "event": {"collection_window": "1s", "notifiers": {"log": {"format": "json"}}},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        cfg[section][name] = value
    path.write_text(yaml.safe_dump(cfg))
    return path




def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def start(argv: list, log: Path, ready: str = "capturing from", **kw) -> subprocess.Popen:
    """Start an ixpect daemon, its stderr appended to `log`; wait until it logs `ready`."""
    seen = log.read_text().count(ready) if log.exists() else 0
    with open(log, "a") as err:
        proc = subprocess.Popen([*IXPECT, *map(str, argv)], stderr=err, **kw)
    wait_for(lambda: log.read_text().count(ready) > seen or proc.poll() is not None, what=f"{ready!r} in {log}")
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.fixture
def monitor_ns():
    name = f"ixt-mon-{secrets.token_hex(3)}"
    yield name
    subprocess.run([*IXPECT, "netns", "down", "--name", name, "--vxlan-vni", "1"], capture_output=True)


def netns_up(*argv) -> None:
    done = subprocess.run([*IXPECT, "netns", "up", *map(str, argv)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
