"""/metrics while frames flow: `ixpect run` serves it itself; in the split deployment
notify serves capture's counters too (they come over the relay). Counter values are
checked exactly against the frames the test sends."""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, LLC, Dot3, Ether
from scapy.packet import Raw

import ixpect.metrics

from livenet import lan, monitor_ns, needs_root, netns_up, start, stop, wait_for  # noqa: F401

A, B = "02:00:00:00:01:01", "02:00:00:00:02:02"
BCAST = "ff:ff:ff:ff:ff:ff"
FRAMES = {
    "arp": [Ether(src=A, dst=BCAST) / ARP(op=1, hwsrc=A, psrc="192.0.2.1", pdst="192.0.2.9"),
            Ether(src=B, dst=BCAST) / ARP(op=1, hwsrc=B, psrc="192.0.2.2", pdst="192.0.2.9"),
            Ether(src=A, dst=BCAST) / ARP(op=1, hwsrc=A, psrc="192.0.2.1", pdst="192.0.2.8")],
    "ipv6": [Ether(src=A, dst="33:33:00:00:00:01") / IPv6(src="2001:db8::1", dst="ff02::1", hlim=255)
             / ICMPv6ND_NA(tgt="2001:db8::1", R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=A)],
    "llc": [Dot3(src=B, dst=BCAST) / LLC(dsap=0xfe, ssap=0xfe, ctrl=3) / Raw(b"\x83" + bytes(40))],
    "other": [Ether(src=B, dst=BCAST, type=0x88b5) / Raw(b"local experimental" + bytes(30))],
}
DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "ixpect.json"
EVENTS = {"ARP_NEIGHBOR_NEW_DYNAMIC": 2, "IPV6_NEIGHBOR_NEW_DYNAMIC": 1}


