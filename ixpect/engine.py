"""The per-frame path: decode each frame once, dispatch it to the probes that want it.

Dispatch is a table from EtherType to the handlers of that type, built once per
configuration, so a frame costs one dict lookup plus the work of its own probes.
Frames and bytes are counted per EtherType class (one more lookup, two additions)
for the metrics.

Most of a peering LAN's broadcast is the same few hundred ARP requests over and
over. Where every probe a frame reaches declares which bytes decide its verdict
(Probe.decided_by), a frame they all let pass puts those bytes into a sieve, and
later frames alike in them are counted and dropped in C before any Python runs
(ixpect._frames.Sieve): the steady state of an ARP-only monitor costs a hash
lookup per frame. Probes that count frames (Probe.sifted) get the sieve's tallies
of what it dropped before their timers run, and count each source's first frame of a
window themselves, without the other probes.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Callable, Iterable

from ixpect import decode
from ixpect._frames import MAX_RULES, Sieve
from ixpect.decode import (ETH_ARP, ETH_IPV4, ETH_IPV6, ICMPV6, IPV6_EXTENSIONS, LLC, ND_NS, UDP, VLAN_TPIDS,
                           Malformed)
from ixpect.events import Event, mac
from ixpect.members import MemberTable
from ixpect.probes import DESTINATION_CLASS, HANDLERS, Probe, probe_class

log = logging.getLogger(__name__)

Sink = Callable[[Event], None]

#: EtherType -> class in the metrics; everything else is "other"
CLASSES = {ETH_ARP: "arp", ETH_IPV4: "ipv4", ETH_IPV6: "ipv6", LLC: "llc"}


#: Packets of a decoded EtherType the sieve may take (ixpect._frames.Sieve): `what` they
#: are (for the log), the handler `kinds` they reach, their `min_len`, the bytes the
#: decoder `reads` of them, their `length` field (its offset and base: where they end),
#: and for `ip` ones, by the IP header, the packet whole within the frame: (offset and
#: accepted values of the version byte, offset of the protocol number, of the payload,
#: and either None: any protocol whose payload no probe reads, but those the decoder
#: reads itself (`never`); or one protocol, by the payload bytes the probes declare).
#: `shape`: (offset, accepted values) of bytes that must hold for the rule to take a packet
_Rule = namedtuple("_Rule", "what kinds min_len reads length ip never shape", defaults=((), (), frozenset(), ()))


#: decoded EtherTypes the sieve may take, with what the decoder reads to tell whether
#: the probes get the frame: Ethernet/IPv4 ARP; the neighbor solicitation as routers
#: send it (hop limit and the rest of its header read, a source link-layer address
#: option and nothing else), of which the decoder's readers read neither the target
#: nor the destination address, which follows from the target: a probe that judges the
#: target declares it (Probe.decided_apart), so that the sieve learns the routers
#: apart from the targets they ask for; other IPv6 packets that end within 86 bytes
#: (54 + the payload length at 18), all of them: an NA with its link-layer address
#: option, an NS of another shape, RS and RA; and IPv4 (without options) and IPv6
#: (without extension headers) packets by their addresses and protocol, those whose
#: payload no probe reads (TCP transit, ...) and UDP by the bytes the probes read of
#: it (ports): the sieve takes them whole within the frame (with a UDP header), so
#: that the decoder finds nothing wrong with their length
_IP4, _IP6 = ((14, 15), (20, 22), (23, 24), (26, 34)), ((20, 21), (22, 54))
_SIEVED_DECODERS = {
    ETH_ARP: (_Rule("frames", ("arp",), 42, ((14, 20),)),),
    ETH_IPV6: (_Rule("neighbor solicitations", ("ip6", "nd"), 86, ((14, 15), (18, 38), (54, 55), (78, 86)), (18, 54),
                     shape=((18, (0,)), (19, (32,)), (20, (ICMPV6,)), (54, (ND_NS,)), (78, (1,)), (79, (1,)))),
               _Rule("NS/NA-sized packets", ("ip6", "nd"), 86, ((14, 86),), (18, 54)),
               _Rule("transit packets", ("ip6",), 54, _IP6, (18, 54), (14, range(0x60, 0x70), 20, 54, None),
                     IPV6_EXTENSIONS | {ICMPV6}),
               _Rule("UDP datagrams", ("ip6",), 62, _IP6, (18, 54), (14, range(0x60, 0x70), 20, 54, UDP))),
    ETH_IPV4: (_Rule("transit packets", ("ipv4",), 34, _IP4, (16, 14), (14, (0x45,), 23, 34, None)),
               _Rule("UDP datagrams", ("ipv4",), 42, _IP4, (16, 14), (14, (0x45,), 23, 34, UDP))),
}
#: an EtherType no decoder reads: the probes' bytes decide
_PLAIN = (_Rule("frames", (), 14, ()),)
#: fingerprints the sieve keeps per rule: room for a large LAN's routers, the addresses
#: they ask for (ARP requests and NS are learned by sender and by target apart) and
#: the pairs of them that reply by unicast. When they fill up it starts over, unless
#: they saved fewer frames than there are of them: then the packets are too varied
#: (made-up addresses), teaching would cost more than it saves, and they all run the
#: probes until the next reconfiguration.
SIEVE_LIMIT = 1 << 18
#: the snaplen of a source that never cuts frames short
_UNCUT = float("inf")


class Engine:
    def __init__(self, probes_cfg: dict, sink: Sink, members: MemberTable | None = None,
                 timers: tuple = ()):
        """`timers` are further objects with a frame-time `deadline` and `tick(now)`,
        such as the event collector, driven by the same clock as the probes."""
        self.sink = sink
        self.members = members or MemberTable()
        self.timers = timers
        self.probes: dict[str, Probe] = {}
        self.now = 0.0
        self._frames = 0  # frames the Python loop saw; the sieve counts its own
        self._traffic = {et: [0, 0] for et in CLASSES}  # frames, bytes
        self._other_traffic = [0, 0]
        self._sieve: Sieve | None = None
        self._sifted_to: tuple = ()  # the sifted() of the counting probes
        self._counting: tuple = ()  # their frame()
        self.unsieved: set[int] = set()  # EtherTypes the sieve gave up until the next configure
        self.forgets = 0  # times a probe made the sieve forget all it was taught (recheck)
        self._spoke = False  # an event was raised since the last frame the sieve could learn
        self.snaplen = _UNCUT  # of the source being fed
        self.configure(probes_cfg)

    def configure(self, probes_cfg: dict, members: MemberTable | None = None) -> None:
        """Apply a (new) probe configuration; probes that stay enabled keep what they learned."""
        self._tally()  # to the probes as they were configured when the frames came
        if members is not None:
            self.members = members
        enabled = {name: cfg for name, cfg in probes_cfg.items() if cfg.get("enable")}
        for name in list(self.probes):
            if name not in enabled:
                del self.probes[name]
        for name, cfg in enabled.items():
            if name in self.probes:
                self.probes[name].reconfigure(cfg, self.members)
            else:
                self.probes[name] = probe_class(name)(cfg, self.emit, self.members)
                self.probes[name].recheck = self._recheck
                self.probes[name].watch = self._watch
                self.probes[name].recount = self._recount
        self._build_dispatch()

    def _build_dispatch(self) -> None:
        by_kind = {kind: tuple(getattr(p, kind) for p in self.probes.values() if hasattr(p, kind))
                   for kind in HANDLERS}
        self._every = by_kind["frame"]
        self._sifted_to = tuple(p.sifted for p in self.probes.values() if hasattr(p, "sifted"))
        self._counting = tuple(p.frame for p in self.probes.values() if hasattr(p, "sifted"))
        self._arp_probes = by_kind["arp"]
        self._nd_probes = by_kind["nd"]
        self._ip4_probes = by_kind["ipv4"]
        self._ip6_probes = by_kind["ip6"]
        self._llc_probes = by_kind["llc"]
        decoders = ((ETH_ARP, self._arp, self._arp_probes), (ETH_IPV4, self._ipv4, self._ip4_probes),
                    (ETH_IPV6, self._ipv6, self._nd_probes + self._ip6_probes), (LLC, self._llc, self._llc_probes))
        table = {et: (decoder,) for et, decoder, wanted in decoders if wanted}
        for h in by_kind["ether"]:
            for et in h.__self__.ether_types:
                table[et] = table.get(et, ()) + (h,)
        self._default: tuple = ()
        allowed = None
        if by_kind["other"]:
            self._default = tuple(self._other(h) for h in by_kind["other"])
            allowed = frozenset().union(*(p.allowed for p in self.probes.values() if hasattr(p, "other")))
            table = {et: hs + (() if et in allowed else self._default) for et, hs in table.items()}
            for et in allowed:
                table.setdefault(et, ())
        self._table = table
        self._timers = (*self.probes.values(), *self.timers)
        self._build_sieve(table, {et for et, _, wanted in decoders if wanted}, allowed)
        self._set_deadline(min(t.deadline for t in self._timers) if self._timers else float("inf"))

    def _build_sieve(self, table: dict, decoded: set, allowed: frozenset | None) -> None:
        """A sieve for the packets whose every probe declares what decides its verdict
        (and whose decoder, if any, the sieve knows); each such EtherType's handlers end
        with one that teaches the sieve the frames they all let pass."""
        self._fold_sieve()
        self.unsieved = set()
        self._sieve_rules: dict[int, tuple[str, ...]] = {}  # what each rule of the sieve takes
        spec = {}
        for et, handlers in table.items():
            if et < 0x0600 or et in VLAN_TPIDS:
                continue
            rules = [(rule.what, r) for rule in (_SIEVED_DECODERS.get(et, ()) if et in decoded else _PLAIN)
                     if (r := self._sieve_rule(et, rule, allowed))]
            rules = rules[:MAX_RULES - sum(map(len, spec.values()))]  # beyond: run the probes
            if rules:
                self._sieve_rules[et] = tuple(what for what, _ in rules)
                spec[et] = [r for _, r in rules]
                table[et] = handlers + (self._teach,)
        tally = bool(self._sifted_to)
        self._sieve = Sieve(spec, SIEVE_LIMIT, tally, self._first_of_source if tally else None) if spec else None

    def _sieve_rule(self, et: int, rule: _Rule, allowed: frozenset | None) -> tuple | None:
        """The Sieve's rule for these packets, if every probe they reach declares its
        bytes (and, for transit, the protocols whose payload it reads)."""
        ranges, apart, carried = list(rule.reads), [], set(rule.never)
        payload_at, protocol = rule.ip[3:] if rule.ip else (0, None)
        for p in self.probes.values():
            kinds = [k for k in ("frame", *rule.kinds) if hasattr(p, k)]
            if hasattr(p, "ether") and et in p.ether_types:
                kinds.append("ether")
            if allowed is not None and et not in allowed and hasattr(p, "other"):
                kinds.append("other")
            if not kinds:
                continue
            if p.decided_by is None:
                return None
            by_kind = p.decided_by if isinstance(p.decided_by, dict) else dict.fromkeys(kinds, p.decided_by)
            ranges += (r for k in kinds for r in by_kind[k])
            apart += p.decided_apart
            for k in set(kinds) & set(rule.ip and rule.kinds):
                read = p.payload_of[k] if p.payload_of is not None else None
                decide = read.get(protocol, ()) if read is not None else None  # () for a payload not read
                if decide is None:
                    return None
                carried |= read.keys()
                ranges += ((payload_at + a, payload_at + b) for a, b in decide)
        ranges, apart = _merged(ranges), _merged(apart)
        min_len = max((rule.min_len, *(b for _, b in ranges + apart)))
        guards = tuple((at, _bitmap(values)) for at, values in rule.shape)
        if not rule.ip:
            return (min_len, ranges, *(rule.length or (-1, 0)), False, guards, apart)
        version_at, versions, proto_at = rule.ip[:3]
        protocols = set(range(256)) - carried if protocol is None else {protocol}
        guards += ((version_at, _bitmap(versions)), (proto_at, _bitmap(protocols)))
        return (min_len, ranges, *rule.length, True, guards, apart)

    def _teach(self, ts: float, buf: bytes, off: int, et: int) -> None:
        """The last handler of a sieved EtherType: a frame no probe spoke up about
        teaches the sieve; once the sieve gave up every rule of the EtherType, this
        handler goes."""
        if self._spoke:
            self._spoke = False
        elif not self._sieve.teach(buf):
            self.unsieved.add(et)
            given_up = [i for t, i in self._sieve.given_up() if t == et]
            if len(given_up) == len(self._sieve_rules[et]):
                self._table[et] = self._table[et][:-1]
            log.warning("EtherType 0x%04x varies too much to sieve (made-up addresses?): its %s run the probes "
                        "until the next reload (ixpect_sieve_given_up)", et,
                        " and ".join(self._sieve_rules[et][i] for i in given_up))

    def _first_of_source(self, ts: float, buf: bytes) -> bool:
        """A frame the sieve found quiet, the first of its source since the counting
        probes' window began: they count it themselves, as they would have (their
        tables fill in frame order), and no other probe runs. True if they stayed
        quiet: the sieve then tallies the source's later frames."""
        spoke, self._spoke = self._spoke, False
        try:
            for h in self._counting:
                h(ts, buf)
        except Exception:  # as in feed(): a probe bug must not take the monitor down
            log.exception("error counting a sieved frame; frame skipped")
            self.bad_packet(ts, buf, "internal error while processing the frame")
        quiet = not self._spoke
        self._spoke = spoke
        return quiet

    def _recheck(self) -> None:
        """A probe's verdicts are not final for now (Probe.recheck): the sieve forgets
        what it was taught, and is not taught the frame at hand."""
        self._spoke = True
        if self._sieve is not None:
            self._sieve.forget()
            self.forgets += 1

    def _watch(self) -> None:
        """The frame at hand is not to be sieved (Probe.watch)."""
        self._spoke = True

    def _tally(self) -> None:
        """Give the counting probes what the sieve dropped since the last time."""
        if self._sieve is not None and self._sifted_to:
            for source, n in self._sieve.tallies():
                for h in self._sifted_to:
                    h(source, n)

    def _recount(self) -> None:
        """A counting probe's window starts (Probe.recount)."""
        if self._sieve is not None:
            self._sieve.recount()

    def _fold_sieve(self) -> None:
        """Take over the counts of the sieve about to be replaced."""
        for et, (n, size) in self._sifted().items():
            c = self._traffic.get(et, self._other_traffic)
            c[0] += n
            c[1] += size
            self._frames += n
        self._sieve = None

    def _sifted(self) -> dict[int, tuple[int, int]]:
        return self._sieve.counts() if self._sieve is not None else {}

    def _set_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        if self._sieve is not None:  # frames from then on must reach tick()
            self._sieve.deadline = deadline

    @staticmethod
    def _other(handler):
        return lambda ts, buf, off, et: handler(ts, buf, et)

    def feed(self, frames: Iterable[tuple[float, bytes]]) -> None:
        """Run every frame through the probes. Never raises for a frame's content.
        A capture's `snaplen` attribute, if any, tells which frames it may have cut
        short: the probes judge what was captured of them, and what is missing does
        not make them malformed."""
        self.snaplen = getattr(frames, "snaplen", 0) or _UNCUT
        every, get, default = self._every, self._table.get, self._default
        count, other = self._traffic.get, self._other_traffic
        ethernet, tagged = decode.ethernet, decode.VLAN_TPIDS
        sieve = self._sieve
        n = 0
        ts = self.now
        try:
            for ts, buf in sieve.over(frames) if sieve is not None else frames:
                n += 1
                if ts >= self.deadline:
                    self.tick(ts)
                try:
                    size = len(buf)
                    et = buf[12] << 8 | buf[13] if size >= 14 else 0
                    if et < 0x0600 or et in tagged:  # not plain Ethernet II: the full decoder
                        et, off = ethernet(buf)
                    else:
                        off = 14
                    c = count(et, other)
                    c[0] += 1
                    c[1] += size
                    for h in every:
                        h(ts, buf)
                    for h in get(et, default):
                        h(ts, buf, off, et)
                except Malformed as bad:
                    if len(buf) < self.snaplen:
                        self.bad_packet(ts, buf, bad.reason)
                except Exception:  # a probe bug must not take the monitor down
                    log.exception("error processing frame %d; frame skipped", self.frames + n)
                    self.bad_packet(ts, buf, "internal error while processing the frame")
        finally:  # also when the source fails half-way
            self._frames += n
            self.now = max(ts, sieve.last) if sieve is not None else ts

    @property
    def frames(self) -> int:
        """Frames seen, sieved ones included."""
        return self._frames + sum(n for n, _ in self._sifted().values())

    def traffic(self) -> dict[str, tuple[int, int]]:
        """(frames, bytes) by EtherType class, sieved frames included."""
        out = {CLASSES[et]: tuple(c) for et, c in self._traffic.items()}
        out["other"] = tuple(self._other_traffic)
        for et, (n, size) in self._sifted().items():
            cls = CLASSES.get(et, "other")
            out[cls] = (out[cls][0] + n, out[cls][1] + size)
        return out

    def _arp(self, ts: float, buf: bytes, off: int, et: int) -> None:
        fields = decode.arp(buf, off)
        if fields is not None:
            op, sha, spa, tha, tpa = fields  # once: a star-call per probe costs as much as the probe
            for h in self._arp_probes:
                h(ts, buf, op, sha, spa, tha, tpa)

    def _ipv4(self, ts: float, buf: bytes, off: int, et: int) -> None:
        src, dst, proto, p, end = decode.ipv4(buf, off, self.snaplen)
        for h in self._ip4_probes:
            h(ts, buf, src, dst, proto, p, end)

    def _ipv6(self, ts: float, buf: bytes, off: int, et: int) -> None:
        src, dst, hlim, proto, p, end = decode.ipv6(buf, off, self.snaplen)
        for h in self._ip6_probes:
            h(ts, buf, src, dst, proto, p, end)
        if proto != ICMPV6 or p == end or not self._nd_probes:
            return
        kind, target, lladdr = decode.nd(buf, p, end)
        if kind:
            if hlim != 255:
                raise Malformed(f"ICMPv6 type {kind} with hop limit {hlim} (RFC 4861 requires 255)")
            for h in self._nd_probes:
                h(ts, buf, kind, src, target, lladdr)

    def _llc(self, ts: float, buf: bytes, off: int, et: int) -> None:
        dsap, ssap, ctrl, snap = decode.llc(buf, off)
        for h in self._llc_probes:
            h(ts, buf, off, dsap, ssap, ctrl, snap)

    def bad_packet(self, ts: float, buf: bytes, reason: str) -> None:
        data = {"mac_addr_source": mac(buf[6:12])} if len(buf) >= 12 else {}
        data["reason"] = reason
        self.emit("IXPECT_BAD_PACKET", ts, data, buf)

    def emit(self, type_: str, ts: float, data: dict, frame: bytes | None) -> None:
        self._spoke = True
        self.sink(Event(type_, ts, data, frame, *self.members.name(data)))
        for t in self.timers:  # an event may open a collection window
            if t.deadline < self.deadline:
                self._set_deadline(t.deadline)

    def tick(self, now: float) -> None:
        self._tally()
        for t in self._timers:
            if now >= t.deadline:
                t.tick(now)
        self._set_deadline(min(t.deadline for t in self._timers) if self._timers else float("inf"))

    def flush(self) -> None:
        """End of input: probes report their windows in progress (at the last frame's time)."""
        self._tally()
        for p in self.probes.values():
            p.flush(self.now)


def _bitmap(values) -> bytes:
    """A bit per byte value, set for `values` (a Sieve guard)."""
    bits = bytearray(32)
    for v in values:
        bits[v >> 3] |= 1 << (v & 7)
    return bytes(bits)


def _merged(ranges) -> tuple[tuple[int, int], ...]:
    """Byte ranges sorted, overlapping and adjacent ones joined; DESTINATION_CLASS
    first, unless the destination MAC is among them in full."""
    out: list[list[int]] = []
    ranges = set(ranges)
    by_class = DESTINATION_CLASS in ranges
    for a, b in sorted(ranges - {DESTINATION_CLASS}):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    if by_class and not (out and out[0][0] == 0 and out[0][1] >= 6):
        out.insert(0, list(DESTINATION_CLASS))
    return tuple((a, b) for a, b in out)
