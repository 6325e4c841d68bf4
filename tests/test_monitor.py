"""Signals of the one-process monitor: SIGHUP reload keeps learned state and pending
batches, SIGUSR1 sends IXPECT_TEST, SIGTERM flushes and exits 0."""

import json
import signal
import subprocess
import time

import yaml
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from ixpect.config import load_with_members as load
from ixpect.daemon import Monitor

from conftest import IXPECT

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def arp(src, ip, t):
    pkt = Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=src, psrc=ip, pdst="192.0.2.1")
    return t, bytes(pkt)


def write_config(path, static=()):
    notifiers = {"log": {"channels": [{"events": []}]}}
    cfg = {"probes": {"arp_neighbor": {"enable": True, "dynamic_enable": True,
                                       "static_resolutions": [{"ip": ip, "mac": mac} for ip, mac in static]}},
           "event": {"collection_window": "1min", "notifiers": notifiers}}
    path.write_text(yaml.safe_dump(cfg))


def test_sighup_reload_keeps_learned_neighbors_and_pending_batches(tmp_path):
    conf = tmp_path / "ixpect.conf.yaml"
    write_config(conf)
    delivered = []
    monitor = Monitor(str(conf), *load(conf))
    monitor.outlet.delivery.close(0)
    monitor.outlet.delivery = delivered.append  # what the collector hands over, in order
    monitor.feed([arp(A, "192.0.2.20", 1000.0)])
    assert list(monitor.outlet.collector.batches) and not delivered  # a window is open

    write_config(conf, static=[("192.0.2.30", B)])
    monitor.pending.add(signal.SIGHUP)
    monitor.apply_signals()
    monitor.feed([arp(A, "192.0.2.20", 1001.0), arp(A, "192.0.2.30", 1002.0)])
    monitor.outlet.collector.flush()
    (window,) = delivered
    assert [(b.type, b.count) for b in window] == [
        ("ARP_NEIGHBOR_NEW_DYNAMIC", 1),  # learned before the reload, not announced again
        ("ARP_NEIGHBOR_SPOOFED_STATIC", 1),  # the new static entry is in force
    ]


def test_reload_with_a_broken_config_keeps_the_running_one(tmp_path, caplog):
    conf = tmp_path / "ixpect.conf.yaml"
    write_config(conf, static=[("192.0.2.30", B)])
    monitor = Monitor(str(conf), *load(conf))
    conf.write_text("probes: {arp_neighbor: {enable: maybe}}\n")
    monitor.reload()
    monitor.outlet.delivery.close(0)
    assert "reload refused" in caplog.text and "probes.arp_neighbor.enable" in caplog.text
    assert monitor.engine.probes["arp_neighbor"].static  # still the old static table


def test_reload_with_a_broken_member_table_keeps_the_running_one(tmp_path, caplog):
    conf = tmp_path / "ixpect.conf.yaml"
    write_config(conf, static=[("192.0.2.30", B)])
    monitor = Monitor(str(conf), *load(conf))
    (tmp_path / "members.json").write_text('{"ips": {"not an address": {"asn": 64500, "name": "A"}}}')
    conf.write_text(conf.read_text() + "member_table: members.json\n")
    monitor.reload()
    monitor.outlet.delivery.close(0)
    assert "reload refused" in caplog.text and "'not an address' is not an IP address" in caplog.text
    assert monitor.engine.probes["arp_neighbor"].static


def test_sigterm_flushes_pending_batches_and_exits_0(tmp_path):
    conf = tmp_path / "ixpect.conf.yaml"
    write_config(conf)
    frames = [Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=A, psrc=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
              for i in range(2000)]
    for i, f in enumerate(frames):
        f.time = 1000 + i * 0.001
    pcap = tmp_path / "many.pcap"
    wrpcap(str(pcap), frames)
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen([*IXPECT, "run", "-c", conf, "--pcap", *[pcap] * 400, "--jsonl", jsonl],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while (not jsonl.exists() or jsonl.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping: flushing pending batches" in err
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert events and len(events) < 2000 * 400  # stopped half-way
    # the log notifier reported the open window's batches before exiting
    assert "ARP_NEIGHBOR_NEW_DYNAMIC x" in err


def test_sigusr1_sends_ixpect_test_through_the_notifiers(tmp_path, caplog):
    conf = tmp_path / "ixpect.conf.yaml"
    write_config(conf)
    monitor = Monitor(str(conf), *load(conf))
    monitor.pending.add(signal.SIGUSR1)
    monitor.apply_signals()
    monitor.outlet.delivery.close(5)
    assert any(r.name == "ixpect.events" and r.getMessage().startswith("IXPECT_TEST x1") for r in caplog.records)
