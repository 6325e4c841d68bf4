"""ipv6_router: members are routers that must neither advertise nor solicit routers on the LAN."""

from ipaddress import IPv6Address

from ixpect.decode import ND_RA, ND_RS
from ixpect.events import mac
from ixpect.probes import Probe

_EVENTS = {ND_RA: "IPV6_ROUTER_ADVERTISEMENT", ND_RS: "IPV6_ROUTER_SOLICITATION"}


class Ipv6Router(Probe):
    decided_by = ()  # the ND message the decoder reads

    def nd(self, ts, buf, kind, src, target, lladdr) -> None:
        event = _EVENTS.get(kind)
        if event:
            self.emit(event, ts, {"mac_addr_source": mac(buf[6:12]),
                                  "ip6_addr_source": str(IPv6Address(src))}, buf)
