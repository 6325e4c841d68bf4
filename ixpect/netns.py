"""`ixpect netns up|down`: the isolated network namespace the capture interface lives in.

The capture interface must never send a frame into the peering LAN. Inside the
namespace it has no addresses, IPv6 is off (`disable_ipv6=1` for all, default and
the device, set before and after the move, so that not even a link-local address or
a DAD probe appears), ARP is off (IFF_NOARP) and it is promiscuous. A VxLAN feed is
a kernel vxlan device created in the host namespace, where its UDP socket stays,
and moved into the capture namespace under the name `vxlan<VNI>`.

Behind all that, an nftables netdev chain on the interface's egress hook drops
every frame with policy drop: whatever a process in the namespace writes to the
interface (a packet socket, with or without PACKET_QDISC_BYPASS) never reaches the
wire. It is installed before the interface comes up. `nft list table netdev ixpect`
(in the namespace) counts what was dropped.

Both actions are idempotent: `up` re-applies the settings to what is already
there, `down` tolerates a namespace or device that is already gone. A failed `up`
undoes what it did (a namespace it created is removed, an interface it moved goes
back). `down` takes a physical interface down before it leaves the namespace, so it
never comes back to the host up (and so never sends there either), with the ARP and
promiscuous flags it had before `up` (recorded under /run/ixpect-netns/).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
from contextlib import contextmanager, suppress
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from ixpect import logsetup

log = logging.getLogger(__name__)

IFF_PROMISC = 0x100
IFF_NOARP = 0x80
#: IFLA_INET6_ADDR_GEN_MODE "none": the kernel generates no link-local address
ADDR_GEN_MODE_NONE = 1
#: the nftables table (family netdev) of the egress drop, inside the namespace
EGRESS_TABLE = "ixpect"
#: flags of a physical interface before `up`, per namespace, for `down` to restore
FOUND_FLAGS = Path("/run/ixpect-netns")


def vxlan_name(vni: int) -> str:
    """The device name the NixOS module and the Ansible role pass to `capture --interface`."""
    return f"vxlan{vni}"


@contextmanager
def inside(name: str):
    """Run the body with this thread's network namespace set to `name`, which must
    exist: sockets opened and /proc/sys/net files written there belong to it."""
    with open("/proc/thread-self/ns/net") as back:
        netns.setns(name, flags=0)  # flags=0: never create it by accident
        try:
            yield
        finally:
            netns.setns(back.fileno(), flags=0)


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def _disable_ipv6(ns: str, ifname: str | None = None) -> None:
    """disable_ipv6=1 for all and default (and `ifname`) in namespace `ns`."""
    with inside(ns):
        for scope in ("all", "default", *([ifname] if ifname else [])):
            _sysctl(f"net.ipv6.conf.{scope}.disable_ipv6", "1")


def _find(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _nft(ns: str, script: str, *args: str) -> str:
    with inside(ns):
        try:
            done = subprocess.run(["nft", *args], input=script, capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError("nft not found: the egress drop needs nftables") from None
    if done.returncode:
        raise RuntimeError(f"nft {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _drop_egress(ns: str, ifname: str) -> None:
    """Replace (atomically, in one transaction) the netdev table holding the egress
    chain with policy drop on `ifname`; its one rule only counts."""
    if '"' in ifname:
        raise RuntimeError(f"{ifname!r}: an interface name nft cannot quote")
    _nft(ns, f"""table netdev {EGRESS_TABLE}