def config(path, port: int) -> None:
    path.write_text(f"""\
probes:
  arp_neighbor: {{enable: true, dynamic_enable: true}}
  ipv6_neighbor: {{enable: true, dynamic_enable: true}}
event:
  collection_window: 1s
  notifiers:
    log: {{channels: [{{}}]}}
metrics:
  listen: 127.0.0.1:{port}
""")
    # what `ixpect ixf render -o ixpect.conf.yaml` leaves beside the config (tests/test_ixf_e2e.py)
    path.with_name("ixpect.conf.status.json").write_text(
        json.dumps({"refreshed": 1_700_000_000.5, "entries": {"members": 3, "ipv4": 4, "ipv6": 5, "macs": 6}}))


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """{(name, ((label, value), ...)): value} of every sample, and the HELP texts."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("ixpect_") and family.documentation
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def expected_traffic() -> dict:
    want = {}
    for cls, frames in FRAMES.items():
        want["ixpect_frames_total", (("class", cls),)] = len(frames)
        want["ixpect_bytes_total", (("class", cls),)] = sum(len(bytes(f)) for f in frames)
    want["ixpect_frames_total", (("class", "ipv4"),)] = want["ixpect_bytes_total", (("class", "ipv4"),)] = 0
    for type_, n in EVENTS.items():
        want["ixpect_events_total", (("type", type_),)] = n
    want["ixpect_ixf_refresh_timestamp_seconds", ()] = 1_700_000_000.5
    for kind, n in (("members", 3), ("ipv4", 4), ("ipv6", 5), ("macs", 6)):
        want["ixpect_ixf_entries", (("kind", kind),)] = n
    return want


def traffic_seen(port: int, want: dict):
    got = scrape(port)
    return got if all(got.get(k) == v for k, v in want.items()) else None


def delivered(port: int):
    got = scrape(port)
    return got if got.get(("ixpect_notifier_deliveries_total", (("channel", "log[0]"),)), 0) >= 1 else None


def send_vxlan(port: int, vni: int) -> None:
    header = bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for frames in FRAMES.values():
            for f in frames:
                s.sendto(header + bytes(f), ("127.0.0.1", port))


def test_run_serves_metrics_while_capturing(tmp_path):
    conf, log, port = tmp_path / "ixpect.conf.yaml", tmp_path / "run.log", free_tcp_port()
    config(conf, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp = s.getsockname()[1]
    vni = 4000 + secrets.randbelow(60000)
    proc = start(["run", "-c", conf, "--vxlan", f"127.0.0.1:{udp}", "--vni", vni, "--state-dir", tmp_path / "state"],
                 log)
    try:
        before = wait_for(lambda: (got := scrape(port)).get(("ixpect_kernel_drops_total", ())) is not None and got,
                          what="the capture loop's first round")
        assert before[("ixpect_frames_total", (("class", "arp"),))] == 0
        assert before[("ixpect_kernel_drops_total", ())] == 0
        assert before[("ixpect_sieve_forgets_total", ())] == 0
        assert before[("ixpect_notifier_deliveries_total", (("channel", "log[0]"),))] == 0
        send_vxlan(udp, vni)
        got = wait_for(lambda: traffic_seen(port, expected_traffic()), what="the frames in /metrics")
        assert got[("ixpect_kernel_drops_total", ())] == 0
        got = wait_for(lambda: delivered(port), what="a delivered window in /metrics")
        assert got[("ixpect_notifier_deliveries_total", (("channel", "log[0]"),))] == 1
        assert got[("ixpect_notifier_failures_total", (("channel", "log[0]"),))] == 0
        assert got[("ixpect_notifier_dropped_batches_total", (("channel", "log[0]"),))] == 0
        assert got[("ixpect_notifier_pending", (("channel", "log[0]"),))] == 0
        assert got[("ixpect_capture_silent", ())] == 0
        assert stop(proc) == 0
    finally:
        stop(proc)
    # SIGTERM saved what was learned
    state = json.loads((tmp_path / "state" / "neighbors.json").read_text())
    assert set(state["arp_neighbor"]) == {"192.0.2.1", "192.0.2.2"} and set(state["ipv6_neighbor"]) == {"2001:db8::1"}


@needs_root
def test_notify_serves_the_metrics_of_capture(lan, monitor_ns, tmp_path):  # noqa: F811
    conf, port = tmp_path / "ixpect.conf.yaml", free_tcp_port()
    config(conf, port)
    sock = tmp_path / "notify.sock"
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    notify = start(["notify", "-c", conf, "--socket", sock, "--state-dir", tmp_path / "notify"],
                   tmp_path / "notify.log", ready="listening on")
    capture = None
    try:
        capture = start(["capture", "-c", conf, "--interface", host_end, "--netns", monitor_ns, "--socket", sock,
                         "--state-dir", tmp_path / "capture"], tmp_path / "capture.log")
        lan.send("peer1", [f for frames in FRAMES.values() for f in frames])
        got = wait_for(lambda: traffic_seen(port, expected_traffic()), what="capture's counters in notify's /metrics")
        assert got[("ixpect_kernel_drops_total", ())] == 0
        assert got[("ixpect_capture_report_timestamp_seconds", ())] > 1_700_000_000
        wait_for(lambda: delivered(port), what="a delivered window in notify's /metrics")
        assert stop(capture) == 0
        assert stop(notify) == 0
    finally:
        if capture is not None:
            stop(capture)
        stop(notify)


def dashboard_queries() -> list[str]:
    """The PromQL of every panel and template variable of the Grafana dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    return exprs + [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]


def test_grafana_dashboard_uses_only_metrics_ixpect_exports():
    """Every metric name in the dashboard's queries is one ixpect.metrics defines
    (tests/test_fleet.py runs them against a live exposition and Prometheus)."""
    source = Path(ixpect.metrics.__file__).read_text()
    defined = set(re.findall(r'"(ixpect_[a-z0-9_]+)"', source))
    defined |= {f"{name}_total" for name in defined}  # counters are exposed with _total
    exprs = dashboard_queries()
    used = {name for e in exprs for name in re.findall(r"\bixpect_[a-z0-9_]+", e)}
    assert len(exprs) >= 8 and used and not used - defined, used - defined


