#!/usr/bin/env python3
"""Replay benchmarks: CPU seconds (user+sys) and peak RSS of `ixpect run --pcap`.

Generates the captures with gen.py on first use, runs each case RUNS times in a
fresh process (start-up and config loading included, as an operator would pay
them) and prints the median.

usage: run.py [--runs N] [--frames N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {
    "arp": "1M ARP frames, arp_neighbor only (target: <= 2 CPU-s)",
    "mixed": "1M mixed frames, every probe (target: <= 3 CPU-s)",
}


def measure(cmd: list[str]) -> tuple[float, int]:
    """(user+sys CPU seconds, peak RSS in KiB) of one child process."""
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the run's own log lines
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
    if not (args.out / "mixed.pcap").exists():
        subprocess.run([sys.executable, HERE / "gen.py", args.out, str(args.frames)], check=True)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, median of {args.runs} runs")
    ixpect = [sys.executable, "-m", "ixpect", "run"]
    for case, what in CASES.items():
        cmd = [*ixpect, "-c", str(args.out / f"{case}.conf.yaml"), "--pcap", str(args.out / f"{case}.pcap")]
        runs = [measure(cmd) for _ in range(args.runs)]
        cpu = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs) / 1024
        print(f"{case:6} {cpu:6.2f} CPU-s  {rss:6.0f} MiB peak RSS  "
              f"({min(r[0] for r in runs):.2f}..{max(r[0] for r in runs):.2f})  {what}")


if __name__ == "__main__":
    main()
