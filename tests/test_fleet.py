"""A fleet: two monitors (each a capture/notify pair on its own port of one LAN, as two
PoPs see the same peering LAN) report to a real Alertmanager (a member's storm grouped
once with both PoPs, silenced, resolved; both monitors going blind and seeing again)
and are scraped by a real Prometheus that loads the shipped alerting rules; the shipped rules pass promtool's
checks and unit tests, the exposition passes `promtool check metrics`, and every query
of the Grafana dashboard runs against that Prometheus on metrics the exposition has."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from test_metrics import dashboard_queries, free_tcp_port

from conftest import require_tool
from livenet import IXPECT, PEER1_MAC, PEER2_MAC, lan, needs_root, netns_up, start, stop, wait_for  # noqa: F401

from ixpect import config

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "contrib" / "prometheus" / "ixpect.rules.yml"
MEMBERS = {"macs": {PEER1_MAC: {"asn": 64500, "name": "Storm Networks"},
                    PEER2_MAC: {"asn": 64501, "name": "Other Carrier"}}}
POPS = ("fra1", "ams1")
BUM = "BUM_RATE_BROADCAST_EXCEEDED"


def test_shipped_rules_pass_promtool_check_and_unit_tests():
    require_tool("promtool")
    check = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 9 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", RULES.with_name("ixpect.rules.test.yml")],
                          capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_the_fleet_page_configs_are_valid(tmp_path):
    """docs/fleet.md's monitor, Alertmanager and Prometheus configs pass their own checkers."""
    require_tool("promtool")
    require_tool("amtool")
    ixpect_cfg, am_cfg, prom_cfg = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "fleet.md").read_text(), re.S)
    assert config.validate(yaml.safe_load(ixpect_cfg)) == []
    (tmp_path / "am.yml").write_text(am_cfg)
    check = subprocess.run(["amtool", "check-config", tmp_path / "am.yml"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    prom = yaml.safe_load(prom_cfg)
    assert prom["rule_files"] == ["/etc/prometheus/rules/ixpect.rules.yml"]
    prom["rule_files"] = [str(RULES)]
    (tmp_path / "prom.yml").write_text(yaml.safe_dump(prom))
    check = subprocess.run(["promtool", "check", "config", tmp_path / "prom.yml"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def http_json(url: str, body=None, method: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def daemon(stack: ExitStack, argv: list, log: Path, ready_url: str) -> None:
    """A server on loopback, stopped when the test ends."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT)
    stack.callback(stop, proc)
    wait_for(lambda: ready(ready_url) or proc.poll() is not None, timeout=60, what=f"{argv[0]} to be ready")
    assert proc.poll() is None, log.read_text()


def alertmanager(stack: ExitStack, tmp: Path) -> str:
    port = free_tcp_port()
    conf = tmp / "alertmanager.yml"
    conf.write_text(yaml.safe_dump({
        "route": {"receiver": "noc", "group_by": ["alertname", "asn"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "noc"}]}))
    (tmp / "am-data").mkdir()
    url = f"http://127.0.0.1:{port}"
    daemon(stack, ["prometheus-alertmanager", f"--config.file={conf}", f"--storage.path={tmp / 'am-data'}",
                   f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
           tmp / "alertmanager.log", url + "/-/ready")
    return url


def prometheus(stack: ExitStack, tmp: Path, targets: dict[str, int]) -> str:
    port = free_tcp_port()
    conf = tmp / "prometheus.yml"
    conf.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "ixpect", "static_configs": [
            {"targets": [f"127.0.0.1:{p}"], "labels": {"pop": pop}} for pop, p in targets.items()]}]}))
    (tmp / "prom-data").mkdir()
    url = f"http://127.0.0.1:{port}"
    daemon(stack, ["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'prom-data'}",
                   f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.log", url + "/-/ready")
    return url


def query(prom: str, expr: str) -> list:
    got = http_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert got["status"] == "success", (expr, got)
    return got["data"]["result"]


def monitor(stack: ExitStack, lan, tmp: Path, pop: str, am: str) -> int:  # noqa: F811
    """One PoP's capture/notify pair on its own port of the LAN; returns its metrics port."""
    d, port = tmp / pop, free_tcp_port()
    d.mkdir()
    (d / "members.json").write_text(json.dumps(MEMBERS))
    (d / "ixpect.conf.status.json").write_text(json.dumps(
        {"refreshed": time.time(), "entries": {"members": 2, "ipv4": 0, "ipv6": 0, "macs": 2}}))
    (d / "ixpect.conf.yaml").write_text(yaml.safe_dump({
        "member_table": "members.json",
        "probes": {"bum_rate": {"enable": True, "window": "1s", "thresholds": {"broadcast": 20}}},
        "event": {"collection_window": "1s", "notifiers": {"alertmanager": {
            "labels": {"pop": pop, "lan": "peering"}, "resolve_after": "5s",
            "channels": [{"url": am, "timeout": "5s"}]}}},
        "metrics": {"listen": f"127.0.0.1:{port}"}, "watchdog": {"silent_after": "3s"}}))
    host_end, ns = f"ixf{pop}{lan.tag}", f"ixt-{pop}-{lan.tag}"
    lan._port(f"pf{pop}{lan.tag}"[:15], None, host_end)
    netns_up("--name", ns, "--interface", host_end)
    stack.callback(subprocess.run, [*IXPECT, "netns", "down", "--name", ns, "--vxlan-vni", "1"], capture_output=True)
    sock = d / "notify.sock"
    notify = start(["notify", "-c", d / "ixpect.conf.yaml", "--socket", sock, "--state-dir", d / "notify"],
                   d / "notify.log", ready="listening on")
    stack.callback(stop, notify)
    capture = start(["capture", "-c", d / "ixpect.conf.yaml", "--interface", host_end, "--netns", ns,
                     "--socket", sock, "--state-dir", d / "capture"], d / "capture.log")
    stack.callback(stop, capture)
    return port


def storm(lan, peer: str, mac: str, seconds: float) -> None:  # noqa: F811
    """Broadcast from one member's router: 100 frames every 0.2 s."""
    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.99", dst="255.255.255.255") / UDP(dport=9)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lan.send(peer, [frame] * 100)
        time.sleep(0.2)


def alerts(am: str, asn: str | None, alertname: str = BUM, **flags) -> list[dict]:
    """The alerts Alertmanager has, not resolved (its API leaves those out)."""
    matchers = [f'alertname="{alertname}"'] + ([f'asn="{asn}"'] if asn else [])
    params = urllib.parse.urlencode({"filter": matchers, **flags}, doseq=True)
    return http_json(f"{am}/api/v2/alerts?{params}")


@needs_root
def test_two_monitors_one_alertmanager_one_prometheus(lan, tmp_path):  # noqa: F811
    for tool in ("prometheus-alertmanager", "prometheus", "promtool"):
        require_tool(tool)
    with ExitStack() as stack:
        am = alertmanager(stack, tmp_path)
        ports = {pop: monitor(stack, lan, tmp_path, pop, am) for pop in POPS}
        prom = prometheus(stack, tmp_path, ports)

        # one member storms: both PoPs see it, Alertmanager shows one group for member and type
        storm(lan, "peer1", PEER1_MAC, 3)
        wait_for(lambda: len(alerts(am, "64500")) == 2, what="both PoPs' alerts")
        groups = [g for g in http_json(f"{am}/api/v2/alerts/groups") if g["labels"].get("asn") == "64500"]
        assert len(groups) == 1 and groups[0]["labels"] == {"alertname": BUM, "asn": "64500"}
        assert sorted(a["labels"]["pop"] for a in groups[0]["alerts"]) == sorted(POPS)
        for a in groups[0]["alerts"]:
            assert {k: a["labels"][k] for k in ("member", "mac", "severity", "lan", "source")} == {
                "member": "Storm Networks", "mac": PEER1_MAC, "severity": "critical", "lan": "peering",
                "source": "ixpect"}
            assert a["status"]["state"] == "active"

        # the NOC silences that member in Alertmanager: what the monitors send keeps being suppressed
        now = datetime.now(timezone.utc)
        silence = http_json(f"{am}/api/v2/silences", {
            "matchers": [{"name": "asn", "value": "64500", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "noc", "comment": "member informed, working on it"}, "POST")["silenceID"]
        storm(lan, "peer1", PEER1_MAC, 2)
        storm(lan, "peer2", PEER2_MAC, 2)
        wait_for(lambda: len(alerts(am, "64501")) == 2, what="the other member's alerts")
        for a in alerts(am, "64500"):
            assert a["status"] == {"state": "suppressed", "silencedBy": [silence], "inhibitedBy": []}
        assert {a["status"]["state"] for a in alerts(am, "64501")} == {"active"}
        assert alerts(am, "64500", silenced="false") == []
        groups = http_json(f"{am}/api/v2/alerts/groups?silenced=false")
        assert [g["labels"]["asn"] for g in groups if g["labels"].get("alertname") == BUM] == ["64501"]

        # Prometheus sees both monitors, per PoP and per member
        wait_for(lambda: len(query(prom, f'sum by (pop) (ixpect_member_events_total{{asn="64500",type="{BUM}"}})'))
                 == 2, timeout=30, what="the member's events from both PoPs in Prometheus")
        assert {r["metric"]["pop"] for r in query(prom, 'up{job="ixpect"} == 1')} == set(POPS)
        rules = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
        assert [r["health"] for g in rules for r in g["rules"]] == ["ok"] * 9, rules

        # the exposition passes promtool, and the dashboard's queries run on what it has
        exposition = {}
        for pop, port in ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout + lint.stderr
            exposition[pop] = text
        check_dashboard(prom, exposition["fra1"])

        # the storm is over: the alerts resolve after resolve_after
        wait_for(lambda: alerts(am, "64501") == [] and alerts(am, "64500") == [], timeout=30,
                 what="the alerts to resolve")

        # nothing reaches either monitor any more: each says it may be blind, and stays firing
        silent = wait_for(lambda: len(got := alerts(am, None, "IXPECT_CAPTURE_SILENT")) == 2 and got,
                          what="both monitors' blind alerts")
        assert sorted(a["labels"]["pop"] for a in silent) == sorted(POPS)
        assert all(a["labels"]["severity"] == "critical" and a["status"]["state"] == "active" for a in silent)
        time.sleep(6)  # longer than resolve_after
        assert len(alerts(am, None, "IXPECT_CAPTURE_SILENT")) == 2
        assert {r["metric"]["pop"] for r in query(prom, "ixpect_capture_silent == 1")} == set(POPS)
        # the LAN speaks again: the blind alerts end
        lan.send("peer1", [Ether(src=PEER1_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.1") / UDP(dport=9)])
        wait_for(lambda: alerts(am, None, "IXPECT_CAPTURE_SILENT") == [], what="the blind alerts to end")


def check_dashboard(prom: str, exposition: str) -> None:
    """Every metric a query names is in the live exposition, and every query runs."""
    names = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))  # a family without samples too
    exprs = dashboard_queries()
    used = {n for e in exprs for n in re.findall(r"\bixpect_[a-z0-9_]+", e)}
    assert len(exprs) >= 12 and used and not used - names, used - names
    for e in exprs:
        if e.startswith("label_values("):
            metric, _, label = e.removeprefix("label_values(").removesuffix(")").rpartition(", ")
            e = f"count by ({label}) ({metric})"
        e = re.sub(r"\$__rate_interval|\$__range", "1m", e)
        e = re.sub(r"\$\{?\w+\}?", ".*", e)
        query(prom, e)
