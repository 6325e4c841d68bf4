#!/usr/bin/env python3
"""Live capture under load: tcpreplay floods a veth from a peer namespace into the
monitor's namespace, where `ixpect run --interface ... --netns ...` listens.

Each trial replays a capture at a rate (frames/s, or "top" for tcpreplay
--topspeed) and reports what tcpreplay really achieved, what arrived on the
monitor's veth, what the daemon processed and what the kernel dropped from its
ring (PACKET_STATISTICS, from the daemon's exit log line), and the daemon's CPU
and RSS (sampled every 0.1 s).

The case is gen.py's deployed one, as run.py replays it: DE-CIX's config rendered
by `ixpect ixf render` with every probe on, and its LAN's mix of frames; only
bum_rate's window is shortened (--window) so that a replay of a few seconds spans
several windows. Needs root, iproute2 and tcpreplay (Debian: apt-get install
tcpreplay).

usage: live.py [--runs N] [--rates 200000,top] [--window SECONDS] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


class Link:
    """Two fresh namespaces, peer and monitor, joined by a veth pair; IPv6 off so
    that neither kernel adds frames of its own."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.peer_ns, self.monitor_ns = f"ixb-peer-{tag}", f"ixb-mon-{tag}"
        self.peer_if, self.monitor_if = f"ixbp{tag}", f"ixbm{tag}"
        for ns in (self.peer_ns, self.monitor_ns):
            ip("netns", "add", ns)
            for scope in ("all", "default"):
                ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        ip("link", "add", self.peer_if, "netns", self.peer_ns, "type", "veth",
           "peer", "name", self.monitor_if, "netns", self.monitor_ns)
        ip("-n", self.peer_ns, "link", "set", self.peer_if, "up")
        ip("-n", self.monitor_ns, "link", "set", self.monitor_if, "up")

    def received(self) -> int:
        """Frames the monitor's veth end has received. (Its rx "dropped" counter is no
        capture loss: the stack discards LLDP, STP and the like after the taps.)"""
        stats = json.loads(ip("-n", self.monitor_ns, "-s", "-j", "link", "show", "dev", self.monitor_if))
        return stats[0]["stats64"]["rx"]["packets"]

    def close(self) -> None:
        for ns in (self.peer_ns, self.monitor_ns):  # the veth goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def config(path: Path, window: float) -> Path:
    """The deployed config, with bum_rate windows of `window` seconds."""
    cfg = yaml.safe_load(path.with_name("deployed.conf.yaml").read_text())
    cfg["probes"]["bum_rate"]["window"] = f"{window:g}s"
    cfg["event"]["collection_window"] = "1s"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Sampler(threading.Thread):
    """The process's RSS (bytes) and CPU (seconds), every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int, float]] = []  # (monotonic time, RSS, CPU)
        self.running = True
        self.start()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def run(self) -> None:
        while self.running:
            try:
                self.samples.append((time.monotonic(), self.rss(), self.cpu()))
            except (OSError, IndexError):
                return
            time.sleep(self.every)

    def idle(self, quiet: float = 0.5, timeout: float = 60.0) -> None:
        """Wait until the process spends under 10 % of a CPU for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu()
            time.sleep(quiet)
            if self.cpu() - before < quiet / 10:
                return

    def stop(self) -> None:
        self.running = False
        self.join()


