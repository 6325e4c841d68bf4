"""The split deployment: `ixpect capture` (in the monitor's namespace, as nobody, no
capabilities) and `ixpect notify` joined by a unix socket. A kill -9 of notify in the
middle of a burst and a restart of capture lose no event; a batch delivered twice
carries the same id."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from conftest import wait_for
from livenet import PEER1_MAC, lan, monitor_ns, needs_root, netns_up, start, stop  # noqa: F401

pytestmark = [needs_root, pytest.mark.netns]

NOBODY = pwd.getpwnam("nobody")


def arp_from(i: int) -> Ether:
    """An ARP request from a new address each time: one ARP_NEIGHBOR_NEW_DYNAMIC event each."""
    arp = ARP(hwsrc=PEER1_MAC, psrc=f"10.0.{i >> 8}.{i & 255}", pdst="10.255.255.255")
    return Ether(src=PEER1_MAC, dst="ff:ff:ff:ff:ff:ff") / arp


def delivered(log: Path) -> list[dict]:
    """The batches the json log notifier printed, in order (complete lines only: the
    log may be read while a line is being written)."""
    return [json.loads(line) for line in log.read_text().split("\n")[:-1] if line.startswith("{")]


@pytest.fixture
def shared_dir():
    """A directory both root (notify) and nobody (capture) can use; pytest's is root's alone."""
    path = Path(tempfile.mkdtemp(prefix="ixpect-split-"))
    path.chmod(0o755)
    (path / "capture").mkdir()
    os.chown(path / "capture", NOBODY.pw_uid, NOBODY.pw_gid)
    yield path
    shutil.rmtree(path)


def test_kill_9_of_notify_and_restart_of_capture_lose_nothing(lan, monitor_ns, shared_dir, tmp_path):  # noqa: F811
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(json.dumps({
        "probes": {"arp_neighbor": {"enable": True, "dynamic_enable": True}},
        "event": {"collection_window": "1s", "notifiers": {"log": {"format": "json"}}}}))
    sock, notify_log, capture_log = shared_dir / "notify.sock", tmp_path / "notify.log", tmp_path / "capture.log"

    def start_notify():
        proc = start(["notify", "-c", conf, "--socket", sock, "--state-dir", tmp_path / "notify"], notify_log,
                     ready="listening on")
        sock.chmod(0o666)  # capture runs as nobody
        return proc

    def start_capture():
        return start(["capture", "-c", conf, "--interface", host_end, "--netns", monitor_ns, "--socket", sock,
                      "--state-dir", shared_dir / "capture", "--user", "nobody"], capture_log)

    notify = start_notify()
    capture = start_capture()
    try:
        status = Path(f"/proc/{capture.pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
        assert f"Uid:\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}" in status
        wait_for(lambda: "connected to notify" in capture_log.read_text(), what="capture to connect")
        capture.send_signal(signal.SIGUSR1)  # IXPECT_TEST crosses the relay to the notifiers
        wait_for(lambda: any(b["type"] == "IXPECT_TEST" for b in delivered(notify_log)), what="IXPECT_TEST")

        total = 0
        for part in range(10):  # a burst of 3000 events with notify killed in its middle
            lan.send("peer1", [arp_from(i) for i in range(total, total + 300)])
            total += 300
            if part == 3:
                notify.send_signal(signal.SIGKILL)
                notify.wait()
            if part == 6:
                notify = start_notify()
        wait_for(lambda: "connection to notify lost" in capture_log.read_text(), what="capture to notice")

        # capture stops while notify is away: its outbox keeps the events for the next start
        assert stop(notify) == 0
        lan.send("peer1", [arp_from(i) for i in range(total, total + 200)])
        total += 200
        wait_for(lambda: "waiting for notify" in capture_log.read_text().rpartition("connection to notify lost")[2],
                 what="capture to miss notify")
        assert stop(capture) == 0
        assert "not acknowledged by notify; kept in the outbox" in capture_log.read_text()
        capture = start_capture()
        notify = start_notify()

        def all_delivered():
            addrs = {b["data"]["ip4_addr"] for b in delivered(notify_log) if b["type"] != "IXPECT_TEST"}
            return len(addrs) >= total
        wait_for(all_delivered, timeout=60, what=f"{total} events to be delivered")
        assert stop(capture) == 0
        assert stop(notify) == 0
    finally:
        stop(capture)
        stop(notify)

    batches = [b for b in delivered(notify_log) if b["type"] != "IXPECT_TEST"]
    by_addr = defaultdict(set)
    for b in batches:
        assert b["type"] == "ARP_NEIGHBOR_NEW_DYNAMIC" and b["count"] == 1
        by_addr[b["data"]["ip4_addr"]].add(b["id"])
    assert len(by_addr) == total  # no loss
    assert all(len(ids) == 1 for ids in by_addr.values())  # a repeat is the same batch, visibly
    repeats = len(batches) - total
    log = notify_log.read_text()
    assert repeats == 0 or "re-queued from the spool" in log or "journal: reopened a window" in log
    assert "unacknowledged events from the last run will be resent" in capture_log.read_text()


def test_the_split_deployment_by_hand(lan, monitor_ns, tmp_path):  # noqa: F811
    """The commands an operator without systemd types (docs: "By hand"), with nobody as the
    service user: both processes end up unprivileged, and an event crosses the socket."""
    host_end, _ = lan.monitor_port()
    root = Path(tempfile.mkdtemp(prefix="ixpect-hand-"))  # stands for / : /run/ixpect, /var/lib/ixpect, /etc/ixpect
    try:
        run, state, etc = root / "run" / "ixpect", root / "var" / "lib" / "ixpect", root / "etc" / "ixpect"
        for d in (root, etc):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        conf = etc / "ixpect.conf.yaml"
        conf.write_text(json.dumps({"probes": {"arp_neighbor": {"enable": True, "dynamic_enable": True}},
                                    "event": {"collection_window": "1s", "notifiers": {"log": {"format": "json"}}}}))
        os.chown(conf, 0, NOBODY.pw_gid)
        conf.chmod(0o640)
        subprocess.run(["install", "-d", "-o", "nobody", "-g", str(NOBODY.pw_gid), "-m", "0750",
                        run, state / "notify", state / "capture"], check=True)
        netns_up("--name", monitor_ns, "--interface", host_end)
        notify_log, capture_log = tmp_path / "notify.log", tmp_path / "capture.log"
        notify = start(["notify", "-c", conf, "--socket", run / "notify.sock", "--state-dir", state / "notify",
                        "--user", "nobody"], notify_log, ready="listening on")
        capture = start(["capture", "-c", conf, "--interface", host_end, "--netns", monitor_ns,
                         "--socket", run / "notify.sock", "--state-dir", state / "capture", "--user", "nobody"],
                        capture_log)
        try:
            for proc in (notify, capture):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                assert f"Uid:\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}" in status
                assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
            wait_for(lambda: "connected to notify" in capture_log.read_text(), what="capture to connect")
            lan.send("peer1", [arp_from(1)])
            wait_for(lambda: any(b["type"] == "ARP_NEIGHBOR_NEW_DYNAMIC" for b in delivered(notify_log)),
                     what="the event through notify")
            assert stop(capture) == 0 and stop(notify) == 0
        finally:
            stop(capture)
            stop(notify)
        assert "Traceback" not in notify_log.read_text() + capture_log.read_text()
    finally:
        shutil.rmtree(root)
