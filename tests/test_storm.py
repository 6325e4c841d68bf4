"""A broadcast storm from a peer namespace, as fast as tcpreplay can send it, into the
monitor's veth: the daemon keeps running, accounts for every frame (processed or
dropped by the kernel, and says so), reports the storming MAC within one rate
window and its memory does not grow with the flood. On two cores the daemon keeps
up with what tcpreplay can send, so a second flood arrives while it is paused
(SIGSTOP), as if it were slower: the ring overflows and the drops must be told."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from livenet import needs_root, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from gen import write  # noqa: E402
from live import Daemon, Link, e_end, replay  # noqa: E402

pytestmark = [needs_root, pytest.mark.netns, pytest.mark.needs("tcpreplay")]

STORM_MAC, WINDOW, THRESHOLD = "02:00:00:00:5f:5f", 2, 1000
FRAMES, LOOPS = 100_000, 4
#: the paused flood: more than the 64 MiB ring holds (about 460,000 such frames)
PAUSED_LOOPS = 8
#: the ring (64 MiB) plus the interpreter and tables; a leak per frame would pass it
RSS_BOUND = 250 * 2 ** 20


def test_storm(tmp_path):
    storm = bytes(Ether(src=STORM_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.95", dst="255.255.255.255")
                  / UDP(sport=9, dport=9) / (b"x" * 18))
    pcap = tmp_path / "storm.pcap"
    write(pcap, [storm] * FRAMES)
    conf = tmp_path / "storm.conf.yaml"
    conf.write_text(yaml.safe_dump({
        "probes": {"bum_rate": {"enable": True, "window": f"{WINDOW}s", "thresholds": {"broadcast": THRESHOLD}},
                   "ether_type": {"enable": True, "allowed_ether_types": [0x0800, 0x0806, 0x86DD]}},
        "event": {"collection_window": "1s", "notifiers": {}}}))
    with Link() as link:
        daemon = Daemon(link, conf, tmp_path)
        try:
            before = link.received()
            sent = replay(link, pcap, "top", loops=LOOPS)
            # when the flood began, by tcpreplay's own account: its start-up (loading the
            # capture, entering the namespace) can take seconds on a busy machine
            began = time.time() - sent["seconds"]
            assert sent["sent"] == FRAMES * LOOPS and sent["failed"] == 0
            daemon.sampler.idle()
            assert daemon.alive(), daemon.log.read_text()
            storm = wait_for(lambda: daemon.events("BUM_RATE_BROADCAST_EXCEEDED", STORM_MAC),
                             timeout=2 * WINDOW + 5, what="the storm's report")
            reported = [e_end(e) for e in storm]

            os.kill(daemon.proc.pid, signal.SIGSTOP)
            try:
                assert replay(link, pcap, "top", loops=PAUSED_LOOPS)["sent"] == FRAMES * PAUSED_LOOPS
            finally:
                os.kill(daemon.proc.pid, signal.SIGCONT)
            daemon.sampler.idle()
            assert daemon.alive(), daemon.log.read_text()
            arrived = link.received() - before
        finally:
            processed, dropped = daemon.stop()
    # the first window that ends after the storm crossed the threshold (a few ms after
    # it began) reports it
    assert reported and min(reported) - began <= WINDOW + 0.5, (reported, began)
    assert arrived == FRAMES * (LOOPS + PAUSED_LOOPS)
    assert dropped > 0 and processed + dropped == arrived
    assert "the kernel dropped" in daemon.log.read_text()
    rss = [s[1] for s in daemon.sampler.samples]
    assert max(rss) < RSS_BOUND, max(rss)
