#!/usr/bin/env python3
"""Replay benchmarks: CPU seconds (user+sys) and peak RSS of `ixpect run --pcap`.

Generates the captures with gen.py on first use, runs each case RUNS times in a
fresh process (start-up and config loading included, as an operator would pay
them) and prints the median. Where arpwatch is installed (Debian package), it
replays the ARP capture in the same run, `arpwatch -d -r FILE -f DATFILE` with a
fresh database each time, and the ratio to it is printed.

usage: run.py [--runs N] [--frames N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: arpwatch in a namespace of its own without network: its reverse DNS lookups of new
#: stations fail at once instead of waiting for an unreachable resolver
ARPWATCH = ["unshare", "--net", "arpwatch", "-d"]
CASES = {
    "deployed": "1M frames of DE-CIX's LAN, its rendered config, every probe (goal: <= 1 us/frame)",
    "arp": "1M ARP frames, arp_neighbor only (goal: <= 0.5 x arpwatch)",
    "mixed": "1M mixed frames, 8 of the probes (goal: <= 2 CPU-s)",
}


def measure(cmd: list[str]) -> tuple[float, int]:
    """(user+sys CPU seconds, peak RSS in KiB) of one child process."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)  # the run's own output and log lines
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    if not (args.out / "deployed.pcap").exists():
        subprocess.run([sys.executable, HERE / "gen.py", args.out, str(args.frames)], check=True)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, median of {args.runs} runs")
    ixpect = [sys.executable, "-m", "ixpect", "run"]
    for case, what in CASES.items():
        cmd = [*ixpect, "-c", str(args.out / f"{case}.conf.yaml"), "--pcap", str(args.out / f"{case}.pcap")]
        cpu = report(case, [measure(cmd) for _ in range(args.runs)], what)
        if case == "deployed":
            cmd[-1] = str(args.out / "empty.pcap")
            start = report("start-up", [measure(cmd) for _ in range(args.runs)],
                           "the same config, a capture without frames (goal: <= 0.2 CPU-s)")
            print(f"per frame {(cpu - start) / args.frames * 1e6:4.2f} us  after start-up (goal <= 1.0)")
        if case == "arp" and shutil.which("arpwatch"):
            learned = args.out / "arpwatch.dat"
            learned.write_text("")
            measure([*ARPWATCH, "-r", str(args.out / "arp.pcap"), "-f", str(learned)])
            ref = report("arpwatch", [arpwatch(args.out / "arp.pcap", learned) for _ in range(args.runs)],
                         "arpwatch 2.1 on the same capture, database primed")
            print(f"ratio  {cpu / ref:6.2f}  ixpect/arpwatch CPU on the ARP case (goal <= 0.5)")


def arpwatch(pcap: Path, learned: Path) -> tuple[float, int]:
    """One arpwatch replay starting from the learned database, as ixpect starts from
    its static table: both then judge the same 1,000,000 frames without news."""
    with tempfile.TemporaryDirectory() as tmp:
        dat = Path(tmp) / "arp.dat"
        shutil.copy(learned, dat)
        return measure([*ARPWATCH, "-r", str(pcap), "-f", str(dat)])


def report(case: str, runs: list[tuple[float, int]], what: str) -> float:
    cpu = statistics.median(r[0] for r in runs)
    rss = max(r[1] for r in runs) / 1024
    print(f"{case:8} {cpu:6.2f} CPU-s  {rss:6.0f} MiB peak RSS  "
          f"({min(r[0] for r in runs):.2f}..{max(r[0] for r in runs):.2f})  {what}")
    return cpu


if __name__ == "__main__":
    main()
