#!/usr/bin/env python3
"""Where a replayed frame's CPU time goes: start-up, reading, dispatch, decoding, probes.

Differential measurements in one process (median of RUNS, process CPU time), per
case of run.py's captures:

    start-up   importing ixpect's run path and loading the config (static tables)
    read       iterating the pcap file (ixpect.pcap.frames), frames discarded
    dispatch   Engine.feed over frames already in memory, with every probe handler
               replaced by a no-op and the decoders bypassed: the loop, the
               EtherType lookup, the frame-level handler calls
    decode     the same, with the engine's decoders (ARP, IPv4, IPv6, ND, LLC) on,
               minus dispatch
    probes     the real probes, minus the above
These four stages are measured without the sieve (ixpect.engine), as every frame it
lets through runs (the first frame of each router pair and of each flow); the last
line is the same frames through the engine as `ixpect run` builds it, sieve included,
whose events must be those of the engine without the sieve (the script fails
otherwise).

usage: profile.py [--runs N] [--out DIR] [CASE...]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import MethodType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ixpect.config import load_with_members  # noqa: E402
from ixpect.engine import Engine  # noqa: E402
from ixpect.pcap import frames  # noqa: E402
from ixpect.probes import HANDLERS  # noqa: E402


def cpu(fn, runs: int) -> float:
    """Median CPU seconds of fn() (garbage collection as in a real run)."""
    samples = []
    for _ in range(runs):
        gc.collect()
        t = time.process_time()
        fn()
        samples.append(time.process_time() - t)
    return statistics.median(samples)


def startup(conf: Path, runs: int) -> float:
    """Median CPU of a fresh interpreter importing the run path and loading the config."""
    code = ("import ixpect.config, ixpect.daemon, ixpect.engine, ixpect.probes.neighbor, sys;"
            "ixpect.config.load_with_members(sys.argv[1])")
    samples = []
    for _ in range(runs):
        pid = os.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, "-c", code, str(conf)])
        _, _, usage = os.wait4(pid, 0)
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


class Unsieved(Engine):
    def _build_sieve(self, *args) -> None:
        """No sieve: every frame takes the Python path."""


def hollow(engine: Engine, decoders: bool) -> Engine:
    """The engine with no-op probe handlers; without `decoders`, the decoding
    handlers of the dispatch table are no-ops too."""
    noop = lambda *a: None  # noqa: E731
    for probe in engine.probes.values():
        for kind in HANDLERS:
            if hasattr(probe, kind):
                setattr(probe, kind, MethodType(noop, probe))  # bound: dispatch reads ether_types off it
    engine._build_dispatch()
    if not decoders:
        engine._table = {et: tuple(noop for _ in hs) for et, hs in engine._table.items()}
    return engine


def events(engine: type[Engine], probes: dict, members, held: list) -> list[tuple]:
    """What the engine reports for the frames, to the end of the input."""
    out = []
    e = engine(probes, lambda ev: out.append((ev.type, ev.timestamp, ev.data, ev.frame)), members)
    e.feed(held)
    e.flush()
    return out


def profile(case: str, out: Path, runs: int) -> None:
    conf, pcap = out / f"{case}.conf.yaml", out / f"{case}.pcap"
    cfg, members = load_with_members(str(conf))
    probes = cfg["probes"]
    start = startup(conf, runs)
    read = cpu(lambda: sum(1 for _ in frames(pcap)), runs)
    held = list(frames(pcap))
    n = len(held)
    sink = lambda ev: None  # noqa: E731
    dispatch = cpu(lambda: hollow(Unsieved(probes, sink, members), decoders=False).feed(held), runs)
    decoded = cpu(lambda: hollow(Unsieved(probes, sink, members), decoders=True).feed(held), runs)
    full = cpu(lambda: Unsieved(probes, sink, members).feed(held), runs)
    sieved = cpu(lambda: Engine(probes, sink, members).feed(held), runs)
    if events(Engine, probes, members, held) != events(Unsieved, probes, members, held):
        sys.exit(f"{case}: the sieve changed the events")
    rows = [("start-up (imports, config)", start), ("read (pcap reader)", read),
            ("dispatch (feed loop, EtherType table)", dispatch), ("decode", decoded - dispatch),
            ("probes", full - decoded)]
    total = sum(t for _, t in rows)
    print(f"\n{case}: {n} frames, {total:.2f} CPU-s in all")
    print(f"| {'stage':38} | CPU-s | ns/frame | share |")
    print(f"|{'-' * 40}|-------|----------|-------|")
    for name, t in rows:
        per = f"{t / n * 1e9:8.0f}" if not name.startswith("start") else f"{'':8}"
        print(f"| {name:38} | {t:5.2f} | {per} | {t / total:5.0%} |")
    print(f"dispatch, decode and probes with the sieve: {sieved:.2f} CPU-s, {sieved / n * 1e9:.0f} ns/frame "
          f"(without: {full:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("cases", nargs="*", default=["deployed", "arp", "mixed"])
    args = ap.parse_args()
    if not (args.out / "deployed.pcap").exists():
        subprocess.run([sys.executable, HERE / "gen.py", args.out], check=True)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, median of {args.runs} runs")
    for case in args.cases:
        profile(case, args.out, args.runs)


if __name__ == "__main__":
    main()
