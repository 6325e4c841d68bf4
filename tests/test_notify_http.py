"""http, slack and alertmanager notifiers against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from dataclasses import fields
from datetime import datetime

import pytest
import yaml
from notifyutil import RETRY, Recorder, arp_batch, make_cert

from conftest import wait_for

from ixpect import config
from ixpect.events import Batch
from ixpect.notify import NotifierError, channels
from ixpect.notify.delivery import Delivery


@pytest.fixture
def server():
    servers = []

    def start(statuses=None):
        servers.append(Recorder(statuses))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def http_channel(url, **extra):
    return {"url": url, "method": "POST", "content_type": "application/json", "headers": {},
            "verify_tls": True, "timeout": 5.0, "events": [], **extra}


def test_http_default_body_and_headers(server):
    rec = server()
    ch = http_channel(rec.url + "/hook", headers={"Authorization": "Bearer hunter2-token", "X-Site": "fra1"})
    d = Delivery(channels({"http": {"channels": [ch]}}), **RETRY)
    a, b = arp_batch("192.0.2.1"), arp_batch("192.0.2.2", type="ARP_NEIGHBOR_NEW_DYNAMIC", count=1)
    d([a, b])
    (body,) = wait_for(lambda: rec.delivered("/hook"), what="the webhook")
    d.close(1)
    req = rec.requests[0]
    assert req["method"] == "POST"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Authorization"] == "Bearer hunter2-token"
    assert req["headers"]["X-Site"] == "fra1"
    assert [x["id"] for x in body["batches"]] == [a.id, b.id]
    first = body["batches"][0]
    assert first["type"] == "ARP_NEIGHBOR_SPOOFED_STATIC" and first["count"] == 3
    assert first["first"] == "2025-10-25T21:00:13.123456Z"
    assert first["data"] == a.data and first["member"] == {"asn": 64500, "name": "Example & Co"}
    assert base64.b64decode(first["sample"]) == a.sample


def test_http_500_then_200_retries_once_and_delivers_once(server, caplog):
    rec = server([500])
    d = Delivery(channels({"http": {"channels": [http_channel(rec.url + "/hook")]}}), **RETRY)
    d([arp_batch()])
    wait_for(lambda: rec.delivered(), what="the delivery after the retry")
    wait_for(lambda: d.pending() == 0, what="the queue to drain")
    d.close(1)
    assert [r["status"] for r in rec.requests] == [500, 200]
    assert len(rec.delivered()) == 1
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "500 Server Error" in failures[0].getMessage()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_verifies_certificates_by_default(tmp_path, monkeypatch, caplog):
    cert = make_cert(tmp_path)
    rec = Recorder(cert=cert)
    try:
        d = Delivery(channels({"http": {"channels": [http_channel(rec.url + "/verified"),
                                                     http_channel(rec.url + "/unverified", verify_tls=False)]}}),
                     **RETRY)
        d([arp_batch()])
        wait_for(lambda: rec.delivered("/unverified"), what="the unverified channel")
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, what="the verification failure")
        d.close(0.2)
        assert rec.delivered("/verified") == []
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert[0]))  # trust the server's CA
        d = Delivery(channels({"http": {"channels": [http_channel(rec.url + "/verified")]}}), **RETRY)
        d([arp_batch()])
        wait_for(lambda: rec.delivered("/verified"), what="the verified channel")
        d.close(1)
    finally:
        rec.close()


def test_http_custom_template(server, tmp_path):
    rec = server()
    tpl = tmp_path / "ticket.txt"
    tpl.write_text("{% for b in batches %}{{ b.type }} {{ b.data.ip4_addr }} x{{ b.count }}\n{% endfor %}")
    ch = http_channel(rec.url + "/ticket", method="PUT", content_type="text/plain", template=str(tpl))
    d = Delivery(channels({"http": {"channels": [ch]}}), **RETRY)
    d([arp_batch("192.0.2.7")])
    wait_for(lambda: rec.requests, what="the request")
    d.close(1)
    req = rec.requests[0]
    assert (req["method"], req["path"], req["headers"]["Content-Type"]) == ("PUT", "/ticket", "text/plain")
    assert req["body"] == b"ARP_NEIGHBOR_SPOOFED_STATIC 192.0.2.7 x3\n"


def test_slack_one_mrkdwn_message_per_type(server, tmp_path):
    rec = server()
    secret_file = tmp_path / "webhook"
    secret_file.write_text(rec.url + "/services/T0001/B0001/XXXXsecretXXXX\n")
    d = Delivery(channels({"slack": {"channels": [{"webhook_url_file": str(secret_file)}]}}), **RETRY)
    a, b = arp_batch("192.0.2.1"), arp_batch("192.0.2.2", type="STP_PACKET_FOUND")
    d([a, b])
    wait_for(lambda: len(rec.delivered()) == 2, what="two slack messages")
    d.close(1)
    texts = sorted(m["text"] for m in rec.delivered("/services/T0001/B0001/XXXXsecretXXXX"))
    assert texts[0].startswith("*[IXpect] ARP_NEIGHBOR_SPOOFED_STATIC triggered in 1 batches (3 events)*\n• *3×*")
    assert a.id in texts[0] and "Example &amp; Co" in texts[0] and b.id not in texts[0]
    assert texts[1].startswith("*[IXpect] STP_PACKET_FOUND triggered in 1 batches") and b.id in texts[1]


def am_config(url, **channel):
    """An alertmanager notifier section as config.load completes it."""
    cfg = config.load_text(yaml.safe_dump({"event": {"notifiers": {"alertmanager": {
        "labels": {"pop": "fra1", "lan": "peering"},
        "link": "https://portal.example/as{{ member.asn if member else 'unknown' }}/{{ type }}",
        "channels": [{"url": url, **channel}]}}}}))
    return cfg["event"]["notifiers"]


def test_alertmanager_labels(server):
    rec = server()
    d = Delivery(channels(am_config(rec.url)), **RETRY)
    plain = arp_batch("192.0.2.1")  # and one that names the victim of the spoof too:
    spoof = type("Claimed", (Batch,), {})(**{f.name: getattr(plain, f.name) for f in fields(Batch)})
    spoof.member_claimed = {"asn": 64501, "name": "Victim Ltd",
                            "shared_with": [{"asn": 64502, "name": "Victim's Sister"}]}
    bum = Batch("BUM_RATE_BROADCAST_EXCEEDED", {"mac_addr_source": "02:00:00:00:00:01", "count": 900,
                                                "threshold": 100, "window": "1s"}, None, 1.0, 2.0, 4)
    sent = time.time()
    d([spoof, bum])
    (alerts,) = wait_for(lambda: rec.delivered("/api/v2/alerts"), what="the alerts")
    d.close(1)
    host = socket.gethostname()
    assert alerts[0]["labels"] == {"alertname": "ARP_NEIGHBOR_SPOOFED_STATIC", "source": "ixpect", "instance": host,
                                   "pop": "fra1", "lan": "peering", "severity": "critical",
                                   "mac": "aa:bb:cc:dd:ee:ff", "ip": "192.0.2.1", "asn": "64500",
                                   "member": "Example & Co", "claimed_asn": "64501/64502",
                                   "claimed_member": "Victim Ltd / Victim's Sister"}
    assert alerts[0]["startsAt"] == "2025-10-25T21:00:13.123456Z"
    assert alerts[0]["annotations"]["count"] == "3" and alerts[0]["annotations"]["batch_id"] == spoof.id
    assert json.loads(alerts[0]["annotations"]["data"]) == spoof.data
    assert alerts[0]["annotations"]["link"] == alerts[0]["generatorURL"] == \
        "https://portal.example/as64500/ARP_NEIGHBOR_SPOOFED_STATIC"
    # a batch of an old replay ends resolve_after (5min) from now, not from its frame time
    ends = datetime.fromisoformat(alerts[0]["endsAt"].replace("Z", "+00:00")).timestamp()
    assert sent + 300 <= ends <= time.time() + 300
    assert alerts[1]["labels"] == {"alertname": "BUM_RATE_BROADCAST_EXCEEDED", "source": "ixpect", "instance": host,
                                   "pop": "fra1", "lan": "peering", "severity": "critical",
                                   "mac": "02:00:00:00:00:01"}
    assert alerts[1]["generatorURL"] == "https://portal.example/asunknown/BUM_RATE_BROADCAST_EXCEEDED"
    assert all(isinstance(v, str) for a in alerts for v in (*a["labels"].values(), *a["annotations"].values()))


def test_alertmanager_capture_resumed_ends_the_silent_alert(server):
    rec = server()
    d = Delivery(channels(am_config(rec.url)), **RETRY)
    silent = Batch("IXPECT_CAPTURE_SILENT", {"source": "eth1", "silent_for": 60.0}, None, 1000.0, 1000.0)
    resumed = Batch("IXPECT_CAPTURE_RESUMED", {"source": "eth1", "silent_for": 600.0}, None, 1540.0, 1540.0)
    d([silent])
    wait_for(lambda: rec.delivered("/api/v2/alerts"), what="the silent alert")
    d([resumed])
    (fired,), (ended,) = wait_for(lambda: len(got := rec.delivered("/api/v2/alerts")) == 2 and got, what="its end")
    d.close(1)
    assert fired["labels"] == ended["labels"] and fired["labels"]["alertname"] == "IXPECT_CAPTURE_SILENT"
    # it fires until traffic returns, not for resolve_after; then it ends when the traffic returned
    assert datetime.fromisoformat(fired["endsAt"].replace("Z", "+00:00")).timestamp() > time.time() + 86400
    assert ended["endsAt"] == "1970-01-01T00:25:40.000000Z"


def test_alertmanager_cluster_gets_every_alert_and_one_down_is_no_failure(server, caplog):
    up, refusing = server(), server([503] * 100)
    dead = Recorder()
    dead.close()
    notifiers = am_config("http://unused.invalid")
    notifiers["alertmanager"]["channels"] = [{"urls": [dead.url, refusing.url + "/", up.url + "/api/v2/alerts"],
                                              "timeout": 2.0, "verify_tls": True, "events": []}]
    tally = {"deliveries": {}, "failures": {}}
    d = Delivery(channels(notifiers), tally=tally, **RETRY)
    d([arp_batch()])
    wait_for(lambda: up.delivered("/api/v2/alerts"), what="the alert at the live Alertmanager")
    d.close(1)
    assert len(refusing.requests) == 1 and refusing.requests[0]["path"] == "/api/v2/alerts"
    assert tally == {"deliveries": {"alertmanager[0]": 1}, "failures": {"alertmanager[0]": 0}}
    assert "one of 3 Alertmanagers refused: ConnectionError" in caplog.text
    assert "one of 3 Alertmanagers refused: HTTPError: 503" in caplog.text
    # all of them down: a failure, retried
    d = Delivery(channels({"alertmanager": {**notifiers["alertmanager"],
                                            "channels": [{"urls": [dead.url, refusing.url], "timeout": 2.0}]}}),
                 tally=tally, **RETRY)
    d([arp_batch()])
    wait_for(lambda: tally["failures"]["alertmanager[0]"] >= 2, what="retried failures")
    d.close(0.2)


def test_alertmanager_basic_auth_bearer_and_mutual_tls(server, tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "cli").mkdir()
    cert = make_cert(tmp_path / "srv")
    client_cert, client_key = make_cert(tmp_path / "cli")
    (tmp_path / "pw").write_text("s3cret-basic\n")
    rec = Recorder(cert=cert, client_ca=client_cert)
    try:
        notifiers = am_config(rec.url, basic_auth={"username": "ixpect", "password": {"file": str(tmp_path / "pw")}},
                              ca_file=str(cert[0]), cert_file=str(client_cert), key_file=str(client_key))
        d = Delivery(channels(notifiers), **RETRY)
        d([arp_batch()])
        wait_for(lambda: rec.delivered("/api/v2/alerts"), what="the alert over mutual TLS")
        d.close(1)
        auth = rec.requests[0]["headers"]["Authorization"]
        assert base64.b64decode(auth.removeprefix("Basic ")) == b"ixpect:s3cret-basic"

        notifiers = am_config(rec.url, bearer_token="t0ken-for-am", ca_file=str(cert[0]),
                              cert_file=str(client_cert), key_file=str(client_key))
        d = Delivery(channels(notifiers), **RETRY)
        d([arp_batch()])
        wait_for(lambda: len(rec.delivered("/api/v2/alerts")) == 2, what="the alert with a bearer token")
        d.close(1)
        assert rec.requests[1]["headers"]["Authorization"] == "Bearer t0ken-for-am"
        # without the client certificate the server refuses the handshake: a failure, retried
        notifiers = am_config(rec.url, bearer_token="t0ken-for-am", ca_file=str(cert[0]))
        tally = {"deliveries": {}, "failures": {}}
        d = Delivery(channels(notifiers), tally=tally, **RETRY)
        d([arp_batch()])
        wait_for(lambda: tally["failures"]["alertmanager[0]"] >= 1, what="the refused handshake")
        d.close(0.2)
        assert len(rec.delivered("/api/v2/alerts")) == 2
    finally:
        rec.close()


def test_secrets_never_logged(server, caplog):
    """A webhook URL, a header token and a URL password are credentials: failures of
    every kind (refused connection, HTTP error) are logged without them."""
    caplog.set_level(logging.DEBUG)  # urllib3 logs request paths at debug level
    rec = server([500] * 3)
    dead = Recorder()
    dead.close()  # a port that refuses connections
    chans = channels({
        "slack": {"channels": [{"webhook_url": dead.url + "/services/T1/B1/SLACKSECRET1"}]},
        "http": {"channels": [http_channel(rec.url + "/h?token=QUERYSECRET2",
                                           headers={"Authorization": "Bearer HEADERSECRET3"})]},
        "alertmanager": {"channels": [{"url": "http://am:URLPASSWORD4@" + dead.url[7:], "timeout": 1.0}]},
    })
    d = Delivery(chans, **RETRY)
    d([arp_batch()])
    wait_for(lambda: sum("failed" in r.getMessage() for r in caplog.records) >= 6, what="failures")
    d.close(0.2)
    text = caplog.text
    for name in ("slack[0]", "http[0]", "alertmanager[0]"):
        assert f"{name}: delivery of 1 batches (3 events) failed" in text
    assert "delivery of 1 batches (3 events) failed: HTTPError: 500 Server Error" in text
    assert "ConnectionError" in text
    assert '"POST *** HTTP/1.1" 500' in text  # urllib3's own line, scrubbed
    for secret in ("SLACKSECRET1", "QUERYSECRET2", "HEADERSECRET3", "URLPASSWORD4"):
        assert secret not in text


def test_alertmanager_link_that_fails_to_render_does_not_hold_the_alert_back(server, caplog):
    rec = server()
    notifiers = am_config(rec.url)
    notifiers["alertmanager"]["link"] = "https://portal.example/{{ data.count // 0 }}"  # valid; fails: no count
    d = Delivery(channels(notifiers), **RETRY)
    d([arp_batch()])
    (alerts,) = wait_for(lambda: rec.delivered("/api/v2/alerts"), what="the alert")
    d.close(1)
    assert "link" not in alerts[0]["annotations"] and "generatorURL" not in alerts[0]
    assert "link template failed for ARP_NEIGHBOR_SPOOFED_STATIC, sent without link: UndefinedError" in caplog.text


def test_alertmanager_tls_file_that_cannot_be_read_is_an_error_at_start(tmp_path):
    with pytest.raises(NotifierError, match="missing-ca.pem: cannot read: No such file"):
        channels(am_config("https://127.0.0.1:9093", ca_file=str(tmp_path / "missing-ca.pem")))
