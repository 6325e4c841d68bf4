"""The email notifier against a real aiosmtpd server on loopback with STARTTLS
(certificate made here) and AUTH PLAIN."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from notifyutil import RETRY, arp_batch, free_port, make_cert

from conftest import wait_for
from scapy.utils import rdpcap

from ixpect import config
from ixpect.events import Batch
from ixpect.notify import channels
from ixpect.notify.delivery import Delivery
from ixpect.pcapwrite import pcap

USER, PASSWORD = "ixpect", "correct-horse-battery"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


class Mailbox:
    def __init__(self):
        self.mails = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((envelope.mail_from, envelope.rcpt_tos, msg))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.logins.append((mechanism, auth_data.login.decode(), tls))
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture
def smtp(cert, monkeypatch):
    """Factory for SMTP servers (STARTTLS required, AUTH required) on a given port."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # the notifier verifies the server
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    started = []

    def start(port, implicit_tls=False):
        box = Mailbox()
        # aiosmtpd's auth_require_tls knows only STARTTLS; Mailbox records TLS itself
        tls = ({"ssl_context": ctx, "auth_require_tls": False, "auth_required": False} if implicit_tls
               else {"tls_context": ctx, "require_starttls": True, "auth_require_tls": True,
                     "auth_required": True})
        ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, **tls)
        ctl.start()
        started.append(ctl)
        return box

    yield start
    for ctl in started:
        ctl.stop()


def email_cfg(port, password=PASSWORD, encryption="starttls", mechanism="plain", **channel):
    return {"email": {"smtp": {"host": "127.0.0.1", "port": port, "encryption": encryption,
                               "auth": {"mechanism": mechanism, "user": USER, "pass": password}},
                      "from": "IXpect <ixpect@ix.example>",
                      "channels": [{"to": ["noc@ix.example", "peering@ix.example"], "events": [], **channel}]}}


def test_mail_per_type_with_parts_and_pcap(smtp, tmp_path):
    port = free_port()
    box = smtp(port)
    d = Delivery(channels(email_cfg(port)), **RETRY)
    a, b = arp_batch("192.0.2.1"), arp_batch("192.0.2.2", count=5)
    stp = Batch("STP_PACKET_FOUND", {"mac_addr_source": "02:00:00:00:00:01",
                                     "mac_addr_destination": "01:80:c2:00:00:00"}, None, 1.0, 1.0)
    d([a, stp, b])
    wait_for(lambda: len(box.mails) == 2, what="two mails")
    d.close(1)
    assert box.logins == [("PLAIN", USER, True), ("PLAIN", USER, True)]
    mails = {m["Subject"]: (frm, to, m) for frm, to, m in box.mails}
    frm, to, arp = mails["[IXpect] ARP_NEIGHBOR_SPOOFED_STATIC triggered in 2 batches"]
    assert frm == "ixpect@ix.example" and to == ["noc@ix.example", "peering@ix.example"]
    assert arp["To"] == "noc@ix.example, peering@ix.example"
    text = arp.get_body(("plain",)).get_content()
    html = arp.get_body(("html",)).get_content()
    for batch in (a, b):
        assert f"id {batch.id}" in text and f"<code>{batch.id}</code>" in html
    assert "5 events, first 2025-10-25T21:00:13.123456Z" in text and "member: AS64500 (Example & Co)" in text
    assert "<td>5</td><td>2025-10-25T21:00:13.123456Z</td>" in html and "Example &amp; Co" in html
    attachments = {p.get_filename(): p for p in arp.iter_attachments()}
    assert set(attachments) == {f"{a.id}.pcap", f"{b.id}.pcap"}
    for batch in (a, b):
        part = attachments[f"{batch.id}.pcap"]
        assert part.get_content_type() == "application/vnd.tcpdump.pcap"
        path = tmp_path / part.get_filename()
        path.write_bytes(part.get_content())
        (pkt,) = rdpcap(str(path))
        assert bytes(pkt) == batch.sample and pkt.psrc == batch.data["ip4_addr"]
        assert float(pkt.time) == pytest.approx(batch.first, abs=1e-6)
    _, _, stp_mail = mails["[IXpect] STP_PACKET_FOUND triggered in 1 batches"]
    assert list(stp_mail.iter_attachments()) == []  # no sample frame, no attachment
    assert "mac_addr_destination=01:80:c2:00:00:00" in stp_mail.get_body(("plain",)).get_content()


def test_pcap_writer_round_trips_through_scapy(tmp_path):
    frames = [arp_batch(f"192.0.2.{i}").sample for i in range(3)]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap([(1761426013.000001 + i, f) for i, f in enumerate(frames)]))
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == frames
    assert [float(p.time) for p in pkts] == pytest.approx([1761426013.000001 + i for i in range(3)], abs=1e-6)
    assert pkts.listname and pkts[0].name == "Ethernet"


