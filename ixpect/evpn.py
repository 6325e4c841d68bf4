"""`ixpect evpn up|down`: the device that lets the host's FRR advertise the monitor's VTEP.

FRR originates the EVPN type-3 (IMET) route of a VNI only for a vxlan device that its
zebra sees up and enslaved to a bridge, in zebra's own namespace. The capture device
cannot be that device: it lives in the capture namespace, and zebra (FRR 8.4) ignores a
vxlan device whose UDP socket is in another namespace than its own; the kernel refuses a
second device with the same VNI, address and UDP port in one namespace.

So each monitored VNI gets an advertisement device in the host namespace: vxlan
`evpn<VNI>` with the VTEP address and VNI of the capture device, but its own UDP port,
enslaved to bridge `evpnbr<VNI>`, which stays down. It carries nothing: a down bridge
forwards no frame to or from its port, learning is off, ARP and IPv6 are off on both,
and the speaker installs nothing from the fabric into it (its inbound route-map denies
every route). Frames for the monitor arrive on the capture device's port.

Both actions are idempotent.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os

from pyroute2 import IPRoute, NetlinkError

from ixpect import logsetup
from ixpect.netns import ADDR_GEN_MODE_NONE, IFF_NOARP, _find, _sysctl

log = logging.getLogger(__name__)

#: UDP port of the advertisement device; it differs from the capture device's (4789)
#: only so that the kernel accepts both, nothing is ever sent to or from it.
ADVERTISE_PORT = 4788


def names(vni: int) -> tuple[str, str]:
    """(vxlan, bridge) device names of a VNI's advertisement device."""
    return f"evpn{vni}", f"evpnbr{vni}"


def _quiet(ipr: IPRoute, idx: int, ifname: str) -> None:
    """No ARP, no IPv6 address of any kind on the device."""
    ipr.link("set", index=idx, flags=IFF_NOARP, change=IFF_NOARP)
    try:
        _sysctl(f"net.ipv6.conf.{ifname}.disable_ipv6", "1")
        ipr.link("set", index=idx, IFLA_AF_SPEC={"attrs": [("AF_INET6", {"attrs": [
            ("IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE)]})]})
    except (OSError, NetlinkError) as exc:  # IPv6 disabled on the whole host
        log.debug("%s: IPv6 already off: %s", ifname, exc)


def up(vni: int, local: str, port: int = ADVERTISE_PORT) -> None:
    """Create (or re-check) the advertisement device of `vni` with VTEP address `local`."""
    if not 0 <= vni <= 0xFFFFFF:
        raise ValueError(f"VNI {vni} is outside 0..16777215")
    vxlan, bridge = names(vni)
    with IPRoute() as ipr:
        idx = _vxlan(ipr, vxlan, vni, local, port)
        br = _find(ipr, bridge)
        if br is None:
            # no STP: a down bridge sends no BPDU anyway, but nothing should ever try
            ipr.link("add", ifname=bridge, kind="bridge", br_stp_state=0)
            br = _find(ipr, bridge)
        ipr.link("set", index=br, state="down")
        _quiet(ipr, br, bridge)
        _quiet(ipr, idx, vxlan)
        ipr.link("set", index=idx, master=br)
        ipr.link("set", index=idx, state="up")
    log.info("%s in down bridge %s: FRR advertises VNI %d with VTEP %s", vxlan, bridge, vni, local)


def _vxlan(ipr: IPRoute, ifname: str, vni: int, local: str, port: int) -> int:
    """The index of vxlan device `ifname`, created if missing; an existing one must match."""
    idx = _find(ipr, ifname)
    if idx is not None:
        info = dict(ipr.get_links(idx)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")["attrs"])
        have = (info.get("IFLA_VXLAN_ID"), info.get("IFLA_VXLAN_LOCAL") or info.get("IFLA_VXLAN_LOCAL6"))
        if have != (vni, str(ipaddress.ip_address(local))):
            raise RuntimeError(f"{ifname} exists with VTEP {have[1]}, not {local}; "
                               f"run `ixpect evpn down --vni {vni}` first")
        return idx
    family = "vxlan_local6" if ipaddress.ip_address(local).version == 6 else "vxlan_local"
    try:
        ipr.link("add", ifname=ifname, kind="vxlan", vxlan_id=vni, vxlan_port=port,
                 vxlan_learning=0, **{family: local})
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
        raise RuntimeError(f"the kernel has a vxlan device with VNI {vni} on UDP port {port} "
                           "already (the capture's?): choose another --port") from None
    log.info("created %s (VNI %d, VTEP %s, UDP port %d)", ifname, vni, local, port)
    return _find(ipr, ifname)


def down(vni: int) -> None:
    """Remove the advertisement device of `vni`; FRR withdraws the route."""
    with IPRoute() as ipr:
        for ifname in names(vni):
            idx = _find(ipr, ifname)
            if idx is not None:
                ipr.link("del", index=idx)
                log.info("deleted %s", ifname)


def main(args) -> int:
    logsetup.setup(args.log_level)
    if os.geteuid() != 0:
        log.warning("not running as root: evpn needs CAP_NET_ADMIN")
    if args.action == "up" and not args.local:
        log.error("evpn up needs --local (the VTEP address of the capture device)")
        return 1
    try:
        for vni in args.vni:
            if args.action == "up":
                up(vni, args.local, args.port or ADVERTISE_PORT)
            else:
                down(vni)
    except (RuntimeError, NetlinkError, OSError, ValueError) as exc:
        log.error("evpn %s: %s", args.action, exc)
        return 1
    return 0