class Daemon:
    """`ixpect run` on the monitor's veth end, its events in a JSON lines file."""

    def __init__(self, link: Link, conf: Path, workdir: Path):
        self.jsonl, self.log = workdir / "events.jsonl", workdir / "run.log"
        for f in (self.jsonl, self.log):
            f.unlink(missing_ok=True)
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "ixpect", "run", "-c", str(conf),
                                          "--interface", link.monitor_if, "--netns", link.monitor_ns,
                                          "--jsonl", str(self.jsonl)], stderr=err)
        deadline = time.monotonic() + 30
        while "capturing from" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"ixpect run did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.sampler = Sampler(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self, type_: str, mac: str) -> list[dict]:
        lines = self.jsonl.read_text().splitlines() if self.jsonl.exists() else []
        return [e for e in map(json.loads, filter(None, lines))
                if e["type"] == type_ and e["data"].get("mac_addr_source") == mac]

    def stop(self) -> tuple[int, int]:
        """Stop it (SIGTERM); (frames processed, kernel drops) from its exit line."""
        self.sampler.stop()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        found = re.search(r"(\d+) frames processed; .*; (\d+) dropped by the kernel", self.log.read_text())
        if found is None:
            raise RuntimeError(f"no exit line from ixpect run:\n{self.log.read_text()}")
        return int(found[1]), int(found[2])


def replay(link: Link, pcap: Path, rate: str, loops: int = 1) -> dict:
    """tcpreplay from the peer namespace; what it reports it achieved, and its CPU."""
    speed = ["--topspeed"] if rate == "top" else [f"--pps={rate}", "--pps-multi=100"]
    proc = subprocess.Popen(["ip", "netns", "exec", link.peer_ns, "tcpreplay", "-i", link.peer_if, *speed,
                             *([f"--loop={loops}", "--preload-pcap"] if loops > 1 else []), str(pcap)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sent = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    if proc.returncode != 0 or sent is None:
        raise RuntimeError(f"tcpreplay failed:\n{out}")
    return {"sent": int(sent[1]), "seconds": float(sent[2]), "failed": int(failed[1]) if failed else 0,
            "tcpreplay_cpu": usage.ru_utime + usage.ru_stime}


def trial(pcap: Path, conf: Path, rate: str, workdir: Path) -> dict:
    with Link() as link:
        daemon = Daemon(link, conf, workdir)
        try:
            rx_before = link.received()
            cpu_before = daemon.sampler.cpu()
            result = replay(link, pcap, rate)
            daemon.sampler.idle()
            result["alive"] = daemon.alive()
            result["cpu"] = daemon.sampler.cpu() - cpu_before
            result["arrived"] = link.received() - rx_before
        finally:
            result["processed"], result["ring_drops"] = daemon.stop()
        rss = [s[1] for s in daemon.sampler.samples]
        result["rss_start"], result["rss_peak"], result["rss_end"] = rss[0], max(rss), rss[-1]
        result["rate"] = result["sent"] / result["seconds"]
        return result


def e_end(event: dict) -> float:
    """An event's time (for a rate event, the end of its window), as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="200000,top")
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("tcpreplay"):
        sys.exit("live.py needs root and tcpreplay (Debian: apt-get install tcpreplay)")
    pcap = args.out / "deployed.pcap"
    if not pcap.exists():
        subprocess.run([sys.executable, HERE / "gen.py", args.out], check=True)
    conf = config(args.out / "live.conf.yaml", args.window)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}, {pcap.name} with every probe, "
          f"median of {args.runs} runs ({args.window:g} s bum_rate windows)")
    print("| asked | achieved fps | arrived | processed | ring drops | daemon CPU-s "
          "| tcpreplay CPU-s | RSS start/peak/end MiB | alive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rate in args.rates.split(","):
        runs = [trial(pcap, conf, rate, args.out) for _ in range(args.runs)]
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        mib = lambda key: f"{med(key) / 2 ** 20:.0f}"  # noqa: E731
        print(f"| {rate} | {med('rate'):,.0f} | {med('arrived'):,.0f} | {med('processed'):,.0f} "
              f"| {med('ring_drops'):,.0f} | {med('cpu'):.2f} | {med('tcpreplay_cpu'):.2f} "
              f"| {mib('rss_start')}/{mib('rss_peak')}/{mib('rss_end')} "
              f"| {sum(r['alive'] for r in runs)}/{len(runs)} |")


if __name__ == "__main__":
    main()
