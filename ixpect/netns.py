"""`ixpect netns up|down`: the isolated network namespace the capture interface lives in.

The capture interface must never send a frame into the peering LAN. Inside the
namespace it has no addresses, IPv6 is off (`disable_ipv6=1` for all, default and
the device, set before and after the move, so that not even a link-local address or
a DAD probe appears), ARP is off (IFF_NOARP) and it is promiscuous. A VxLAN feed is
a kernel vxlan device created in the host namespace, where its UDP socket stays,
and moved into the capture namespace under the name `vxlan<VNI>`.

Both actions are idempotent: `up` re-applies the settings to what is already
there, `down` tolerates a namespace or device that is already gone. `down` takes
a physical interface down before it leaves the namespace, so it never comes back
to the host up (and so never sends there either).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from contextlib import contextmanager

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from ixpect import logsetup

log = logging.getLogger(__name__)

IFF_PROMISC = 0x100
IFF_NOARP = 0x80
#: IFLA_INET6_ADDR_GEN_MODE "none": the kernel generates no link-local address
ADDR_GEN_MODE_NONE = 1


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


def _isolate(ns: str, ifname: str) -> None:
    """Inside `ns`: no addresses, IPv6 and ARP off, promiscuous, up."""
    _disable_ipv6(ns, ifname)
    with NetNS(ns) as ipr:
        idx = _find(ipr, ifname)
        ipr.link("set", index=idx, state="down")
        for addr in ipr.get_addr(index=idx):
            ipr.addr("del", index=idx, address=addr.get_attr("IFA_ADDRESS"), prefixlen=addr["prefixlen"])
        try:
            ipr.link("set", index=idx, IFLA_AF_SPEC={"attrs": [("AF_INET6", {"attrs": [
                ("IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE)]})]})
        except NetlinkError as exc:  # IPv6 disabled on the whole host: nothing to generate
            log.debug("%s: cannot set addr_gen_mode: %s", ifname, exc)
        flags = IFF_PROMISC | IFF_NOARP
        ipr.link("set", index=idx, flags=flags, change=flags)
        ipr.link("set", index=idx, state="up")
        link = ipr.get_links(idx)[0]
        if link["flags"] & flags != flags or ipr.get_addr(index=idx):
            raise RuntimeError(f"{ifname} in {ns}: isolation did not take effect")


def up(name: str, interface: str | None = None, vni: int | None = None,
       local: str | None = None, port: int = 4789) -> str:
    """Create (or re-check) namespace `name` holding the capture interface; returns its name."""
    if name not in netns.listnetns():
        netns.create(name)
        log.info("created network namespace %s", name)
    _disable_ipv6(name)  # before anything arrives in it
    ifname = interface if interface is not None else vxlan_name(vni)
    with NetNS(name) as inner:
        present = _find(inner, ifname) is not None
    if not present:
        with IPRoute() as ipr:
            idx = _find(ipr, ifname)
            if idx is None and interface is not None:
                raise RuntimeError(f"interface {interface} is neither in the host namespace nor in {name}")
            if idx is None:
                idx = _add_vxlan(ipr, ifname, vni, local, port)
            ipr.link("set", index=idx, state="down")
            flags = IFF_NOARP
            ipr.link("set", index=idx, flags=flags, change=flags)
            ipr.link("set", index=idx, net_ns_fd=name)
        log.info("moved %s into %s", ifname, name)
    _isolate(name, ifname)
    log.info("%s in %s: up, promiscuous, no ARP, no IPv6, no addresses", ifname, name)
    return ifname


def _add_vxlan(ipr, ifname: str, vni: int, local: str | None, port: int) -> int:
    if local is None:
        raise RuntimeError("--vxlan-vni needs --vxlan-local (the local VTEP address)")
    family = "vxlan_local6" if ipaddress.ip_address(local).version == 6 else "vxlan_local"
    ipr.link("add", ifname=ifname, kind="vxlan", vxlan_id=vni, vxlan_port=port,
             vxlan_learning=0, **{family: local})
    log.info("created %s (VNI %d, local %s, UDP port %d) in the host namespace", ifname, vni, local, port)
    return _find(ipr, ifname)


def down(name: str, interface: str | None = None, vni: int | None = None) -> None:
    """Remove namespace `name`; a physical interface goes back to the host, down."""
    if name not in netns.listnetns():
        log.info("network namespace %s does not exist; nothing to do", name)
        return
    ifname = interface if interface is not None else vxlan_name(vni)
    with NetNS(name) as inner:
        idx = _find(inner, ifname)
        if idx is not None:
            inner.link("set", index=idx, state="down")
            if interface is None:
                inner.link("del", index=idx)
                log.info("deleted %s", ifname)
            else:
                inner.link("set", index=idx, flags=0, change=IFF_PROMISC)
                with open("/proc/self/ns/net") as host:
                    inner.link("set", index=idx, net_ns_fd=host.fileno())
                log.info("returned %s to the host namespace, down", ifname)
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
