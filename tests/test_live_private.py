"""A monitor installed where the user it drops to cannot read (a checkout or venv
under /root, mode 0700): everything it may need is loaded before privileges go,
so the probes and notifiers work, and so does a reload that enables the rest."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from notifyutil import Recorder, free_port
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether

from conftest import REPO, wait_for
from livenet import IXPECT, PEER1_MAC, PEER2_MAC, lan, monitor_ns, needs_root, netns_up, stop  # noqa: F401

pytestmark = [needs_root, pytest.mark.netns]


def test_a_private_installation_still_probes_notifies_and_reloads(lan, monitor_ns, tmp_path):  # noqa: F811
    private = tmp_path / "private"  # the checkout, out of nobody's reach
    shutil.copytree(REPO / "ixpect", private / "ixpect", ignore=shutil.ignore_patterns("__pycache__"))
    private.chmod(0o700)
    public = Path(tempfile.mkdtemp(prefix="ixpect-conf-"))  # /etc/ixpect: readable for a reload
    public.chmod(0o755)
    sink, mails = Recorder(), []

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope.content.decode())
            return "250 OK"
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    host_end, _ = lan.monitor_port()
    netns_up("--name", monitor_ns, "--interface", host_end)
    conf, log = public / "ixpect.conf.yaml", tmp_path / "run.log"
    cfg = {"probes": {"arp_neighbor": {"enable": True, "static_resolutions": [{"ip": "192.0.2.1", "mac": PEER1_MAC}]}},
           "event": {"collection_window": "1s", "notifiers": {"http": {"channels": [{"url": sink.url + "/http"}]}}}}
    conf.write_text(yaml.safe_dump(cfg))
    with open(log, "w") as err:
        proc = subprocess.Popen([*IXPECT, "run", "-c", conf, "--interface", host_end, "--netns", monitor_ns,
                                 "--user", "nobody"], cwd=private, stderr=err)  # imports come from `private`
    try:
        wait_for(lambda: "capturing from" in log.read_text() or proc.poll() is not None, what="the capture")
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert f"{private}/ixpect/_frames" in maps, "not running from the private copy"
        lan.send("peer2", [Ether(src=PEER2_MAC, dst="ff:ff:ff:ff:ff:ff")  # peer2 claims peer1's address
                           / ARP(op=2, hwsrc=PEER2_MAC, psrc="192.0.2.1", pdst="192.0.2.1")])
        wait_for(lambda: sink.delivered("/http"), what="the http notifier")

        cfg["probes"].update({name: {"enable": True} for name in (
            "stp", "l2_protocol", "ip_control", "mac_address", "ipv6_router", "ipv6_neighbor", "bum_rate")})
        cfg["event"]["notifiers"].update({
            "slack": {"channels": [{"webhook_url": sink.url + "/slack"}]},
            "alertmanager": {"channels": [{"url": sink.url + "/am"}]},
            "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "encryption": "none"},
                      "from": "ixpect@ix.example", "channels": [{"to": ["noc@ix.example"]}]}})
        conf.write_text(yaml.safe_dump(cfg))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text() or proc.poll() is not None, what="the reload")
        lan.send("peer1", [Dot3(src=PEER1_MAC, dst="01:80:c2:00:00:00") / LLC() / STP()])
        for path in ("/slack", "/am"):
            wait_for(lambda: any(r["path"].startswith(path) and b"STP_PACKET_FOUND" in r["body"] for r in sink.requests),
                     what=path)
        wait_for(lambda: any("STP_PACKET_FOUND" in mail for mail in mails), what="the mail")
        assert stop(proc) == 0
    finally:
        stop(proc)
        sink.close()
        smtp.stop()
        shutil.rmtree(public)
    text = log.read_text()
    assert "running as uid 65534" in text and "Traceback" not in text and "Error" not in text, text
