"""IP addresses already in canonical text form (as ipaddress writes them), recognised at
C speed: a rendered config and member table hold thousands, and ipaddress takes some
microseconds to parse and rewrite each. Anything else is left to ipaddress."""

from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_ntop, inet_pton


def canonical_packed(text: str, version: int) -> bytes | None:
    """The packed address if `text` is an IPv`version` address written exactly as
    `str(ipaddress.ip_address(text))` would write it, else None (it may still be an
    address in another spelling). inet_ntop writes IPv4-mapped and -compatible IPv6
    addresses with a dotted tail, which ipaddress does not: those are never canonical here."""
    family = AF_INET if version == 4 else AF_INET6
    try:
        packed = inet_pton(family, text)
    except (OSError, ValueError):  # not an address, or a NUL or surrogate in it
        return None
    return packed if inet_ntop(family, packed) == text and (version == 4 or "." not in text) else None
