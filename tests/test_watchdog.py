"""The blind-monitor watchdog: IXPECT_CAPTURE_SILENT when the capture sees no frame of
the watched classes for `silent_after`, IXPECT_CAPTURE_RESUMED when they return; on
the counters alone (unit) and live on a veth whose peer stops sending or loses its link."""

from __future__ import annotations

import signal
import socket
import threading
import time

from pyroute2 import NetNS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from test_metrics import free_tcp_port, scrape

from livenet import (PEER1_IP, PEER1_MAC, lan, monitor_ns, needs_root, netns_up, read_jsonl, start,  # noqa: F401
                     stop, wait_for, write_config)

from ixpect.watchdog import Watchdog

WATCH = {"enable": True, "silent_after": 10.0, "classes": []}


class Counters:
    def __init__(self):
        self.frames = {"arp": 0, "ipv4": 0, "ipv6": 0, "llc": 0, "other": 0}

    def __call__(self):
        return {cls: (n, 64 * n) for cls, n in self.frames.items()}


def run(dog, counters, times):
    out = []
    for t in times:
        dog.check(t, counters, lambda type_, ts, data, frame: out.append((type_, ts, data)))
    return out


def test_silence_is_reported_once_and_its_end_with_how_long_it_lasted():
    counters, dog = Counters(), Watchdog(WATCH, "eth1", 1000.0)
    assert run(dog, counters, [1000.0, 1005.0, 1009.0]) == []
    since = "1970-01-01T00:16:40.000000Z"
    assert run(dog, counters, [1010.0, 1011.0, 1100.0]) == [
        ("IXPECT_CAPTURE_SILENT", 1010.0, {"source": "eth1", "since": since, "silent_for": 10})]
    assert dog.snapshot() == {"silent": True, "last_traffic": 1000.0}
    counters.frames["llc"] += 1
    assert run(dog, counters, [1130.4]) == [
        ("IXPECT_CAPTURE_RESUMED", 1130.4, {"source": "eth1", "since": since, "silent_for": 130})]
    assert dog.snapshot() == {"silent": False, "last_traffic": 1130.4}
    assert run(dog, counters, [1135.0, 1139.0]) == []
    assert [e[0] for e in run(dog, counters, [1140.5])] == ["IXPECT_CAPTURE_SILENT"]


def test_only_the_watched_classes_count_and_checks_are_at_most_once_a_second():
    counters, dog = Counters(), Watchdog({**WATCH, "classes": ["arp", "ipv6"]}, "eth1", 0.0)
    events = []
    for t in range(0, 12):
        counters.frames["other"] += 5  # the port's own LLDP, say: the LAN itself is gone
        counters.frames["ipv4"] += 5
        events += run(dog, counters, [float(t)])
    assert [(e[0], e[2]["classes"]) for e in events] == [("IXPECT_CAPTURE_SILENT", ["arp", "ipv6"])]
    counters.frames["arp"] += 1
    assert run(dog, counters, [11.5]) == []  # looked at 11.0: the next look is at 12.0
    assert [e[0] for e in run(dog, counters, [12.0])] == ["IXPECT_CAPTURE_RESUMED"]


def test_a_reload_can_turn_it_off_and_change_the_time():
    counters, dog = Counters(), Watchdog(WATCH, "eth1", 0.0)
    dog.configure({**WATCH, "enable": False})
    assert run(dog, counters, [0.0, 100.0, 1000.0]) == []
    dog.configure({**WATCH, "silent_after": 2000.0})
    assert run(dog, counters, [1999.0]) == []
    assert [e[0] for e in run(dog, counters, [2000.0])] == ["IXPECT_CAPTURE_SILENT"]


def arp_from_peer1(seq: int):
    return Ether(src=PEER1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=PEER1_MAC, psrc=PEER1_IP, pdst=f"192.0.2.{100 + seq % 100}")


class Talker(threading.Thread):
    """peer1 sends an ARP request every 0.2 s while `talking` is set, and an IPv4
    datagram every 0.2 s always (traffic of a class the watchdog ignores here)."""

    def __init__(self, lan):
        super().__init__(daemon=True)
        self.lan, self.talking, self.done = lan, threading.Event(), threading.Event()

    def run(self):
        seq = 0
        while not self.done.wait(0.2):
            seq += 1
            frames = [Ether(src=PEER1_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=PEER1_IP, dst="192.0.2.255")
                      / UDP(sport=9, dport=9)]
            if self.talking.is_set():
                frames.append(arp_from_peer1(seq))
            try:
                self.lan.send("peer1", frames)
            except OSError:  # the peer's link is down
                pass


