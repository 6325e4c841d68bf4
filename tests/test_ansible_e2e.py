"""The Ansible role end to end under real systemd.

A Debian 12 root (debootstrap, cached under /var/cache/ixpect-ci/ keyed by its package
list) boots with `systemd-nspawn -b --register=no --keep-unit --private-network` on a
throw-away overlay (--volatile=overlay: the cache stays clean). One end of a veth pair is
handed to it, the other sits in a peer namespace on the host; the veth is the capture
interface, or (second run) the underlay of a VxLAN feed whose VTEP the role advertises
over BGP EVPN (`ixpect_evpn`) to an FRR route reflector in the peer namespace. Inside,
with no network, ansible-core from a wheelhouse built here runs playbooks/site.yml with `-c local`, and
the test checks what an operator would: the units run, the capture process sits in the
capture namespace with nothing beyond CAP_NET_RAW, frames the peer sends come out of the notifier
naming the member from the IX-F export, the IX-F timer is scheduled, a second run (and
--check --diff) changes nothing, a settings change reloads instead of restarting, a new
interval touches only the timer, the EVPN route lives exactly as long as the capture and
goes with `ixpect_evpn`, a second LAN (`ixpect_instance`, another VNI) runs beside the first
with a route of its own and goes alone, a failed render is run again by the next run, a typo in
the capture source changes nothing, turning IX-F off and `ixpect_state: absent` leave
nothing behind, and nothing is left of the container either.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from conftest import SHARED, wait_for
from frrlab import Frr, reflector_config

sys.path.insert(0, str(Path(__file__).parent / "ansible"))
import units  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs("root", "debootstrap", "systemd-nspawn", "nsenter", "test data"),
]

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("IXPECT_CI_CACHE", "/var/cache/ixpect-ci"))
MIRROR = os.environ.get("IXPECT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the role needs on a Debian host, plus systemd to boot and iproute2 to look around, and
# FRR, whose packages stay in the root's apt cache: the vxlan lab removes it, the role
# installs it again (offline) for ixpect_evpn.
PACKAGES = ("dbus", "frr", "frr-pythontools", "iproute2", "nftables", "procps", "python3", "python3-apt",
            "python3-packaging", "python3-venv", "systemd", "systemd-sysv")

# France-IX Marseille's real export (the one tests/test_ixf_e2e.py uses) and one member in it.
EXPORT = SHARED / "ixf" / "franceix-mrs-2016-10-v0.5.json"
IXP_ID = VLAN_ID = 5
FOREIGN = "02:66:6f:72:65:69"
PEER_MAC = "02:00:00:00:e2:e2"
SETTINGS = {
    "probes": {"stp": {"enable": True}, "arp_neighbor": {"dynamic_enable": False}},
    "event": {"collection_window": "1s", "notifiers": {"log": {"format": "json", "channels": [{}]}}},
}
UNITS = ("ixpect-netns.service", "ixpect-notify.service", "ixpect-capture.service", "ixpect-ixf.timer")
CAP_NET_RAW = 1 << 13
VNI, UNDERLAY_VTEP, UNDERLAY_PEER = 100, "198.51.100.7", "198.51.100.1"
ASN = 65000
EVPN = {"asn": ASN, "neighbors": [UNDERLAY_PEER], "keepalive": 1, "hold": 3}
EVPN_UNITS = ("frr.service", "ixpect-evpn.service")
IMET = ("[3]:[0]:[32]:[%s]" % UNDERLAY_VTEP, f"RT:{ASN}:{VNI} ET:8")


def run(*cmd, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True, **kw)


def debian_root() -> Path:
    """The cached root for PACKAGES, built once (under a lock: CI jobs may share the cache)."""
    key = hashlib.sha256(("bookworm minbase " + ",".join(PACKAGES)).encode()).hexdigest()[:12]
    root = CACHE / f"bookworm-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "usr/lib/systemd/systemd").exists():
            partial = CACHE / f"bookworm-{key}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            run("debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), "bookworm", partial, MIRROR,
                timeout=900)
            partial.rename(root)
    return root


def member_of_export() -> tuple[dict, str, str]:
    """A member with a MAC and an IPv4 address in the selected VLAN: (member, mac, ip)."""
    for member in json.loads(EXPORT.read_text())["member_list"]:
        for connection in member["connection_list"]:
            for vlan in connection["vlan_list"]:
                if vlan.get("vlan_id") == VLAN_ID and vlan.get("mac_address") and "ipv4" in vlan:
                    return member, vlan["mac_address"].lower(), vlan["ipv4"]["address"]
    raise AssertionError("no member with a MAC and an IPv4 address")


class Container:
    """A booted systemd-nspawn container, driven by nsenter into its init."""

    def __init__(self, root: Path, name: str, binds: dict[Path, str], log: Path):
        self.name = name
        self.log = open(log, "w")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", str(root), "--volatile=overlay", "-b", "--register=no", "--keep-unit",
             "--private-network", "-M", name,
             *(f"--bind-ro={src}:{dst}" for src, dst in binds.items())],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.leader = self._find_leader()
        self.pidns = os.readlink(f"/proc/{self.leader}/ns/pid")
        wait_for(lambda: self.sh("systemctl is-system-running --wait", check=False).stdout.strip()
                 in ("running", "degraded"), timeout=60, what="boot", interval=0.5)

    def _find_leader(self, timeout: float = 30) -> int:
        """The container's init: a descendant of nspawn that is PID 1 in its namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.nspawn.poll() is None, Path(self.log.name).read_text()
            for pid in descendants(self.nspawn.pid):
                try:
                    nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{pid}/status").read_text(), re.M).group(1)
                except (OSError, AttributeError):
                    continue
                if nspid.split()[-1] == "1":
                    return pid
            time.sleep(0.1)
        raise AssertionError("container init did not appear:\n" + Path(self.log.name).read_text())

    def sh(self, script: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
             "bash", "-euo", "pipefail", "-c", script],
            env={"PATH": "/opt/ansible/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                 "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
            capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode:
            raise AssertionError(f"in the container: {script}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def stop(self) -> None:
        """Orderly shutdown (SIGTERM makes nspawn power the container off), then SIGKILL."""
        if self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(timeout=30)
        self.log.close()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_in(pidns: str) -> list[int]:
    left = []
    for ns in Path("/proc").glob("[0-9]*/ns/pid"):
        try:
            if os.readlink(ns) == pidns:
                left.append(int(ns.parent.parent.name))
        except OSError:
            continue
    return left


def links() -> set[str]:
    return {link["ifname"] for link in json.loads(run("ip", "-j", "link", "show").stdout)}


def netns_names() -> set[str]:
    out = run("ip", "-j", "netns", "list").stdout.strip()
    return {ns["name"] for ns in json.loads(out)} if out else set()


class Lab:
    """Peer namespace + veth + booted container with the wheelhouse and the repo mounted.

    mode "interface": the container's veth end is the capture interface (a member port).
    mode "vxlan": it is the underlay (VTEP 198.51.100.7), and the peer sends the LAN's
    frames VxLAN-encapsulated with VNI 100 to it, as a switch flooding BUM traffic would;
    the peer also runs the route reflector (`rr`) the role's FRR peers with.
    """

    def __init__(self, workdir: Path, wheels: Path, mode: str):
        self.suffix = suffix = secrets.token_hex(3)
        self.peer_ns, self.interface, self.peer_if = f"peer-{suffix}", f"ixv{suffix}", f"ixp{suffix}"
        self.mode, self.wheels = mode, wheels
        self.device = self.interface if mode == "interface" else f"vxlan{VNI}"
        self.units = UNITS + (EVPN_UNITS if mode == "vxlan" else ())
        self.container = self.rr = None
        self.workdir = workdir
        self.member, self.member_mac, self.member_ip = member_of_export()
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise

    def _setup(self) -> None:
        workdir, wheels = self.workdir, self.wheels
        root = debian_root()
        self.wheel = next(wheels.glob("ixpect-*.whl")).name
        self.write_inventory(workdir / "test")

        run("ip", "netns", "add", self.peer_ns)
        run("ip", "link", "add", self.interface, "type", "veth", "peer", "name", self.peer_if, "netns", self.peer_ns)
        run("ip", "netns", "exec", self.peer_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        run("ip", "-n", self.peer_ns, "link", "set", self.peer_if, "address", PEER_MAC, "up")
        self.container = Container(root, f"ixpect-e2e-{self.suffix}",
                                   {REPO: "/srv/ixpect", wheels: "/srv/wheels", workdir / "test": "/srv/test",
                                    EXPORT: "/srv/ixf/export.json"}, workdir / "nspawn.log")
        # What --network-interface= does, minus its wait for udev, which this host may not run.
        run("ip", "link", "set", self.interface, "netns", self.container.leader)
        if self.mode == "vxlan":  # the host's own network config, not the role's business
            run("ip", "-n", self.peer_ns, "addr", "add", f"{UNDERLAY_PEER}/24", "dev", self.peer_if)
            self.rr = Frr(self.peer_ns, reflector_config("rr", UNDERLAY_PEER, ASN, UNDERLAY_VTEP))
            self.container.sh("dpkg --purge frr-pythontools frr")
            self.container.sh(f"ip addr add {UNDERLAY_VTEP}/24 dev {self.interface} && "
                              f"ip link set {self.interface} up && ip link set lo up")
        self.container.sh("python3 -m venv /opt/ansible && "
                          "/opt/ansible/bin/pip install --quiet --no-index --find-links /srv/wheels ansible-core")

    def write_inventory(self, directory: Path, ixf: bool = True, evpn: bool = True) -> None:
        directory.mkdir()
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_become": False,  # already root in the container, and it has no sudo
        }
        if self.mode == "interface":
            host["ixpect_capture_interface"] = self.interface
        else:
            host |= {"ixpect_capture_vxlan_vni": VNI, "ixpect_capture_vxlan_local": UNDERLAY_VTEP}
            if evpn:
                host["ixpect_evpn"] = EVPN
        inventory = {"ixpect": {"children": {"pop_e2e": {"hosts": {"localhost": host}}}}}
        group = {
            "ixpect_wheel": f"/srv/wheels/{self.wheel}",
            "ixpect_pip_extra_args": "--no-index --find-links /srv/wheels",
            "ixpect_settings": SETTINGS,
        }
        if ixf:
            group |= {"ixpect_ixf_url": "/srv/ixf/export.json", "ixpect_ixf_ixp_id": IXP_ID,
                      "ixpect_ixf_vlan_id": VLAN_ID}
        (directory / "hosts.yml").write_text(yaml.safe_dump(inventory))
        (directory / "group_vars").mkdir()
        (directory / "group_vars" / "ixpect.yml").write_text(yaml.safe_dump(group))

    def playbook(self, *extra: str, inventory: str = "/srv/test/hosts.yml") -> str:
        """Run playbooks/site.yml in the container; its output (which must show success)."""
        proc = self.run_playbook(*extra, inventory=inventory)
        assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", proc.stdout), proc.stdout
        return proc.stdout

    def run_playbook(self, *extra: str, inventory: str = "/srv/test/hosts.yml") -> subprocess.CompletedProcess:
        return self.container.sh(f"cd /srv/ixpect/ansible && ansible-playbook -i {inventory} playbooks/site.yml "
                                 + " ".join(extra), check=False)

    def extra_vars(self, name: str, **variables) -> str:
        """-e @FILE for these variables (a JSON file in the shared test directory)."""
        (self.workdir / "test" / f"{name}.json").write_text(json.dumps(variables))
        return f"-e @/srv/test/{name}.json"

    def send(self, *frames, vni: int = VNI) -> None:
        """Send scapy frames from the peer namespace: onto the veth, or over VxLAN to the VTEP."""
        if self.mode == "interface":
            script = ("import sys; from scapy.all import Ether, sendp; sendp([Ether(bytes.fromhex(h)) "
                      f"for h in sys.argv[1:]], iface={self.peer_if!r}, verbose=False)")
        else:  # RFC 7348 header: flags with the I bit, VNI in the upper 24 bits of the second word
            script = ("import socket, struct, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                      f"[s.sendto(struct.pack('!II', 0x08000000, {vni} << 8) + bytes.fromhex(h), "
                      f"({UNDERLAY_VTEP!r}, 4789)) for h in sys.argv[1:]]")
        run("ip", "netns", "exec", self.peer_ns, sys.executable, "-c", script, *(bytes(f).hex() for f in frames))

    def batches(self, unit: str = "ixpect-notify") -> list[dict]:
        """The log notifier's JSON batches in the unit's journal."""
        out = self.container.sh(f"journalctl -u {unit} -o cat --no-pager").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def imet_routes(self) -> list[tuple[str, str]]:
        """What the route reflector has from the monitor."""
        return self.rr.evpn_routes_from(UNDERLAY_VTEP)

    def teardown(self) -> None:
        if self.container:
            self.container.stop()
        if self.rr:
            self.rr.stop()
            self.rr = None
        if self.peer_ns in netns_names():
            run("ip", "netns", "delete", self.peer_ns)
        if self.interface in links():
            run("ip", "link", "delete", self.interface)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """IXpect (from this worktree), ansible-core (the version testing here) and their deps."""
    wheels = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels, REPO,
        f"ansible-core=={version('ansible-core')}", timeout=600)
    return wheels


@pytest.fixture(scope="module", params=["interface", "vxlan"])
def lab(request, tmp_path_factory, wheels):
    lab = Lab(tmp_path_factory.mktemp(f"ansible-e2e-{request.param}"), wheels, request.param)
    yield lab
    lab.teardown()


def changed(output: str) -> int:
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", output).group(1))


def test_playbook_deploys_and_second_run_changes_nothing(lab):
    assert changed(lab.playbook("--check", "--diff")) > 0  # on the fresh host (vxlan: without FRR)
    first = lab.playbook()
    assert changed(first) > 0
    second = lab.playbook()
    assert changed(second) == 0, second
    state = lab.container.sh("systemctl is-active " + " ".join(lab.units), check=False).stdout.split()
    assert state == ["active"] * len(lab.units), lab.container.sh("systemctl status 'ixpect*' --no-pager",
                                                              check=False).stdout


def test_check_diff_on_an_up_to_date_host_predicts_nothing(lab):
    """Not even the wheel: a wheel already installed is neither reinstalled nor restarted."""
    out = lab.playbook("--check", "--diff")
    assert changed(out) == 0, out
    assert "RUNNING HANDLER" not in out


def test_installed_units_carry_exactly_the_shared_hardening(lab):
    for unit in ("ixpect-netns", "ixpect-capture", "ixpect-notify", "ixpect-ixf") + (
            ("ixpect-evpn",) if lab.mode == "vxlan" else ()):
        text = lab.container.sh(f"cat /etc/systemd/system/{unit}.service").stdout
        service = units.parse(text)["Service"]
        for key, values in units.expected_hardening(unit).items():
            assert service.get(key) == values, (unit, key)


def test_capture_runs_in_the_namespace_with_cap_net_raw_only(lab):
    c = lab.container
    pid = c.sh("systemctl show -P MainPID ixpect-capture").stdout.strip()
    assert pid != "0"
    status = dict(line.split(":\t", 1) for line in c.sh(f"cat /proc/{pid}/status").stdout.splitlines() if ":\t" in line)
    # systemd grants CAP_NET_RAW alone; the daemon may give up even that once its socket is open.
    assert c.sh("systemctl show --value -p CapabilityBoundingSet -p AmbientCapabilities ixpect-capture"
                ).stdout.split() == ["cap_net_raw", "cap_net_raw"]
    assert int(status["CapBnd"], 16) == CAP_NET_RAW
    for cap in ("CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert int(status[cap], 16) in (0, CAP_NET_RAW), (cap, status[cap])
    assert status["Uid"].split()[0] != "0"
    capture_ns = c.sh(f"readlink /proc/{pid}/ns/net").stdout.strip()
    assert capture_ns == "net:[%s]" % c.sh("stat -L -c %i /run/netns/ixpect").stdout.strip()
    assert capture_ns != c.sh("readlink /proc/1/ns/net").stdout.strip()
    # The interface is in the namespace, without addresses, ARP off, promiscuous.
    link = json.loads(c.sh(f"ip -n ixpect -j -d addr show {lab.device}").stdout)[0]
    assert link["addr_info"] == [] and "NOARP" in link["flags"] and link["promiscuity"] >= 1
    # ... and behind the egress drop, put there by the unit under its sandbox
    assert f'type filter hook egress device "{lab.device}" priority filter; policy drop;' in c.sh(
        "ip netns exec ixpect nft list table netdev ixpect").stdout
    assert lab.device not in c.sh("ip -br link").stdout
    if lab.mode == "vxlan":  # the VxLAN device's UDP socket stays with the underlay
        assert link["linkinfo"]["info_kind"] == "vxlan" and link["linkinfo"]["info_data"]["id"] == VNI
        assert lab.interface in c.sh("ip -br addr show").stdout
    # The notifier is outside it, without capabilities.
    notify = c.sh("systemctl show -P MainPID ixpect-notify").stdout.strip()
    assert c.sh(f"readlink /proc/{notify}/ns/net").stdout.strip() == c.sh("readlink /proc/1/ns/net").stdout.strip()
    assert "CapEff:\t0000000000000000" in c.sh(f"cat /proc/{notify}/status").stdout


def test_frames_from_the_peer_become_events_naming_the_member(lab):
    from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether
    # A foreign MAC answering for the member's address (gratuitous ARP reply).
    ip = lab.member_ip
    spoof = Ether(src=FOREIGN, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=FOREIGN, psrc=ip, pdst=ip)
    bpdu = Dot3(src=PEER_MAC, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()
    who = {"asn": lab.member["asnum"], "name": lab.member["name"]}

    def arrived():
        lab.send(spoof, bpdu)  # again until seen: the capture socket may not be open yet
        found = {b["type"]: b for b in lab.batches()}
        return found if {"ARP_NEIGHBOR_SPOOFED_STATIC", "STP_PACKET_FOUND"} <= set(found) else None

    found = wait_for(arrived, timeout=60, what="events in journalctl -u ixpect-notify", interval=1)
    arp = found["ARP_NEIGHBOR_SPOOFED_STATIC"]
    assert arp["data"] == {"mac_addr_source": FOREIGN, "ip4_addr": lab.member_ip, "mac_addr": FOREIGN,
                           "mac_addr_expected": [lab.member_mac]}
    assert arp["member"] is None and arp["member_claimed"] == who  # a stranger spoofing the member
    assert found["STP_PACKET_FOUND"]["data"] == {"mac_addr_source": PEER_MAC,
                                                 "mac_addr_destination": "01:80:c2:00:00:00"}


#: EVPN advertises a VxLAN capture's VTEP: these tests run in the vxlan lab only (the
#: same module-scoped lab as the other vxlan tests, in their order)
evpn_lab = pytest.mark.parametrize("lab", ["vxlan"], indirect=True)


def config_blocks(text: str) -> list[list[str]]:
    """The `router bgp` and `route-map` blocks of an FRR config: stripped lines up to `exit`."""
    blocks, block = [], None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith(("router bgp ", "route-map ")):
            blocks.append(block := [])
        if block is not None and line not in ("", "!"):
            block.append(line)
        if line == "exit":
            block = None
    return blocks


@evpn_lab
def test_evpn_speaker_runs_the_rendered_config_and_advertises_one_route(lab):
    c = lab.container
    assert c.sh("pgrep -c -x bgpd").stdout.strip() == "1"
    rendered = c.sh("cat /etc/frr/frr.conf").stdout
    running = c.sh("vtysh -c 'show running-config'").stdout
    assert config_blocks(running) == config_blocks(rendered), running
    bgp = config_blocks(running)[0]
    assert f"neighbor {UNDERLAY_PEER} remote-as internal" in bgp and "address-family l2vpn evpn" in bgp
    assert [line for line in bgp if line.startswith("advertise")] == ["advertise-all-vni"]
    # the advertisement device: in the host namespace, VTEP and VNI of the capture, in a down bridge
    # (quiet under the unit's sandbox: no ARP, no address, not even IPv6 link-local)
    devices = {link["ifname"]: link for link in json.loads(c.sh("ip -d -j addr show").stdout)}
    vxlan, bridge = devices[f"evpn{VNI}"], devices[f"evpnbr{VNI}"]
    data = vxlan["linkinfo"]["info_data"]
    assert (data["id"], data["local"], data["port"], data["learning"]) == (VNI, UNDERLAY_VTEP, 4788, False)
    assert vxlan["master"] == f"evpnbr{VNI}" and "UP" in vxlan["flags"] and "UP" not in bridge["flags"]
    assert "NOARP" in vxlan["flags"] and "NOARP" in bridge["flags"] and vxlan["addr_info"] == bridge["addr_info"] == []
    # the route reflector has exactly the VNI's type-3 route with the monitor's VTEP, and sends it nothing
    wait_for(lambda: lab.imet_routes() == [IMET], what="the IMET route at the route reflector", interval=0.5)
    summary = json.loads(c.sh("vtysh -c 'show bgp l2vpn evpn summary json'").stdout)["peers"][UNDERLAY_PEER]
    assert (summary["state"], summary["pfxRcd"], summary["pfxSnt"]) == ("Established", 0, 1)


@evpn_lab
def test_evpn_route_lives_as_long_as_the_capture(lab):
    c = lab.container
    c.sh("systemctl stop ixpect-capture")
    assert c.sh("systemctl is-active ixpect-evpn", check=False).stdout.strip() == "inactive"
    assert f"evpn{VNI}" not in c.sh("ip -br link").stdout
    wait_for(lambda: lab.imet_routes() == [], what="the IMET route withdrawn", interval=0.5)
    c.sh("systemctl start ixpect-capture")  # pulls ixpect-evpn in again (WantedBy=), after it
    wait_for(lambda: c.sh("systemctl is-active ixpect-evpn", check=False).stdout.strip() == "active",
             what="ixpect-evpn started with the capture", interval=0.5)
    wait_for(lambda: lab.imet_routes() == [IMET], what="the IMET route back", interval=0.5)


def test_ixf_timer_is_scheduled(lab):
    c = lab.container
    assert c.sh("systemctl show -P Result ixpect-ixf.service").stdout.strip() == "success"
    assert "ixpect ixf render: changed" in c.sh("journalctl -u ixpect-ixf -o cat --no-pager").stdout
    nxt = c.sh("systemctl show -P NextElapseUSecMonotonic ixpect-ixf.timer").stdout.strip()
    assert nxt not in ("", "0", "infinity"), nxt
    assert "ixpect-ixf.timer" in c.sh("systemctl list-timers --no-legend ixpect-ixf.timer").stdout


def test_settings_that_fail_check_config_reach_nothing(lab):
    c = lab.container
    state = "systemctl show --value -p MainPID ixpect-capture ixpect-notify; sha256sum /etc/ixpect/*.yaml"
    before = c.sh(state).stdout
    bad = SETTINGS | {"probes": SETTINGS["probes"] | {"no_such_probe": {"enable": True}}}
    (lab.workdir / "test" / "bad.json").write_text(json.dumps({"ixpect_settings": bad}))
    proc = c.sh("cd /srv/ixpect/ansible && ansible-playbook -i /srv/test/hosts.yml playbooks/site.yml "
                "-e @/srv/test/bad.json", check=False)
    assert proc.returncode != 0
    assert "probes.no_such_probe: unknown key" in proc.stdout, proc.stdout
    assert c.sh(state).stdout == before


def test_settings_change_reloads_instead_of_restarting(lab):
    c = lab.container
    daemons = ("ixpect-capture", "ixpect-notify")
    before = {d: c.sh(f"systemctl show --value -p MainPID -p NRestarts {d}").stdout.split() for d in daemons}
    cursor = c.sh("journalctl -n 0 --show-cursor --no-pager").stdout.strip().rsplit("cursor: ", 1)[1]
    changed_settings = SETTINGS | {"probes": SETTINGS["probes"] | {"ipv6_router": {"enable": True}}}
    (lab.workdir / "test" / "change.json").write_text(json.dumps({"ixpect_settings": changed_settings}))
    out = lab.playbook("-e", "@/srv/test/change.json")
    assert re.search(r"TASK \[ixpect : Render the IX-F config\][^\n]*\n(ok|changed):", out), out
    assert "Restart" not in "".join(re.findall(r"RUNNING HANDLER \[.*?\]", out))

    def reloaded():
        log = c.sh(f"journalctl --after-cursor '{cursor}' -u ixpect-capture -u ixpect-notify -o cat "
                   "--no-pager").stdout
        return log.count("configuration reloaded from") >= 2 and log.count("Reloaded ") >= 2
    wait_for(reloaded, timeout=30, what="both daemons to reload", interval=0.5)
    after = {d: c.sh(f"systemctl show --value -p MainPID -p NRestarts {d}").stdout.split() for d in daemons}
    assert after == before
    rendered = yaml.safe_load(c.sh("cat /etc/ixpect/ixpect.conf.yaml").stdout)
    assert rendered["probes"]["ipv6_router"]["enable"] is True
    assert changed(lab.playbook("-e", "@/srv/test/change.json")) == 0


def daemons(c: "Container") -> list[str]:
    return c.sh("systemctl show --value -p MainPID -p NRestarts ixpect-capture ixpect-notify").stdout.split()


def test_a_new_interval_restarts_only_the_timer(lab):
    c = lab.container
    before = daemons(c)
    settings = json.loads((lab.workdir / "test" / "change.json").read_text())
    out = lab.playbook(lab.extra_vars("interval", **settings, ixpect_ixf_interval="2h"))
    handlers = re.findall(r"RUNNING HANDLER \[ixpect : (.*?)\]", out)
    assert handlers == ["Reload systemd", "Restart ixpect-ixf.timer"], out
    assert daemons(c) == before
    assert "OnUnitInactiveUSec=2h ;" in c.sh("systemctl show -P TimersMonotonic ixpect-ixf.timer").stdout
    lab.playbook("-e", "@/srv/test/change.json")  # back


def test_a_failed_render_is_run_again_by_the_next_run(lab):
    """The render fails: the host fails (the rollout stops at this PoP), and so does every
    later run until one renders; the daemons keep running on the last good config."""
    c = lab.container
    before = daemons(c), c.sh("sha256sum /var/lib/ixpect/ixpect.conf.yaml").stdout
    settings = json.loads((lab.workdir / "test" / "change.json").read_text())
    broken = lab.extra_vars("broken", **settings, ixpect_ixf_url="/srv/ixf/no-such-export.json")
    for _ in range(2):
        proc = lab.run_playbook(broken)
        assert proc.returncode != 0 and "Render the IX-F config" in proc.stdout, proc.stdout
        assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1", proc.stdout)
        assert (daemons(c), c.sh("sha256sum /var/lib/ixpect/ixpect.conf.yaml").stdout) == before
    out = lab.playbook("-e", "@/srv/test/change.json")
    assert re.search(r"TASK \[ixpect : Render the IX-F config\][^\n]*\n(ok|changed):", out), out
    assert changed(lab.playbook("-e", "@/srv/test/change.json")) == 0


def test_a_typo_in_the_capture_source_changes_nothing(lab):
    c = lab.container
    state = ("systemctl show --value -p MainPID -p ActiveState ixpect-netns ixpect-capture ixpect-notify; "
             "ip netns list; find /etc/systemd/system -name 'ixpect-*' -type f -exec sha256sum {} + | sort")
    before = c.sh(state).stdout
    settings = json.loads((lab.workdir / "test" / "change.json").read_text())
    if lab.mode == "interface":
        typo, message = {"ixpect_capture_interface": lab.interface + "x"}, "exists neither on the host nor in"
    else:
        typo, message = {"ixpect_capture_vxlan_local": "198.51.100.77"}, "is not configured on the host"
    proc = lab.run_playbook(lab.extra_vars("typo", **settings, **typo))
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout
    assert "changed=0" in proc.stdout
    assert c.sh(state).stdout == before


def test_another_namespace_takes_the_interface_along(lab):
    """The old namespace goes down with its old unit (handing the interface back), the
    capture comes up in the new one and still sees the peer."""
    from scapy.layers.l2 import ARP, Ether
    c = lab.container
    moved = json.loads((lab.workdir / "test" / "change.json").read_text()) | {"ixpect_netns": "ixp-lan"}
    (lab.workdir / "test" / "move.json").write_text(json.dumps(moved))
    out = lab.playbook("-e", "@/srv/test/move.json")
    assert "RUNNING HANDLER [ixpect : Restart ixpect-netns]" in out
    assert [line.split()[0] for line in c.sh("ip netns list").stdout.splitlines()] == ["ixp-lan"]
    state = c.sh("systemctl is-active " + " ".join(lab.units), check=False).stdout.split()
    assert state == ["active"] * len(lab.units)
    pid = c.sh("systemctl show -P MainPID ixpect-capture").stdout.strip()
    assert c.sh(f"readlink /proc/{pid}/ns/net").stdout.strip() == "net:[%s]" % c.sh(
        "stat -L -c %i /run/netns/ixp-lan").stdout.strip()
    assert json.loads(c.sh(f"ip -n ixp-lan -j addr show {lab.device}").stdout)[0]["addr_info"] == []
    seen = len([b for b in lab.batches() if b["type"] == "ARP_NEIGHBOR_SPOOFED_STATIC"])
    ip = lab.member_ip
    spoof = Ether(src=FOREIGN, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=FOREIGN, psrc=ip, pdst=ip)

    def more():
        lab.send(spoof)
        return len([b for b in lab.batches() if b["type"] == "ARP_NEIGHBOR_SPOOFED_STATIC"]) > seen
    wait_for(more, timeout=60, what="an event from the capture in the new namespace", interval=1)
    assert changed(lab.playbook("-e", "@/srv/test/move.json")) == 0


@evpn_lab
def test_evpn_off_retires_the_advertisement_and_leaves_frr(lab):
    c = lab.container
    lab.write_inventory(lab.workdir / "test" / "no-evpn", evpn=False)
    out = lab.playbook("-e", "@/srv/test/move.json", inventory="/srv/test/no-evpn/hosts.yml")
    assert "TASK [ixpect : Stop and disable the advertisement]" in out and changed(out) > 0
    assert c.sh("systemctl list-unit-files --no-legend ixpect-evpn.service", check=False).stdout.strip() == ""
    assert not {f"evpn{VNI}", f"evpnbr{VNI}"} & {line.split()[0] for line in c.sh("ip -br link").stdout.splitlines()}
    wait_for(lambda: lab.imet_routes() == [], what="the IMET route withdrawn", interval=0.5)
    assert c.sh("dpkg-query -W -f '${Status}' frr").stdout == "install ok installed"
    assert c.sh("systemctl is-active frr").stdout.strip() == "active"
    assert changed(lab.playbook("-e", "@/srv/test/move.json", inventory="/srv/test/no-evpn/hosts.yml")) == 0
    lab.playbook("-e", "@/srv/test/move.json")  # and back on
    assert c.sh("systemctl is-active ixpect-evpn").stdout.strip() == "active"
    wait_for(lambda: lab.imet_routes() == [IMET], what="the IMET route back", interval=0.5)


JUMBO_VNI, JUMBO_RT = 200, f"{ASN}:4200"


def lans_playbook(lab, jumbo: dict) -> str:
    """A playbook with two LANs on the host: the first from the inventory (in namespace
    ixp-lan, as the tests before left it), the second (`jumbo`, VNI 200 on the same VTEP,
    its own route target) with these variables on top; its path in the container."""
    second = {"ixpect_instance": "jumbo", "ixpect_capture_vxlan_vni": JUMBO_VNI,
              "ixpect_evpn": EVPN | {"route_target": JUMBO_RT}} | jumbo
    play = [{"name": "Two LANs", "hosts": "ixpect", "roles": [
        {"role": "ixpect", "vars": {"ixpect_netns": "ixp-lan"}}, {"role": "ixpect", "vars": second}]}]
    name = "lans-" + hashlib.sha256(json.dumps(second, sort_keys=True).encode()).hexdigest()[:8]
    (lab.workdir / "test" / f"{name}.yml").write_text(yaml.safe_dump(play))
    return f"/srv/test/{name}.yml"


def lans_run(lab, playbook: str) -> subprocess.CompletedProcess:
    return lab.container.sh(f"cd /srv/ixpect/ansible && ansible-playbook -i /srv/test/hosts.yml {playbook}",
                            check=False)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", proc.stdout), proc.stdout
    return proc.stdout


@evpn_lab
def test_two_lans_run_side_by_side_and_one_goes_alone(lab):
    """A jumbo LAN beside the peering LAN: its own units, namespace, config and state, each
    capture sees its own VNI's frames only, FRR advertises one IMET route per VNI, and
    removing the jumbo LAN leaves the peering LAN and its route as they were."""
    from scapy.layers.l2 import LLC, STP, Dot3
    c = lab.container
    two = lans_playbook(lab, {})
    assert changed(ok(lans_run(lab, two))) > 0
    assert changed(ok(lans_run(lab, two))) == 0
    jumbo_units = [u.replace("ixpect-", "ixpect-jumbo-", 1) for u in lab.units if u.startswith("ixpect-")]
    state = c.sh("systemctl is-active " + " ".join(lab.units + tuple(jumbo_units)), check=False).stdout.split()
    assert state == ["active"] * (len(lab.units) + len(jumbo_units)), c.sh(
        "systemctl status 'ixpect*' --no-pager", check=False).stdout
    # its own namespace, device, config, state and socket
    pid = c.sh("systemctl show -P MainPID ixpect-jumbo-capture").stdout.strip()
    assert c.sh(f"readlink /proc/{pid}/ns/net").stdout.strip() == "net:[%s]" % c.sh(
        "stat -L -c %i /run/netns/ixpect-jumbo").stdout.strip()
    assert json.loads(c.sh(f"ip -n ixpect-jumbo -j -d link show vxlan{JUMBO_VNI}").stdout)[0][
        "linkinfo"]["info_data"]["id"] == JUMBO_VNI
    argv = c.sh("systemctl show -P ExecStart ixpect-jumbo-capture").stdout
    assert "--config /var/lib/ixpect-jumbo/ixpect.conf.yaml" in argv and "--socket /run/ixpect-jumbo/notify.sock" in argv
    assert c.sh("readlink /etc/ixpect-jumbo/ixpect.conf.yaml").stdout.strip() == "/var/lib/ixpect-jumbo/ixpect.conf.yaml"
    # FRR: one route per VNI from the monitor's VTEP, the jumbo LAN's with its route target
    jumbo_imet = (IMET[0], f"RT:{JUMBO_RT} ET:8")
    wait_for(lambda: lab.imet_routes() == sorted([IMET, jumbo_imet]), what="one IMET route per VNI", interval=0.5)
    summary = json.loads(c.sh("vtysh -c 'show bgp l2vpn evpn summary json'").stdout)["peers"][UNDERLAY_PEER]
    assert (summary["pfxRcd"], summary["pfxSnt"]) == (0, 2)

    # each LAN's capture sees its own VNI's frames, and names the member that sent them
    who = {"asn": lab.member["asnum"], "name": lab.member["name"]}
    lan_bpdu = Dot3(src=PEER_MAC, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()
    jumbo_bpdu = Dot3(src=lab.member_mac, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()

    def stp(unit: str) -> dict[str, dict]:
        return {b["data"]["mac_addr_source"]: b for b in lab.batches(unit) if b["type"] == "STP_PACKET_FOUND"}

    def arrived():
        lab.send(lan_bpdu)
        lab.send(jumbo_bpdu, vni=JUMBO_VNI)
        return lab.member_mac in stp("ixpect-jumbo-notify") and PEER_MAC in stp("ixpect-notify")
    wait_for(arrived, timeout=60, what="STP events from both LANs", interval=1)
    assert stp("ixpect-jumbo-notify")[lab.member_mac]["member"] == who
    assert lab.member_mac not in stp("ixpect-notify") and PEER_MAC not in stp("ixpect-jumbo-notify")

    # a new package (here: the one the virtualenv lost) restarts the daemons of both LANs
    pids = "systemctl show --value -p MainPID ixpect-capture ixpect-jumbo-capture ixpect-notify ixpect-jumbo-notify"
    before = c.sh(pids).stdout.split()
    c.sh("/opt/ixpect/bin/pip uninstall --quiet --yes ixpect")
    ok(lans_run(lab, two))
    after = c.sh(pids).stdout.split()
    assert all(a != b for a, b in zip(before, after)), (before, after)
    assert changed(ok(lans_run(lab, two))) == 0

    # a third LAN on a VNI that is taken: refused before anything changes, naming both
    taken = lans_run(lab, lans_playbook(lab, {"ixpect_instance": "other", "ixpect_capture_vxlan_vni": JUMBO_VNI}))
    assert taken.returncode != 0 and "changed=0" in taken.stdout
    assert "LAN ixpect-other (ixpect_instance \"other\") collides with LAN ixpect-jumbo on this host: both use VNI 200" \
        in " ".join(taken.stdout.split()), taken.stdout

    # the jumbo LAN goes: its units, namespace, devices, files and route; nothing of the other
    first = c.sh("systemctl show --value -p MainPID ixpect-capture ixpect-notify").stdout
    out = ok(lans_run(lab, lans_playbook(lab, {"ixpect_state": "absent"})))
    assert changed(out) > 0
    assert c.sh("systemctl list-unit-files --no-legend 'ixpect-jumbo*'", check=False).stdout.strip() == ""
    assert "ixpect-jumbo" not in c.sh("ip netns list").stdout
    assert not {f"vxlan{JUMBO_VNI}", f"evpn{JUMBO_VNI}", f"evpnbr{JUMBO_VNI}"} & {
        line.split()[0] for line in c.sh("ip -br link").stdout.splitlines()}
    left = c.sh("find /etc /usr/local /var/lib /var/cache /run -path /run/systemd -prune -o -name '*ixpect-jumbo*' "
                "-print", check=False).stdout
    assert left == "", left
    assert f"vni {JUMBO_VNI}" not in c.sh("cat /etc/frr/frr.conf").stdout
    wait_for(lambda: lab.imet_routes() == [IMET], what="only the first LAN's IMET route", interval=0.5)
    state = c.sh("systemctl is-active " + " ".join(lab.units), check=False).stdout.split()
    assert state == ["active"] * len(lab.units)
    assert c.sh("systemctl show --value -p MainPID ixpect-capture ixpect-notify").stdout == first
    assert c.sh("test -x /opt/ixpect/bin/ixpect", check=False).returncode == 0
    assert changed(ok(lans_run(lab, lans_playbook(lab, {"ixpect_state": "absent"})))) == 0


def test_ixf_off_leaves_no_trace_of_it(lab):
    c = lab.container
    lab.write_inventory(lab.workdir / "test" / "no-ixf", ixf=False)
    out = lab.playbook("-e", "@/srv/test/move.json", inventory="/srv/test/no-ixf/hosts.yml")
    assert changed(out) > 0
    left = c.sh("find /etc /usr/local /var/cache /var/lib -name '*ixpect-ixf*' -o -name 'ixpect-base*' "
                "-o -path '*cache*ixpect*' -o -name 'ixpect.conf.*.json' -o -name '.ixf-render-pending'",
                check=False).stdout
    assert left == "", left
    assert c.sh("test -f /etc/ixpect/ixpect.conf.yaml && ! test -L /etc/ixpect/ixpect.conf.yaml", check=False
                ).returncode == 0
    assert "ixpect" not in c.sh("systemctl list-timers --all --no-legend").stdout
    state = c.sh("systemctl is-active " + " ".join(u for u in lab.units if "ixf" not in u), check=False).stdout.split()
    assert state == ["active"] * (len(lab.units) - 1)
    assert changed(lab.playbook("-e", "@/srv/test/move.json", inventory="/srv/test/no-ixf/hosts.yml")) == 0


def test_state_absent_leaves_nothing_behind(lab):
    """Even with ixpect_evpn still set (vxlan): the route goes, FRR stays."""
    c = lab.container
    absent = lab.extra_vars("absent", ixpect_netns="ixp-lan", ixpect_state="absent")
    out = lab.playbook(absent)
    assert changed(out) > 0
    # systemd may still remember a unit it just lost the file of, until its next clean-up
    remembered = c.sh("systemctl list-units --all --no-legend --plain 'ixpect*'").stdout.splitlines()
    assert all(line.split()[1:4] == ["not-found", "inactive", "dead"] for line in remembered), remembered
    assert c.sh("systemctl list-unit-files --no-legend 'ixpect*'", check=False).stdout.strip() == ""
    left = c.sh("find /etc /opt /usr/local /var/lib /var/cache /run -path /run/systemd -prune "
                "-o -name '*ixpect*' -print", check=False).stdout
    assert left == "", left
    assert c.sh("ip netns list").stdout.strip() == ""
    if lab.mode == "interface":  # the port is back on the host, down, with ARP on
        link = json.loads(c.sh(f"ip -j link show {lab.interface}").stdout)[0]
        assert "UP" not in link["flags"] and "NOARP" not in link["flags"] and "PROMISC" not in link["flags"]
    else:
        assert not {f"vxlan{VNI}", f"evpn{VNI}", f"evpnbr{VNI}"} & {
            line.split()[0] for line in c.sh("ip -br link").stdout.splitlines()}
        wait_for(lambda: lab.imet_routes() == [], what="the IMET route withdrawn", interval=0.5)
        assert c.sh("systemctl is-active frr").stdout.strip() == "active"
    assert changed(lab.playbook(absent)) == 0


def test_teardown_leaves_nothing_behind(lab):
    pidns, nspawn, rr = lab.container.pidns, lab.container.nspawn, lab.rr
    lab.teardown()
    assert nspawn.returncode is not None
    assert rr is None or all(proc.poll() is not None for proc in rr.procs.values())
    assert processes_in(pidns) == []
    assert lab.peer_ns not in netns_names()
    assert not {lab.interface, lab.peer_if} & links()