delete table netdev {EGRESS_TABLE}
table netdev {EGRESS_TABLE} {{
    chain egress {{
        type filter hook egress device "{ifname}" priority filter; policy drop;
        counter
    }}
}}
""", "-f", "-")
    chain = json.loads(_nft(ns, "", "-j", "list", "chain", "netdev", EGRESS_TABLE, "egress"))["nftables"]
    if not any(c.get("chain", {}).get("policy") == "drop" for c in chain):
        raise RuntimeError(f"{ifname} in {ns}: the egress drop did not take effect")


def _isolate(ns: str, ifname: str) -> None:
    """Inside `ns`: no addresses, IPv6 and ARP off, promiscuous, egress dropped, up.
    An interface that is already up stays up (`up` again re-applies it in place, so
    the switch port does not flap); one just moved in is still down."""
    _disable_ipv6(ns, ifname)
    with NetNS(ns) as ipr:
        idx = _find(ipr, ifname)
        for addr in ipr.get_addr(index=idx):
            ipr.addr("del", index=idx, address=addr.get_attr("IFA_ADDRESS"), prefixlen=addr["prefixlen"])
        try:
            ipr.link("set", index=idx, IFLA_AF_SPEC={"attrs": [("AF_INET6", {"attrs": [
                ("IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE)]})]})
        except NetlinkError as exc:  # IPv6 disabled on the whole host: nothing to generate
            log.debug("%s: cannot set addr_gen_mode: %s", ifname, exc)
        flags = IFF_PROMISC | IFF_NOARP
        ipr.link("set", index=idx, flags=flags, change=flags)
        _drop_egress(ns, ifname)
        ipr.link("set", index=idx, state="up")
        link = ipr.get_links(idx)[0]
        if link["flags"] & flags != flags or ipr.get_addr(index=idx):
            raise RuntimeError(f"{ifname} in {ns}: isolation did not take effect")


def up(name: str, interface: str | None = None, vni: int | None = None,
       local: str | None = None, port: int = 4789) -> str:
    """Create (or re-check) namespace `name` holding the capture interface; returns its name.
    On failure, what this call created or moved is undone and the error re-raised."""
    ifname = interface if interface is not None else vxlan_name(vni)
    created = name not in netns.listnetns()
    if created:
        netns.create(name)
        log.info("created network namespace %s", name)
    moved = False
    try:
        _disable_ipv6(name)  # before anything arrives in it
        with NetNS(name) as inner:
            present = _find(inner, ifname) is not None
        if not present:
            _move_in(name, ifname, interface, vni, local, port)
            moved = True
        _isolate(name, ifname)
    except BaseException:
        if created or moved:
            log.warning("netns up %s failed: undoing it", name)
            _undo(name, interface, vni, created)
        raise
    log.info("%s in %s: up, promiscuous, no ARP, no IPv6, no addresses, egress dropped", ifname, name)
    return ifname


def _move_in(name: str, ifname: str, interface: str | None, vni: int | None, local: str | None, port: int) -> None:
    """Move the interface (or a new vxlan device) from the host into namespace `name`, down."""
    with IPRoute() as ipr:
        idx = _find(ipr, ifname)
        if idx is None and interface is not None:
            raise RuntimeError(f"interface {interface} is neither in the host namespace nor in {name}")
        if idx is None:
            idx = _add_vxlan(ipr, ifname, vni, local, port)
        try:
            ipr.link("set", index=idx, state="down")
            if interface is not None:
                _record_flags(name, ipr.get_links(idx)[0]["flags"])
            ipr.link("set", index=idx, flags=IFF_NOARP, change=IFF_NOARP)
            ipr.link("set", index=idx, net_ns_fd=name)
        except BaseException:
            if interface is None:
                ipr.link("del", index=idx)
            raise
    log.info("moved %s into %s", ifname, name)


def _record_flags(name: str, flags: int) -> None:
    FOUND_FLAGS.mkdir(mode=0o755, exist_ok=True)
    (FOUND_FLAGS / name).write_text(json.dumps({"flags": flags & (IFF_NOARP | IFF_PROMISC)}))


def _found_flags(name: str) -> int:
    """The ARP and promiscuous flags recorded by `up`; without a record, a host's
    default (ARP on, not promiscuous)."""
    try:
        return json.loads((FOUND_FLAGS / name).read_text())["flags"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _undo(name: str, interface: str | None, vni: int | None, created: bool) -> None:
    """Best effort after a failed `up`: the whole namespace if it created it, else
    just the interface it moved in."""
    try:
        if created:
            down(name, interface, vni)
        else:
            with NetNS(name) as inner:
                _release(name, inner, interface, vni)
    except (RuntimeError, NetlinkError, OSError, ValueError) as exc:
        log.error("could not undo netns up %s: %s", name, exc)


def _add_vxlan(ipr, ifname: str, vni: int, local: str | None, port: int) -> int:
    if local is None:
        raise RuntimeError("--vxlan-vni needs --vxlan-local (the local VTEP address)")
    family = "vxlan_local6" if ipaddress.ip_address(local).version == 6 else "vxlan_local"
    ipr.link("add", ifname=ifname, kind="vxlan", vxlan_id=vni, vxlan_port=port,
             vxlan_learning=0, **{family: local})
    log.info("created %s (VNI %d, local %s, UDP port %d) in the host namespace", ifname, vni, local, port)
    return _find(ipr, ifname)


def _release(name: str, inner, interface: str | None, vni: int | None) -> None:
    """Take the capture interface down in namespace `name`: delete a vxlan device,
    hand a physical interface back to the host with the flags `up` found."""
    ifname = interface if interface is not None else vxlan_name(vni)
    idx = _find(inner, ifname)
    if idx is None:
        return
    inner.link("set", index=idx, state="down")
    if interface is None:
        inner.link("del", index=idx)
        log.info("deleted %s", ifname)
        return
    inner.link("set", index=idx, flags=_found_flags(name), change=IFF_PROMISC | IFF_NOARP)
    with open("/proc/self/ns/net") as host:
        inner.link("set", index=idx, net_ns_fd=host.fileno())
    (FOUND_FLAGS / name).unlink(missing_ok=True)
    with suppress(OSError):  # the last namespace gone: nothing left under /run
        FOUND_FLAGS.rmdir()
    log.info("returned %s to the host namespace, down", ifname)


def down(name: str, interface: str | None = None, vni: int | None = None) -> None:
    """Remove namespace `name`; a physical interface goes back to the host, down."""
    if name not in netns.listnetns():
        log.info("network namespace %s does not exist; nothing to do", name)
        return
    with NetNS(name) as inner:
        _release(name, inner, interface, vni)
    netns.remove(name)
    log.info("removed network namespace %s", name)


def main(args) -> int:
    logsetup.setup(args.log_level)
    if os.geteuid() != 0:
        log.warning("not running as root: netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN")
    try:
        if args.action == "up":
            up(args.name, args.interface, args.vxlan_vni, args.vxlan_local, args.vxlan_port)
        else:
            down(args.name, args.interface, args.vxlan_vni)
    except (RuntimeError, NetlinkError, OSError, ValueError) as exc:
        log.error("netns %s %s: %s", args.action, args.name, exc)
        return 1
    return 0
