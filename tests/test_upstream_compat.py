"""Compatibility with DD-IX's IXpect, end to end: the DD-IX-style config of
tests/data/ddix.conf.yaml (its NixOS `settings` as YAML) with an upstream-style
template directory (email.html.j2) runs `ixpect run` over one capture; the events
(--jsonl), the log notifier's lines, the mails read back from a real aiosmtpd
(STARTTLS on a submission port, AUTH PLAIN, `encryption: TLS` as written) and the
messages of a catch-all chat channel are asserted.

The capture holds what upstream reports and what it does not: an ARP reply with a
bogon target (upstream judges requests only), ARP whose sender MAC is not the frame's
source (ARP_SENDER_MISMATCH, unknown upstream) and a truncated frame (IXPECT_BAD_PACKET):
none of these may reach a channel the upstream config has, only the --jsonl stream."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import ssl
import subprocess
from collections import Counter

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from notifyutil import Recorder, free_port, make_cert
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from conftest import IXPECT, REPO

DDIX = REPO / "tests" / "data" / "ddix.conf.yaml"
TEMPLATES = REPO / "tests" / "data" / "upstream-templates"
USER, PASSWORD = "noreply@example.net", "mail-pass"
A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BC = "ff:ff:ff:ff:ff:ff"
T0 = 1761426000.0


def capture() -> list:
    """One frame per case, a second apart (all in one collection window)."""
    def arp(src, psrc, pdst, op=1, hwsrc=None):
        return Ether(src=src, dst=BC) / ARP(op=op, hwsrc=hwsrc or src, psrc=psrc, pdst=pdst)

    def ra(src, ip):
        return Ether(src=src, dst="33:33:00:00:00:01") / IPv6(src=ip, dst="ff02::1", hlim=255) / ICMPv6ND_RA()

    frames = [
        arp(A, "192.0.2.200", "192.0.2.201"),                # learned: ARP_NEIGHBOR_NEW_DYNAMIC
        arp(B, "192.0.2.201", "192.0.2.200", op=2),          # learned from a reply
        arp(A, "198.51.100.7", "192.0.2.201"),               # bogon sender in a request
        arp(B, "192.0.2.201", "203.0.113.9", op=2),          # bogon target in a reply: not upstream's
        arp(C, "192.0.2.200", "192.0.2.201", hwsrc=A),       # A's pair, sent by C: ARP_SENDER_MISMATCH
        arp(C, "192.0.2.201", "192.0.2.200"),                # C claims B's address
        ra(B, "fe80::b"),
        ra(C, "2001:db8:99::1"),                             # RA from a bogon source
        Ether(src=A, dst="33:33:ff:00:00:0b") / IPv6(src="2001:db8:15b:1::a", dst="ff02::1:ff00:b", hlim=255)
        / ICMPv6ND_NS(tgt="2001:db8:15b:1::b") / ICMPv6NDOptSrcLLAddr(lladdr=A),
        Dot3(src=C, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP(),
        Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + bytes(40)),
        Ether(bytes(Ether(src=B, dst=BC, type=0x0806)) + bytes(6)),  # truncated ARP: IXPECT_BAD_PACKET
    ]
    for i, f in enumerate(frames):
        f.time = T0 + i
    return frames


#: the events of the capture, as upstream reports them, plus the two it does not know
UPSTREAM_EVENTS = Counter({
    "ARP_NEIGHBOR_NEW_DYNAMIC": 3, "ARP_BOGON_SOURCE": 1, "ARP_NEIGHBOR_SPOOFED_DYNAMIC": 1,
    "IPV6_ROUTER_ADVERTISEMENT": 2, "IPV6_BOGON_SOURCE": 1, "IPV6_NEIGHBOR_NEW_DYNAMIC": 1,
    "STP_PACKET_FOUND": 1, "ETHER_TYPE_VIOLATION": 2,
})
UNASKED = Counter({"ARP_SENDER_MISMATCH": 1, "IXPECT_BAD_PACKET": 1})


class Mailbox:
    def __init__(self):
        self.mails, self.logins = [], []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((mechanism, server.transport.get_extra_info("ssl_object") is not None))
        return AuthResult(success=(auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode()))


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """Run the DD-IX config over the capture once; everything the tests read."""
    tmp = tmp_path_factory.mktemp("compat")
    cert, key = make_cert(tmp)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=box.authenticate,
                      tls_context=ctx, require_starttls=True, auth_require_tls=True, auth_required=True)
    smtp.start()
    chat = Recorder()
    try:
        cfg = yaml.safe_load(DDIX.read_text())
        mail = cfg["event"]["notifiers"]["email"]
        mail["smtp"].update(host="127.0.0.1", port=smtp.port)  # still `encryption: TLS`
        (tmp / "pass").write_text(PASSWORD + "\n")
        mail["smtp"]["auth"]["pass"]["file"] = str(tmp / "pass")
        cfg["event"]["templates_dir"] = str(TEMPLATES)  # what the NixOS module makes of templateDir
        cfg["event"]["notifiers"]["slack"] = {"channels": [{"webhook_url": f"{chat.url}/hook"}]}  # catch-all
        conf = tmp / "ixpect.conf.yaml"
        conf.write_text(yaml.safe_dump(cfg))
        wrpcap(str(tmp / "capture.pcap"), capture())
        proc = subprocess.run([*IXPECT, "run", "-c", conf, "--pcap", tmp / "capture.pcap", "--jsonl", "-"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SSL_CERT_FILE": str(cert)})
        yield proc, box, [r["text"] for r in chat.delivered("/hook")]
    finally:
        smtp.stop()
        chat.close()


def test_events_are_upstreams_plus_the_unasked_two(replay):
    proc, _, _ = replay
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert Counter(e["type"] for e in events) == UPSTREAM_EVENTS + UNASKED
    bogons = [e["data"] for e in events if e["type"] == "ARP_BOGON_SOURCE"]
    assert bogons == [{"mac_addr_source": A, "ip4_addr_source": "198.51.100.7"}]  # the reply's target is not judged


def test_log_channel_gets_one_line_per_batch_of_its_types(replay):
    proc, _, _ = replay
    logged = Counter(m.group(1) for m in re.finditer(r"^([A-Z0-9_]+) x(\d+) ", proc.stderr, re.M))
    assert logged == UPSTREAM_EVENTS  # one event per batch here; every type is on the log's list


def test_mail_goes_over_starttls_with_the_upstream_template(replay):
    proc, box, _ = replay
    assert box.logins == [("PLAIN", True)]
    assert "with STARTTLS (encryption: tls)" in proc.stderr
    ((to, msg),) = box.mails  # the channel wants IPV6_ROUTER_ADVERTISEMENT only
    assert to == ["alert@example.net"]
    assert msg["Subject"] == "[IXpect] IPV6_ROUTER_ADVERTISEMENT triggered in 2 batches"
    html = msg.get_body(("html",)).get_content()
    assert "<h1>IPV6_ROUTER_ADVERTISEMENT triggered in 2 batches</h1>" in html
    events = {e["data"]["ip6_addr_source"]: e for e in map(json.loads, proc.stdout.splitlines())
              if e["type"] == "IPV6_ROUTER_ADVERTISEMENT"}
    rows = re.findall(r"<td>(\d+)</td>\s*<td>(\S+)</td>\s*<td>(\S+)</td>\s*<td>\s*<pre>(.*?)</pre>", html)
    assert sorted((size, ts, json.loads(data.replace("&#34;", '"'))["ip6_addr_source"]) for size, ts, _, data in rows) \
        == sorted(("1", e["timestamp"], ip) for ip, e in events.items())
    assert sorted(att.get_filename() for att in msg.iter_attachments()) == sorted(f"{i}.pcap" for *_, i, _ in rows)


def test_catch_all_chat_gets_every_upstream_type_and_nothing_else(replay):
    _, _, texts = replay
    announced = Counter()
    for text in texts:
        name, batches = re.match(r"\*\[IXpect\] (\S+) triggered in (\d+) batches", text).groups()
        announced[name] += int(batches)
    assert announced == UPSTREAM_EVENTS
