#!/usr/bin/env python3
"""Start-up: CPU seconds (user+sys) of `ixpect run --pcap EMPTY` on large configs, and
of the part of it that is the config's: loading and validating it, its member table
and the probes' tables built from it, after the interpreter started and imported
ixpect (what a reload pays too).

    deployed  the config `ixpect ixf render` makes of DE-CIX Frankfurt's export with
              every probe on (gen.py's, 689 members, 2,828 static entries)
    1000      the same grown to 1,000 members: each of 311 made-up members gets the
              average DE-CIX member's entries (1.37 ARP, 2.74 ND, 1.37 MACs in the
              member table), so 1,366 ARP and 2,739 ND static entries in all

Each is run RUNS times in a fresh process, as an operator starts it, and the median
printed; a config that does not load fails the script. The package's bytecode is
compiled first, as pip and Nix do at install (with PYTHONDONTWRITEBYTECODE set, every
run would otherwise compile ixpect's sources again).

usage: startup.py [--runs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import measure, report  # noqa: E402

MEMBERS = 1000


def grown(out: Path) -> None:
    """The deployed config and member table with entries for MEMBERS members."""
    import yaml

    conf = out / "deployed.conf.yaml"
    cfg = yaml.safe_load(conf.read_text())
    table = json.loads((out / cfg["member_table"]).read_text())
    have = len(table["connections"])
    arp, nd = (cfg["probes"][p]["static_resolutions"] for p in ("arp_neighbor", "ipv6_neighbor"))
    per_arp, per_nd, per_mac = len(arp) / have, len(nd) / have, len(table["macs"]) / have
    for i in range(MEMBERS - have):
        asn, n = 4_200_000_000 + i, i + 1  # private ASNs; n counts the new members from 1
        member = {"asn": asn, "name": f"Member {n}"}
        macs = [f"02:00:{n >> 8:02x}:{n & 0xff:02x}:00:{k:02x}" for k in range(int(per_mac * n) - int(per_mac * i))]
        macs = macs or [f"02:00:{n >> 8:02x}:{n & 0xff:02x}:00:00"]
        table["connections"][str(asn)] = 1
        table["macs"].update((mac, member) for mac in macs)
        for k in range(int(per_arp * n) - int(per_arp * i)):
            ip = f"100.64.{n >> 8}.{n & 0xff}" if k == 0 else f"100.65.{n >> 8}.{n & 0xff}"
            arp.append({"ip": ip, "mac": macs[k % len(macs)]})
            table["ips"][ip] = member
        for k in range(int(per_nd * n) - int(per_nd * i)):
            mac = macs[k % len(macs)]
            ip = f"2001:db8::{n:x}:{k}" if k % 2 == 0 else f"fe80::{n:x}:{k}"
            nd.append({"ip": ip, "mac": mac})
            table["ips"].setdefault(ip, member)
    cfg["probes"]["arp_bogon"]["prefixes"].append("100.64.0.0/15")
    cfg["probes"]["ipv6_bogon"]["prefixes"].append("2001:db8::/64")
    cfg["member_table"] = f"{MEMBERS}.members.json"
    (out / cfg["member_table"]).write_text(json.dumps(table, indent=1))
    path = out / f"{MEMBERS}.conf.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))  # as ixf render writes it


def prepare(out: Path) -> None:
    """The configs to measure and the empty capture, written to `out`."""
    from gen import deployed_config, write

    if not (out / "deployed.conf.yaml").exists():
        deployed_config(out)
    if not (out / "empty.pcap").exists():
        write(out / "empty.pcap", ())
    grown(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # written by a child: a measured run inherits its parent's memory until it execs,
    # and its peak RSS counts it, so this parent must not hold scapy or a parsed config
    pid = os.fork()
    if pid == 0:
        try:
            prepare(args.out)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        sys.exit("preparing the configs failed")
    compileall.compile_dir(HERE.parent / "ixpect", quiet=1)
    configs = {"deployed": args.out / "deployed.conf.yaml", str(MEMBERS): args.out / f"{MEMBERS}.conf.yaml"}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, median of {args.runs} runs")
    for name, conf in configs.items():
        cmd = [sys.executable, "-m", "ixpect", "run", "-c", str(conf), "--pcap", str(args.out / "empty.pcap")]
        report(name, [measure(cmd) for _ in range(args.runs)], f"start-up, {conf.name}")
        loads = [float(subprocess.run([sys.executable, "-c", LOAD, conf], check=True, capture_output=True,
                                      text=True).stdout) for _ in range(args.runs)]
        print(f"{name:8} {statistics.median(loads):6.2f} CPU-s  config load and validation, probes' tables "
              f"({min(loads):.2f}..{max(loads):.2f}) (goal: <= 0.2 CPU-s)")


#: in a fresh interpreter: what the config costs after the imports
LOAD = """
import sys, time
from ixpect import daemon, probes
from ixpect.config import load_with_members
from ixpect.engine import Engine
for name in probes.KINDS:  # imported first: imports are not the config's
    probes.probe_class(name)
t = time.process_time()
cfg, members = load_with_members(sys.argv[1])
Engine(cfg["probes"], lambda event: None, members)
print(time.process_time() - t)
"""


if __name__ == "__main__":
    main()
