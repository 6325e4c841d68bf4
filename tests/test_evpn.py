"""The monitor joins an EVPN fabric's flood list by itself, with Debian's FRR.

A fabric leaf (FRR bgpd+zebra, route reflector for the monitor) bridges two VNIs, a
peering LAN (100) and a jumbo LAN (200), to member routers in their own namespaces.
The monitor host's namespace runs FRR with the config the Ansible role renders from
the shared template (nix/evpn.nix renders it alike, see test_role_and_module_render_alike),
`ixpect evpn up` adds the advertisement devices, and one capture per VNI, each with its
own config, reads its kernel vxlan device in its own capture namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                                IPv6, in6_getnsma, in6_getnsmac)
from scapy.layers.l2 import ARP, Ether

from conftest import require_tool, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent / "ansible"))
import units  # noqa: E402
from ixpect.netns import inside
from frrlab import FRR, Frr, reflector_config, sh
from livenet import IXPECT, needs_root, quiet_namespace, read_jsonl, start, stop

pytestmark = [needs_root, pytest.mark.netns]

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "ansible" / "roles" / "ixpect"
LEAF_IP, MON_IP = "10.77.0.1", "10.77.0.2"
ASN = 65000
M1_MAC, M2_MAC = "02:00:00:00:01:01", "02:00:00:00:02:02"
M1_IP, M2_IP = "192.0.2.1", "192.0.2.2"
M1_IP6, M2_IP6 = "2001:db8:100::1", "2001:db8:100::2"
MEMBERS = {M1_MAC: {"asn": 64501, "name": "Member One"}, M2_MAC: {"asn": 64502, "name": "Member Two"}}
FLOOD = "00:00:00:00:00:00"

LEAF_CONF = reflector_config("leaf", LEAF_IP, ASN, MON_IP, vnis=True)


class Fabric:
    """Underlay veth leaf <-> monitor host, the leaf's bridges and the members."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.ns = {n: f"ixe-{n}-{tag}" for n in ("leaf", "mon", "m1", "m2", "cap100", "cap200")}
        self.frr: list[Frr] = []

    def build(self) -> None:
        # all made here: one made under `ip netns exec` would stay in that command's mounts
        for name in self.ns.values():
            quiet_namespace(name)
        for role in ("leaf", "mon"):
            sh("ip", "link", "set", "lo", "up", ns=self.ns[role])
        leaf, mon = self.ns["leaf"], self.ns["mon"]
        sh("ip", "link", "add", "ul0", "netns", leaf, "type", "veth", "peer", "name", "ul0", "netns", mon)
        for ns, addr in ((leaf, LEAF_IP), (mon, MON_IP)):
            sh("ip", "addr", "add", f"{addr}/24", "dev", "ul0", ns=ns)
            sh("ip", "link", "set", "ul0", "up", ns=ns)
        for vni in (100, 200):
            sh("ip", "link", "add", f"br{vni}", "type", "bridge", ns=leaf)
            sh("ip", "link", "add", f"vxlan{vni}", "type", "vxlan", "id", vni, "local", LEAF_IP,
               "dstport", 4789, "nolearning", ns=leaf)
            sh("ip", "link", "set", f"vxlan{vni}", "master", f"br{vni}", "up", ns=leaf)
            # IPv6 on (for neighbor entries), no address: its MLD reports go out now, before
            # the monitor is in the flood list
            sh("ip", "link", "set", f"br{vni}", "addrgenmode", "none", ns=leaf)
            sh("sysctl", "-qw", f"net.ipv6.conf.br{vni}.disable_ipv6=0", ns=leaf)
            sh("ip", "link", "set", f"br{vni}", "up", ns=leaf)
        # m1 is on both LANs (eth0 peering, eth1 jumbo), m2 on the peering LAN only
        for member, mac, ports in (("m1", M1_MAC, ((100, "eth0"), (200, "eth1"))), ("m2", M2_MAC, ((100, "eth0"),))):
            for vni, ifname in ports:
                port = f"{member}v{vni}"
                sh("ip", "link", "add", port, "netns", leaf, "type", "veth", "peer", "name", ifname,
                   "address", mac, "netns", self.ns[member])
                sh("ip", "link", "set", port, "master", f"br{vni}", "up", ns=leaf)
                sh("ip", "link", "set", ifname, "up", ns=self.ns[member])
        # the underlay's VxLAN packets, counted where they leave each host
        for ns in (leaf, mon):
            sh("nft", "add table netdev ixe; add chain netdev ixe out { type filter hook egress device ul0 priority 0; };"
               " add rule netdev ixe out udp dport { 4788, 4789 } counter", ns=ns)
        self.leaf = self.start_frr("leaf", LEAF_CONF)

    def start_frr(self, role: str, config: str) -> Frr:
        frr = Frr(self.ns[role], config)
        self.frr.append(frr)
        return frr

    def vxlan_sent(self, role: str) -> int:
        rules = json.loads(sh("nft", "-j", "list", "chain", "netdev", "ixe", "out", ns=self.ns[role]))
        return sum(e["rule"]["expr"][-1]["counter"]["packets"] for e in rules["nftables"] if "rule" in e)

    def received(self, role: str, ifname: str) -> int:
        link = json.loads(sh("ip", "-s", "-j", "link", "show", ifname, ns=self.ns[role]))[0]
        return link["stats64"]["rx"]["packets"]

    def flood_list(self, vni: int) -> list[str]:
        fdb = sh("bridge", "fdb", "show", "dev", f"vxlan{vni}", ns=self.ns["leaf"]).splitlines()
        return sorted(line.split(" dst ")[1].split()[0] for line in fdb if line.startswith(FLOOD))

    def send(self, member: str, ifname: str, frames) -> None:
        self.send_from(self.ns[member], ifname, frames)

    @staticmethod
    def send_from(ns: str, ifname: str, frames) -> None:
        with inside(ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sock:
            sock.bind((ifname, 0))
            for f in frames:
                sock.send(bytes(f))

    def close(self) -> None:
        for frr in self.frr:
            frr.stop()
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def fabric():
    for tool in ("vtysh", "nft", "bridge"):
        require_tool(tool)
    if not (FRR / "bgpd").exists():
        require_tool("bgpd")  # not on PATH either: skip, or fail in CI
    topo = Fabric()
    try:
        topo.build()
        yield topo
    finally:
        topo.close()


def role_render(out: Path, **role_vars) -> dict[str, Path]:
    """frr.conf and the units as the Ansible role writes them for these variables
    (tests/ansible/render_units.yml, the role's own templates and variables)."""
    out.mkdir()
    extra = role_vars | {"ixpect_settings": {}, "ixpect_venv": str(Path(sys.executable).parent.parent),
                         "out": str(out)}
    done = subprocess.run([Path(sys.executable).parent / "ansible-playbook", ROOT / "tests/ansible/render_units.yml",
                           "-e", json.dumps(extra)], capture_output=True, text=True,
                          env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg")})
    assert done.returncode == 0, done.stdout + done.stderr
    return {p.name: p for p in out.iterdir()}


def unit_command(unit: Path, directive: str) -> list[str]:
    """The argv of a unit's Exec*= line (the venv's real ixpect)."""
    return units.argv(units.parse(unit.read_text())["Service"][directive][0])


def capture_config(tmp: Path, vni: int) -> Path:
    conf = tmp / f"vni{vni}.conf.yaml"
    members = tmp / f"vni{vni}.conf.members.json"
    members.write_text(json.dumps({"macs": MEMBERS}))
    conf.write_text(yaml.safe_dump({
        "member_table": str(members),
        "probes": {
            "arp_neighbor": {"enable": True, "static_resolutions": [{"ip": M1_IP, "mac": M1_MAC}, {"ip": M2_IP, "mac": M2_MAC}]},
            "ipv6_router": {"enable": True},
        },
        "event": {"collection_window": "1s", "notifiers": {"log": {"format": "json"}}},
    }))
    return conf


def suppress(fabric: Fabric) -> None:
    """neigh_suppress on the leaf's vxlan port (as FRR's EVPN leaves set it), and m2's IPv4
    and IPv6 neighbor entries on its bridge."""
    leaf = fabric.ns["leaf"]
    for ip in (M2_IP, M2_IP6):
        sh("ip", "neigh", "replace", ip, "lladdr", M2_MAC, "dev", "br100", "nud", "permanent", ns=leaf)
    sh("bridge", "link", "set", "dev", "vxlan100", "neigh_suppress", "on", ns=leaf)


def _nd(dst_ip: str, message) -> Ether:
    """An ND message from m1 to multicast `dst_ip`, hop limit 255 as RFC 4861 requires."""
    mac = in6_getnsmac(socket.inet_pton(socket.AF_INET6, dst_ip))
    return Ether(src=M1_MAC, dst=mac) / IPv6(src=M1_IP6, dst=dst_ip, hlim=255) / message


def solicited_node(ip: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, in6_getnsma(socket.inet_pton(socket.AF_INET6, ip)))


def suppressed_frames() -> dict[str, Ether]:
    """What a member floods that a suppressing leaf keeps from remote VTEPs."""
    bcast = Ether(src=M1_MAC, dst="ff:ff:ff:ff:ff:ff")
    return {
        "gratuitous ARP request": bcast / ARP(op=1, hwsrc=M1_MAC, psrc=M1_IP, pdst=M1_IP),
        "gratuitous ARP reply": bcast / ARP(op=2, hwsrc=M1_MAC, psrc=M1_IP, hwdst="ff:ff:ff:ff:ff:ff", pdst=M1_IP),
        "ARP probe": bcast / ARP(op=1, hwsrc=M1_MAC, psrc="0.0.0.0", pdst=M1_IP),
        "ARP request for a known address": bcast / ARP(op=1, hwsrc=M1_MAC, psrc=M1_IP, pdst=M2_IP),
        "unsolicited NA": _nd("ff02::1", ICMPv6ND_NA(R=0, S=0, O=1, tgt=M1_IP6) / ICMPv6NDOptDstLLAddr(lladdr=M1_MAC)),
        "NS for a known address": _nd(solicited_node(M2_IP6), ICMPv6ND_NS(tgt=M2_IP6)
                                      / ICMPv6NDOptSrcLLAddr(lladdr=M1_MAC)),
    }


def still_flooded_frames() -> dict[str, Ether]:
    """What a suppressing leaf still floods to remote VTEPs."""
    bcast = Ether(src=M1_MAC, dst="ff:ff:ff:ff:ff:ff")
    return {
        "ARP reply to broadcast for another address": bcast / ARP(op=2, hwsrc=M1_MAC, psrc=M1_IP,
                                                                   hwdst="ff:ff:ff:ff:ff:ff", pdst=M2_IP),
        "NS for an unknown address": _nd(solicited_node("2001:db8:100::99"), ICMPv6ND_NS(tgt="2001:db8:100::99")
                                         / ICMPv6NDOptSrcLLAddr(lladdr=M1_MAC)),
        "router advertisement": _nd("ff02::1", ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=M1_MAC)),
    }


def test_monitor_joins_the_flood_list_and_sends_nothing(fabric, tmp_path):
    """The monitor side runs only what the role renders: frr.conf, and per VNI the
    ExecStart/ExecStop of ixpect-netns and ixpect-evpn (the role's per-host units, rendered
    once per VNI), with one capture per VNI in place of ixpect-capture."""
    mon = fabric.ns["mon"]
    evpn = {"asn": ASN, "neighbors": [LEAF_IP], "keepalive": 1, "hold": 3}
    role = {vni: role_render(tmp_path / f"role{vni}", ixpect_netns=fabric.ns[f"cap{vni}"],
                             ixpect_capture_vxlan_vni=vni, ixpect_capture_vxlan_local=MON_IP,
                             ixpect_evpn=evpn | ({"route_target": f"{ASN}:100"} if vni == 100 else {}))
            for vni in (100, 200)}
    speaker = fabric.start_frr("mon", role[100]["frr.conf"].read_text())
    wait_for(lambda: fabric.leaf.json("show bgp l2vpn evpn summary")["peers"][MON_IP]["state"] == "Established",
             what="the monitor's BGP session")

    captures = {}
    try:
        # one capture per VNI, each with its own config and capture namespace
        for vni in (100, 200):
            sh(*unit_command(role[vni]["ixpect-netns.service"], "ExecStart"), ns=mon)
            jsonl = tmp_path / f"vni{vni}.jsonl"
            captures[vni] = (jsonl, start(["run", "-c", capture_config(tmp_path, vni), "--interface", f"vxlan{vni}",
                                           "--netns", fabric.ns[f"cap{vni}"], "--jsonl", jsonl],
                                          tmp_path / f"vni{vni}.log"))
        assert fabric.flood_list(100) == [] and fabric.flood_list(200) == []
        for vni in (100, 200):
            sh(*unit_command(role[vni]["ixpect-evpn.service"], "ExecStart"), ns=mon)
        wait_for(lambda: fabric.flood_list(100) == [MON_IP] and fabric.flood_list(200) == [MON_IP],
                 what="the monitor's VTEP in the leaf's flood lists")

        # the leaf has from the monitor exactly its two IMET routes, with the configured RT
        # for VNI 100 and the automatic one for 200 ...
        imet = [("[3]:[0]:[32]:[10.77.0.2]", f"RT:{ASN}:100 ET:8"), ("[3]:[0]:[32]:[10.77.0.2]", f"RT:{ASN}:200 ET:8")]
        assert fabric.leaf.evpn_routes_from(MON_IP) == imet
        # ... even when the monitor has a MAC of its own to advertise (a port in its
        # advertisement bridge): the type-2 route stays local
        sh("ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1", ns=mon)
        sh("ip", "link", "set", "probe0", "master", "evpnbr100", "up", ns=mon)
        sh("ip", "link", "set", "probe1", "up", ns=mon)
        sh("ip", "link", "set", "evpnbr100", "up", ns=mon)
        sh("bridge", "fdb", "add", "02:00:00:00:99:99", "dev", "probe0", "master", "static", ns=mon)
        wait_for(lambda: "02:00:00:00:99:99" in speaker.vtysh("show bgp l2vpn evpn route type macip"),
                 what="the monitor's own type-2 route")
        assert fabric.leaf.evpn_routes_from(MON_IP) == imet

        # members flood; both captures see their own LAN only, and name the member
        fabric.send("m2", "eth0", [Ether(src=M2_MAC, dst="ff:ff:ff:ff:ff:ff")
                                   / ARP(op=2, hwsrc=M2_MAC, psrc=M1_IP, hwdst="ff:ff:ff:ff:ff:ff", pdst=M1_IP)])
        fabric.send("m1", "eth1", [Ether(src=M1_MAC, dst="33:33:00:00:00:01")
                                   / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA()
                                   / ICMPv6NDOptSrcLLAddr(lladdr=M1_MAC)])
        for vni, (type_, member) in {100: ("ARP_NEIGHBOR_SPOOFED_STATIC", "Member Two"),
                                      200: ("IPV6_ROUTER_ADVERTISEMENT", "Member One")}.items():
            jsonl = captures[vni][0]
            events = wait_for(lambda: read_jsonl(jsonl), what=f"an event from VNI {vni}")
            assert [(e["type"], e["member"]["name"]) for e in events] == [(type_, member)]

        # frames injected into the monitor's advertisement bridge go nowhere ...
        fabric.send_from(mon, "probe1", [Ether(src="02:00:00:00:99:99", dst=dst) / ARP(psrc=M1_IP, pdst=M2_IP)
                                         for dst in ("ff:ff:ff:ff:ff:ff", M1_MAC, M2_MAC)])
        # ... as nothing the fabric announces reached the monitor's tables or kernel
        peer = speaker.json("show bgp l2vpn evpn summary")["peers"][LEAF_IP]
        assert peer["pfxRcd"] == 0 and fabric.leaf.json("show bgp l2vpn evpn summary")["peers"][MON_IP]["pfxSnt"] >= 4
        vnis = speaker.json("show evpn vni")
        assert sorted(vnis) == ["100", "200"] and all(v["numRemoteVteps"] == 0 for v in vnis.values())
        macs = speaker.json("show evpn mac vni all")
        assert {mac: m["type"] for v in macs.values() for mac, m in v.get("macs", {}).items()} == {"02:00:00:00:99:99": "local"}
        for vni in (100, 200):
            assert " dst " not in sh("bridge", "fdb", "show", "dev", f"evpn{vni}", ns=mon)
            assert " dst " not in sh("bridge", "fdb", "show", ns=fabric.ns[f"cap{vni}"])
        assert fabric.vxlan_sent("leaf") > 0 and fabric.vxlan_sent("mon") == 0

        # ARP/ND suppression (RFC 9161) on the leaf's port into the fabric, the leaf knowing
        # m2's addresses (neighbor entries on its bridge, where zebra installs those of EVPN
        # type-2 routes): what the leaf answers itself or drops is no longer flooded to the
        # monitor, and what it does not know still is
        suppress(fabric)
        flooded = Ether(src=M1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=M1_MAC, psrc=M1_IP, pdst="192.0.2.99")
        for name, frame in suppressed_frames().items():
            before = fabric.received("cap100", "vxlan100")
            fabric.send("m1", "eth0", [frame, flooded])  # in this order: the second one marks the end
            wait_for(lambda: fabric.received("cap100", "vxlan100") > before, what=f"the flooded frame after {name}")
            time.sleep(0.2)
            assert fabric.received("cap100", "vxlan100") - before == 1, f"{name} was flooded to the monitor"
        for name, frame in still_flooded_frames().items():
            before = fabric.received("cap100", "vxlan100")
            fabric.send("m1", "eth0", [frame])
            wait_for(lambda: fabric.received("cap100", "vxlan100") > before, what=f"{name} flooded to the monitor")

        # the advertisement device goes: its route is withdrawn, the other VNI's stays
        sh(*unit_command(role[200]["ixpect-evpn.service"], "ExecStop"), ns=mon)
        wait_for(lambda: fabric.flood_list(200) == [] and fabric.flood_list(100) == [MON_IP],
                 what="VNI 200's route withdrawn")
        # the speaker stops: the last route goes
        speaker.stop_bgpd()
        wait_for(lambda: fabric.flood_list(100) == [], what="the flood list without the monitor")
        assert fabric.vxlan_sent("mon") == 0
    finally:
        for _, proc in captures.values():
            stop(proc)


def test_role_and_module_render_alike(tmp_path):
    """nix/evpn.nix (evaluated by tests/nix/harness.nix, its build step run) and the role
    write the same frr.conf from the same settings; rd and route target are FRR's own
    unless set, and the config gives bgpd no other route to send and none to accept."""
    require_tool("nix-instantiate")
    sys.path.insert(0, str(ROOT / "tests" / "nix"))
    import render_units

    venv = Path(sys.executable).parent.parent
    for nix_evpn, role_evpn in (
        ('asn = 65000; neighbors = [ "198.51.100.1" "198.51.100.2" ];',
         {"asn": 65000, "neighbors": ["198.51.100.1", "198.51.100.2"]}),
        ('asn = 4200000001; neighbors = [ "2001:db8::1" ]; remoteAs = "external"; routerId = "192.0.2.9";'
         ' keepalive = 3; hold = 9; rd = "192.0.2.9:4711"; routeTarget = "64999:4711";',
         {"asn": 4200000001, "neighbors": ["2001:db8::1"], "remote_as": "external", "router_id": "192.0.2.9",
          "keepalive": 3, "hold": 9, "rd": "192.0.2.9:4711", "route_target": "64999:4711"}),
    ):
        nix = render_units.evaluate(
            '{ services.ixpect = { enable = true; capture.vxlan = { vni = 4711; localAddress = "198.51.100.7"; };'
            f' evpn = {{ enable = true; {nix_evpn} }}; }}; }}', str(venv))
        module = render_units.build(nix["frr"]["configFile"], tmp_path).read_text()
        role = role_render(tmp_path / f"role-{role_evpn['asn']}", ixpect_capture_vxlan_vni=4711,
                           ixpect_capture_vxlan_local="198.51.100.7",
                           ixpect_evpn=role_evpn | {"hostname": "ixpect"})["frr.conf"].read_text()
        assert module == role
        lines = role.splitlines()
        for neighbor in role_evpn["neighbors"]:
            assert [line.strip() for line in lines if line.strip().startswith(f"neighbor {neighbor} ")] == [
                f"neighbor {neighbor} remote-as {role_evpn.get('remote_as', 'internal')}",
                f"neighbor {neighbor} activate",
                f"neighbor {neighbor} route-map IXPECT-EVPN-IN in",
                f"neighbor {neighbor} route-map IXPECT-EVPN-OUT out"]
        assert ("   rd 192.0.2.9:4711" in lines) == ("rd" in role_evpn)
        assert ("vni 4711" in role) == ("rd" in role_evpn)
        assert "redistribute" not in role and "network " not in role and "advertise-" not in role.replace(
            "advertise-all-vni", "")


@pytest.fixture
def host_ns():
    """A namespace standing in for the monitor host, IPv6 on as on most hosts."""
    name = f"ixe-host-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_evpn_up_is_idempotent_and_refuses_what_it_cannot_do(host_ns):
    def evpn(*argv):
        return subprocess.run(["ip", "netns", "exec", host_ns, *IXPECT, "evpn", *map(str, argv)],
                              capture_output=True, text=True)

    sh("ip", "link", "add", "vxlan8", "type", "vxlan", "id", 8, "local", MON_IP, "dstport", 4789, ns=host_ns)
    for _ in range(2):
        assert evpn("up", "--vni", 100, "--vni", 16777215, "--local", MON_IP).returncode == 0
    links = {link["ifname"]: link for link in json.loads(sh("ip", "-d", "-j", "link", "show", ns=host_ns))}
    addrs = {link["ifname"]: link["addr_info"] for link in json.loads(sh("ip", "-j", "addr", "show", ns=host_ns))}
    for vni in (100, 16777215):
        vxlan, bridge = links[f"evpn{vni}"], links[f"evpnbr{vni}"]
        data = vxlan["linkinfo"]["info_data"]
        assert (data["id"], data["local"], data["port"], data["learning"]) == (vni, MON_IP, 4788, False)
        assert vxlan["master"] == f"evpnbr{vni}" and "UP" in vxlan["flags"] and "NOARP" in vxlan["flags"]
        assert "UP" not in bridge["flags"] and "NOARP" in bridge["flags"]
        assert addrs[f"evpn{vni}"] == [] == addrs[f"evpnbr{vni}"]  # no IPv6 link-local either
    for argv, message in (
        (("up", "--vni", 100, "--local", "10.77.0.3"), "evpn100 exists with VTEP 10.77.0.2, not 10.77.0.3"),
        (("up", "--vni", 16777216, "--local", MON_IP), "VNI 16777216 is outside 0..16777215"),
        (("up", "--vni", 7, "--local", "not-an-address"), "does not appear to be an IPv4 or IPv6 address"),
        (("up", "--vni", 7), "evpn up needs --local"),
        (("up", "--vni", 8, "--local", MON_IP, "--port", 4789),
         "the kernel has a vxlan device with VNI 8 on UDP port 4789 already (the capture's?)"),
    ):
        done = evpn(*argv)
        assert done.returncode == 1 and message in done.stderr, done.stderr
    for _ in range(2):
        assert evpn("down", "--vni", 100, "--vni", 16777215).returncode == 0
    assert [link["ifname"] for link in json.loads(sh("ip", "-j", "link", "show", ns=host_ns))] == ["lo", "vxlan8"]