def test_smtps_is_implicit_tls_on_any_port_with_auth_login(smtp):
    port = free_port()
    box = smtp(port, implicit_tls=True)
    d = Delivery(channels(email_cfg(port, encryption="smtps", mechanism="login")), **RETRY)
    d([arp_batch()])
    wait_for(lambda: box.mails, what="the mail")
    d.close(1)
    assert box.logins == [("LOGIN", USER, True)]
    assert box.mails[0][2]["Subject"] == "[IXpect] ARP_NEIGHBOR_SPOOFED_STATIC triggered in 1 batches"


def send_one(port: int, encryption: str | None) -> Delivery:
    """One batch through a mail channel configured as an operator would, read by config.load."""
    cfg = email_cfg(port, encryption=encryption or "tls")
    if encryption is None:
        del cfg["email"]["smtp"]["encryption"]
    notifiers = config.load_text(json.dumps({"event": {"notifiers": cfg}}))["event"]["notifiers"]
    d = Delivery(channels(notifiers), **RETRY)
    d([arp_batch()])
    return d


@pytest.mark.parametrize("encryption", ["TLS", "tls", None])
def test_tls_on_the_submission_port_is_starttls(smtp, caplog, encryption):
    """DD-IX's deployments write `encryption: TLS` with port 587 (STARTTLS): it must deliver."""
    caplog.set_level(logging.INFO, logger="ixpect")
    port = free_port()
    box = smtp(port)  # STARTTLS required before AUTH
    d = send_one(port, encryption)
    wait_for(lambda: box.mails, what="the mail")
    d.close(1)
    assert box.logins == [("PLAIN", USER, True)]
    assert f"via 127.0.0.1:{port} with STARTTLS" in caplog.text


@pytest.mark.parametrize("encryption", ["TLS", None])
def test_tls_on_port_465_is_implicit_tls(smtp, caplog, encryption):
    caplog.set_level(logging.INFO, logger="ixpect")
    try:
        box = smtp(465, implicit_tls=True)
    except OSError as exc:
        pytest.skip(f"port 465 on loopback is taken: {exc}")
    d = send_one(465, encryption)
    wait_for(lambda: box.mails, what="the mail")
    d.close(1)
    assert box.logins == [("PLAIN", USER, True)]
    assert "via 127.0.0.1:465 with implicit TLS" in caplog.text


def test_server_down_then_up_delivers_every_batch_once(smtp, tmp_path, caplog):
    port = free_port()
    d = Delivery(channels(email_cfg(port)), tmp_path, **RETRY)
    windows = [[arp_batch(f"192.0.2.{i}")] for i in range(1, 4)]
    for w in windows:
        d(w)
    wait_for(lambda: sum("failed" in r.getMessage() for r in caplog.records) >= 3, what="failures")
    spooled = list(tmp_path.glob("spool/*/*.json"))
    assert len(spooled) == 3  # every window is on disk while the relay is down
    box = smtp(port)
    wait_for(lambda: d.pending() == 0, what="the queue to drain")
    d.close(1)
    delivered = [att.get_filename() for _, _, m in box.mails for att in m.iter_attachments()]
    assert sorted(delivered) == sorted(f"{w[0].id}.pcap" for w in windows)
    assert list(tmp_path.glob("spool/*/*")) == []


def test_spool_survives_restart(smtp, tmp_path):
    port = free_port()
    chans = email_cfg(port)
    d = Delivery(channels(chans), tmp_path, **RETRY)
    batch = arp_batch()
    d([batch])
    d.close(0.3)  # relay down: the last attempt fails, the window stays in the spool
    assert len(list(tmp_path.glob("spool/*/*.json"))) == 1
    box = smtp(port)
    d = Delivery(channels(chans), tmp_path, **RETRY)
    wait_for(lambda: box.mails, what="the spooled mail")
    wait_for(lambda: d.pending() == 0, what="the queue to drain")
    d.close(1)
    (att,) = box.mails[0][2].iter_attachments()
    assert att.get_filename() == f"{batch.id}.pcap" and len(box.mails) == 1
    assert list(tmp_path.glob("spool/*/*")) == []


def test_wrong_password_is_retried_and_never_logged(smtp, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="ixpect")
    port = free_port()
    box = smtp(port)
    secret_file = tmp_path / "smtp-pass"
    secret_file.write_text("WRONG-secret-pass\n")
    cfg = email_cfg(port, password=None)
    auth = cfg["email"]["smtp"]["auth"]
    del auth["pass"]
    auth["pass_file"] = str(secret_file)
    d = Delivery(channels(cfg), **RETRY)
    d([arp_batch()])
    wait_for(lambda: len(box.logins) >= 2, what="two login attempts")
    d.close(0.2)
    assert box.mails == []
    assert "SMTPAuthenticationError" in caplog.text
    assert "WRONG-secret-pass" not in caplog.text