def test_a_metrics_address_in_use_is_a_clear_start_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "ixpect.conf.yaml"
        config(conf, port)
        pcap = tmp_path / "empty.pcap"
        pcap.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        result = subprocess.run([sys.executable, "-m", "ixpect", "run", "-c", conf, "--pcap", pcap],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_metrics_listen_moves_on_reload(tmp_path):
    """SIGHUP with another metrics.listen moves /metrics; an address that cannot be bound
    is refused with an error and the old one stays; without `metrics` it stops."""
    conf, log, port = tmp_path / "ixpect.conf.yaml", tmp_path / "run.log", free_tcp_port()
    config(conf, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp = s.getsockname()[1]
    proc = start(["run", "-c", conf, "--vxlan", f"127.0.0.1:{udp}"], log)
    taken = socket.socket()
    try:
        wait_for(lambda: scrape(port), what="/metrics on the first port")
        moved = free_tcp_port()
        config(conf, moved)
        proc.send_signal(signal.SIGHUP)
        # the old server closes before the new one binds (they may share the port): poll both
        wait_for(lambda: serving(port) is None and serving(moved), what="/metrics on the new port only")

        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config(conf, taken.getsockname()[1])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Address already in use; metrics stay on" in log.read_text(), what="the refused address")
        assert scrape(moved)

        conf.write_text(conf.read_text().split("metrics:")[0])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: serving(moved) is None, what="/metrics to stop")
        assert proc.poll() is None and stop(proc) == 0
    finally:
        taken.close()
        stop(proc)


def serving(port: int) -> dict | None:
    """What /metrics on `port` serves, None while nothing answers there."""
    try:
        return scrape(port)
    except OSError:
        return None


def test_a_failed_ixf_refresh_is_a_metric(tmp_path):
    status = {"refreshed": 1_700_000_000.5, "entries": {"members": 3}, "failed": 1_700_000_600.0, "error": "HTTP 503"}
    (tmp_path / "ixpect.conf.status.json").write_text(json.dumps(status))
    got = {m.name: m.samples for m in ixpect.metrics.Metrics(lambda: None, lambda: NO_NOTIFIERS,
                                                             tmp_path / "ixpect.conf.yaml").collect()}
    assert got["ixpect_ixf_refresh_failure_timestamp_seconds"][0].value == 1_700_000_600.0
    assert got["ixpect_ixf_refresh_timestamp_seconds"][0].value == 1_700_000_000.5
    # a render that never succeeded: a failure and no success
    (tmp_path / "ixpect.conf.status.json").write_text(json.dumps({"failed": 1_700_000_600.0, "error": "x"}))
    got = {m.name for m in ixpect.metrics.Metrics(lambda: None, lambda: NO_NOTIFIERS,
                                                  tmp_path / "ixpect.conf.yaml").collect()}
    assert "ixpect_ixf_refresh_failure_timestamp_seconds" in got and "ixpect_ixf_refresh_timestamp_seconds" not in got


NO_NOTIFIERS = {"deliveries": {}, "failures": {}, "dropped": {}, "pending": {}}


def test_ixf_render_records_its_failure_beside_the_last_success(tmp_path):
    out = tmp_path / "ixpect.conf.yaml"
    status = out.with_name("ixpect.conf.status.json")
    status.write_text(json.dumps({"refreshed": 1_700_000_000.5, "entries": {"members": 3}}))
    result = subprocess.run([sys.executable, "-m", "ixpect", "ixf", "render", "--source", tmp_path / "missing.json",
                             "--ixp-id", "1", "--vlan-id", "1", "-o", out], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and not out.exists()
    got = json.loads(status.read_text())
    assert got["refreshed"] == 1_700_000_000.5 and got["entries"] == {"members": 3}
    assert got["failed"] > 1_700_000_600 and "missing.json" in got["error"]