def types(path):
    return [e["type"] for e in read_jsonl(path) if e["type"].startswith("IXPECT_CAPTURE")]


@needs_root
def test_live_silence_of_a_quiet_peer_and_of_a_link_down(lan, monitor_ns, tmp_path):  # noqa: F811
    port = free_tcp_port()
    conf = write_config(tmp_path / "ixpect.conf.yaml")
    with conf.open("a") as f:
        f.write(f"watchdog: {{silent_after: 2s, classes: [arp]}}\nmetrics: {{listen: '127.0.0.1:{port}'}}\n")
    host_end, bridge_end = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    jsonl = tmp_path / "events.jsonl"
    talker = Talker(lan)
    talker.talking.set()
    talker.start()
    proc = start(["run", "-c", conf, "--interface", host_end, "--netns", monitor_ns, "--jsonl", jsonl],
                 tmp_path / "run.log")
    try:
        wait_for(lambda: scrape(port).get(("ixpect_frames_total", (("class", "arp"),))), what="ARP seen")
        time.sleep(3)  # longer than silent_after: ARP flows, no silence
        assert types(jsonl) == []
        assert scrape(port)[("ixpect_capture_silent", ())] == 0

        talker.talking.clear()  # the peer stops ARPing; its IPv4 keeps coming, but is not watched
        wait_for(lambda: types(jsonl) == ["IXPECT_CAPTURE_SILENT"], timeout=10, what="silence reported")
        assert scrape(port)[("ixpect_capture_silent", ())] == 1
        silent = read_jsonl(jsonl)[-1]
        assert silent["member"] is None and silent["data"]["source"] == f"AF_PACKET {host_end}", silent
        assert 2 <= silent["data"]["silent_for"] <= 4 and silent["data"]["classes"] == ["arp"]
        # delivered while the silence lasts, not held in the collection window until a frame comes
        wait_for(lambda: '"type": "IXPECT_CAPTURE_SILENT"' in (tmp_path / "run.log").read_text(), timeout=5,
                 what="the silence at the log notifier")

        talker.talking.set()
        wait_for(lambda: types(jsonl)[-1:] == ["IXPECT_CAPTURE_RESUMED"], timeout=10, what="traffic back")
        assert scrape(port)[("ixpect_capture_silent", ())] == 0

        # the cable is pulled: the monitor port's bridge end goes down, so no frame at all reaches it
        with NetNS(lan.ns["lan"]) as ns:
            idx = ns.link_lookup(ifname=bridge_end)[0]
            ns.link("set", index=idx, state="down")
            wait_for(lambda: types(jsonl)[-1:] == ["IXPECT_CAPTURE_SILENT"], timeout=10, what="link-down silence")
            ns.link("set", index=idx, state="up")
        wait_for(lambda: types(jsonl)[-1:] == ["IXPECT_CAPTURE_RESUMED"], timeout=15, what="link back up")
        assert types(jsonl) == ["IXPECT_CAPTURE_SILENT", "IXPECT_CAPTURE_RESUMED"] * 2
        assert proc.poll() is None
        assert stop(proc) == 0
    finally:
        talker.done.set()
        stop(proc)


def test_a_reload_applies_to_the_running_watchdog(tmp_path):
    """A VxLAN receiver that gets nothing: with silent_after 1hour no silence is reported;
    SIGHUP with 1s, and it is."""
    conf, jsonl = tmp_path / "ixpect.conf.yaml", tmp_path / "events.jsonl"
    base = "event: {collection_window: 1s, notifiers: {log: {}}}\n"
    conf.write_text(base + "watchdog: {silent_after: 1hour}\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp = s.getsockname()[1]
    proc = start(["run", "-c", conf, "--vxlan", f"127.0.0.1:{udp}", "--jsonl", jsonl], tmp_path / "run.log")
    try:
        time.sleep(2.5)
        assert types(jsonl) == []
        conf.write_text(base + "watchdog: {silent_after: 1s}\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: types(jsonl) == ["IXPECT_CAPTURE_SILENT"], timeout=10, what="silence after the reload")
        assert read_jsonl(jsonl)[0]["data"]["source"] == f"VxLAN 127.0.0.1:{udp}"
        # no frame, no probe with a timer: the window still closes and the log notifier has it
        wait_for(lambda: "IXPECT_CAPTURE_SILENT x1" in (tmp_path / "run.log").read_text(), timeout=5,
                 what="the silence at the log notifier")
        assert stop(proc) == 0
    finally:
        stop(proc)
