#!/usr/bin/env python3
"""Memory bound: 1,000,000 distinct source MACs, each announcing its own IPv4 address.

Every probe that keeps per-address or per-MAC state is on (dynamic ARP learning,
bum_rate counting every source), so the run holds 1,000,000 learned addresses
and 1,000,000 counted MACs at its peak. Prints the peak RSS (target: <= 500 MB)
and what the caps reported.

usage: memory.py [--out DIR] [--frames N]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import measure  # noqa: E402


def build(out: Path, n: int) -> tuple[Path, Path]:
    pcap, conf = out / "distinct.pcap", out / "distinct.conf.yaml"
    conf.write_text(yaml.safe_dump({
        "probes": {
            "arp_neighbor": {"enable": True, "dynamic_enable": True, "prefixes": ["10.0.0.0/8"]},
            "bum_rate": {"enable": True, "window": "1hour", "thresholds": {"broadcast": 100}},
        },
        "event": {"collection_window": "1hour", "notifiers": {}},
    }))
    header = bytes.fromhex("ffffffffffff") + b"\0" * 6 + bytes.fromhex("0806000108000604" "0001")
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            mac = struct.pack(">HI", 0x0200, i)
            ip = struct.pack(">I", 0x0A000000 | i)
            frame = header[:6] + mac + header[12:] + mac + ip + bytes(6) + bytes((10, 255, 255, 254))
            frame = frame.ljust(60, b"\0")
            f.write(struct.pack("<IIII", 1761426000 + i // 100000, i % 100000, 60, 60) + frame)
    return pcap, conf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--frames", type=int, default=1_000_000)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pcap, conf = build(args.out, args.frames)
    jsonl = args.out / "distinct.jsonl"
    cpu, rss = measure([sys.executable, "-m", "ixpect", "run", "-c", str(conf), "--pcap", str(pcap),
                        "--jsonl", str(jsonl)])
    types: dict[str, int] = {}
    with open(jsonl) as f:
        for line in f:
            t = json.loads(line)["type"]
            types[t] = types.get(t, 0) + 1
    jsonl.unlink()
    print(f"{args.frames} distinct MACs and addresses: peak RSS {rss / 1024:.0f} MiB, {cpu:.1f} CPU-s")
    print(f"events: {types}")


if __name__ == "__main__":
    main()
