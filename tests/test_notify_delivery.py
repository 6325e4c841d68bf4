"""Routing, retries, spool and shutdown of the delivery component, with real HTTP
servers on loopback as destinations."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time

import pytest
from notifyutil import RETRY, Recorder, arp_batch, free_port

from conftest import wait_for

from ixpect.collector import Collector
from ixpect.config import load
from ixpect.events import Batch, Event
from ixpect.notify import channels
from ixpect.notify.delivery import Delivery


@pytest.fixture
def rec():
    r = Recorder()
    yield r
    r.close()


def hook(url, events=None, **extra):
    return {"url": url, "timeout": 5.0, "events": events or [], **extra}


def types(bodies):
    return sorted(b["type"] for body in bodies for b in body["batches"])


def window():
    return [arp_batch(type="ARP_NEIGHBOR_SPOOFED_STATIC"), arp_batch(type="STP_PACKET_FOUND"),
            arp_batch(type="ETHER_TYPE_VIOLATION"), arp_batch(type="IPV6_ROUTER_ADVERTISEMENT")]


def test_routing_each_channel_gets_exactly_its_events(rec):
    d = Delivery(channels({"http": {"channels": [
        hook(rec.url + "/arp", ["ARP_NEIGHBOR_SPOOFED_STATIC"]),
        hook(rec.url + "/l2", ["STP_PACKET_FOUND", "ETHER_TYPE_VIOLATION"]),
        hook(rec.url + "/all"),
    ]}}), **RETRY)
    d(window())
    d([arp_batch(type="IPV6_BOGON_SOURCE")])  # admitted by the catch-all only
    wait_for(lambda: len(rec.requests) == 4, what="four requests")
    d.close(1)
    assert types(rec.delivered("/arp")) == ["ARP_NEIGHBOR_SPOOFED_STATIC"]
    assert types(rec.delivered("/l2")) == ["ETHER_TYPE_VIOLATION", "STP_PACKET_FOUND"]
    assert types(rec.delivered("/all")) == sorted([*(b.type for b in window()), "IPV6_BOGON_SOURCE"])


@pytest.mark.parametrize("catch_all", [None, "compatible", "all"])
def test_catch_all_gets_unasked_additions_only_when_opted_in(rec, tmp_path, catch_all):
    """An upstream config's catch-all channel gets upstream's event types, the enabled
    additional probes' and IXPECT_TABLE_FULL; ARP_SENDER_MISMATCH and IXPECT_BAD_PACKET,
    raised without being asked, only where asked for."""
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(f"""
event:
  {f"catch_all: {catch_all}" if catch_all else ""}
  notifiers:
    http:
      channels:
        - url: {rec.url}/all
        - url: {rec.url}/named
          events: [ARP_SENDER_MISMATCH]
""")
    d = Delivery.from_config(load(conf)["event"])
    unasked = [arp_batch(type="ARP_SENDER_MISMATCH"), arp_batch(type="IXPECT_BAD_PACKET")]
    d([*window(), *unasked, arp_batch(type="IXPECT_TABLE_FULL"), arp_batch(type="ROUTING_PROTOCOL_FOUND")])
    wait_for(lambda: len(rec.requests) == 2, what="two requests")
    d.close(1)
    expected = [*window(), arp_batch(type="IXPECT_TABLE_FULL"), arp_batch(type="ROUTING_PROTOCOL_FOUND")]
    expected += unasked if catch_all == "all" else []
    assert types(rec.delivered("/all")) == sorted(b.type for b in expected)
    assert types(rec.delivered("/named")) == ["ARP_SENDER_MISMATCH"]


def test_ixpect_test_goes_through_routing(rec):
    d = Delivery(channels({"http": {"channels": [
        hook(rec.url + "/arp", ["ARP_NEIGHBOR_SPOOFED_STATIC"]),
        hook(rec.url + "/test", ["IXPECT_TEST"]),
        hook(rec.url + "/all"),
    ]}}), **RETRY)
    d.test()
    wait_for(lambda: len(rec.requests) == 2, what="two requests")
    d.close(1)
    assert types(rec.delivered("/test")) == types(rec.delivered("/all")) == ["IXPECT_TEST"]
    assert rec.delivered("/arp") == []


def test_log_notifier_text_and_json(caplog):
    caplog.set_level(logging.INFO, logger="ixpect.events")
    d = Delivery(channels({"log": {"format": "json", "channels": [{"events": ["STP_PACKET_FOUND"]}]}}), **RETRY)
    d(window())
    wait_for(lambda: caplog.records, what="a log line")
    d.close(1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ixpect.events"]
    assert json.loads(line)["type"] == "STP_PACKET_FOUND"
    caplog.clear()
    d = Delivery(channels({"log": {"format": "text", "channels": [{"events": []}]}}), **RETRY)
    d([arp_batch()])
    wait_for(lambda: caplog.records, what="a log line")
    d.close(1)
    assert caplog.records[0].getMessage() == (
        "ARP_NEIGHBOR_SPOOFED_STATIC x3 2025-10-25T21:00:13.123456Z..2025-10-25T21:00:20.500000Z "
        "ip4_addr=192.0.2.1 mac_addr=aa:bb:cc:dd:ee:ff mac_addr_expected=00:11:22:33:44:55 "
        "member=AS64500 (Example & Co)")


def test_a_hanging_destination_blocks_neither_caller_nor_other_channels(rec):
    tarpit = socket.socket()  # accepts connections (kernel backlog), never answers
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(8)
    try:
        url = f"http://127.0.0.1:{tarpit.getsockname()[1]}/hang"
        d = Delivery(channels({"http": {"channels": [hook(url), hook(rec.url + "/ok")]}}), **RETRY)
        start = time.monotonic()
        for _ in range(20):
            d([arp_batch()])
        assert time.monotonic() - start < 0.5
        wait_for(lambda: len(rec.delivered("/ok")) == 20, what="the healthy channel")
        start = time.monotonic()
        d.close(0.3)
        assert time.monotonic() - start < 1.0  # close() honours its timeout
    finally:
        tarpit.close()


def test_backoff_grows_exponentially_with_jitter():
    rec = Recorder([500] * 5)
    try:
        d = Delivery(channels({"http": {"channels": [hook(rec.url)]}}),
                     retry_initial=0.04, retry_max=0.16)
        d([arp_batch()])
        wait_for(lambda: rec.delivered(), what="the delivery")
        d.close(1)
    finally:
        rec.close()
    assert [r["status"] for r in rec.requests] == [500] * 5 + [200]
    times = [r["time"] for r in rec.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # delay n is uniform in [0.5, 1] x min(retry_max, retry_initial * 2**n)
    for gap, full in zip(gaps, [0.04, 0.08, 0.16, 0.16, 0.16]):
        assert gap >= full / 2
    assert sum(gaps) < 5.0


def test_a_refused_message_does_not_hold_up_the_channel(caplog):
    rec = Recorder(reject=b"POISON")
    try:
        d = Delivery(channels({"http": {"channels": [hook(rec.url)]}}), **RETRY)
        d([Batch("ETHER_TYPE_VIOLATION", {"ether_type": "POISON"}, None, 1.0, 1.0)])
        later = [arp_batch(f"192.0.2.{i}") for i in range(1, 4)]
        for batch in later:
            d([batch])
        wait_for(lambda: len(rec.delivered()) == 3, what="the later windows")
        d.close(0.2)
    finally:
        rec.close()
    assert [body["batches"][0]["id"] for body in rec.delivered()] == [b.id for b in later]
    assert sum(r["status"] == 400 for r in rec.requests) >= 1
    assert "http[0]: dropped 1 batches (1 events) at shutdown" in caplog.text


def test_close_makes_one_last_attempt():
    """SIGTERM path: pending work is tried once more before exit, not after a long backoff."""
    rec = Recorder([500])
    try:
        d = Delivery(channels({"http": {"channels": [hook(rec.url)]}}), retry_initial=60, retry_max=60)
        batch = arp_batch()
        d([batch])
        wait_for(lambda: rec.requests, what="the first attempt")
        d.close(5)
        assert [r["status"] for r in rec.requests] == [500, 200]
        assert rec.delivered()[0]["batches"][0]["id"] == batch.id
    finally:
        rec.close()


def test_without_state_dir_undelivered_work_is_counted_as_dropped(caplog):
    dead = Recorder()
    dead.close()
    d = Delivery(channels({"http": {"channels": [hook(dead.url)]}}), **RETRY)
    d([arp_batch(), arp_batch("192.0.2.9", count=4)])
    d([arp_batch()])
    wait_for(lambda: d.backlog() == {"http[0]": 2}, what="two units pending")  # ixpect_notifier_pending
    d.close(0.5)
    assert "http[0]: dropped 3 batches (10 events) at shutdown, undelivered (no state dir)" in caplog.text
    assert d.tally["dropped"] == {"http[0]": 3}


def test_expired_work_is_dropped_with_a_count(tmp_path, caplog):
    dead = Recorder()
    dead.close()
    d = Delivery(channels({"http": {"channels": [hook(dead.url)]}}), tmp_path, **RETRY, max_age=0.3)
    d([arp_batch(), arp_batch("192.0.2.9", count=4)])
    wait_for(lambda: list(tmp_path.glob("spool/*/*.json")), what="the spool file")
    wait_for(lambda: "older than max_age" in caplog.text, what="the drop")
    assert d.backlog() == {"http[0]": 0}
    d.close(0.5)
    assert "http[0]: dropped 2 batches (7 events) older than max_age 0s, undelivered" in caplog.text
    assert list(tmp_path.glob("spool/*/*.json")) == []
    assert d.tally["dropped"] == {"http[0]": 2}  # ixpect_notifier_dropped_batches_total


def test_spool_follows_the_destination_not_the_position(tmp_path):
    """After a restart with the channels reordered, spooled work still goes to the
    destination it was meant for."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    arp, stp = arp_batch(), arp_batch(type="STP_PACKET_FOUND")
    first = [hook(base + "/a", ["ARP_NEIGHBOR_SPOOFED_STATIC"]), hook(base + "/b", ["STP_PACKET_FOUND"])]
    d = Delivery(channels({"http": {"channels": first}}), tmp_path, **RETRY)
    d([arp, stp])
    d.close(0.2)  # nothing listens yet
    assert len(list(tmp_path.glob("spool/*/*.json"))) == 2
    rec = Recorder(port=port)
    try:
        d = Delivery(channels({"http": {"channels": first[::-1]}}), tmp_path, **RETRY)
        wait_for(lambda: len(rec.delivered()) == 2, what="both spooled windows")
        d.close(1)
    finally:
        rec.close()
    assert [x["id"] for x in rec.delivered("/a")[0]["batches"]] == [arp.id]
    assert [x["id"] for x in rec.delivered("/b")[0]["batches"]] == [stp.id]


def test_unknown_and_corrupt_spool_files(tmp_path, rec, caplog):
    spool = tmp_path / "spool"
    (spool / "http-0123456789abcdef").mkdir(parents=True)
    (spool / "http-0123456789abcdef" / "1.0-x.json").write_text(
        json.dumps({"channel": "http[7]", "created": time.time(), "batches": []}))
    (spool / "http-fedcba9876543210").mkdir()
    (spool / "http-fedcba9876543210" / "2.0-y.json").write_text("{not json")
    d = Delivery(channels({"http": {"channels": [hook(rec.url)]}}), tmp_path, **RETRY)
    d.close(1)
    assert "which is no longer configured; kept" in caplog.text
    assert (spool / "http-0123456789abcdef" / "1.0-x.json").exists()
    assert "is unreadable, moved aside" in caplog.text
    assert (spool / "http-fedcba9876543210" / "2.0-y.bad").exists()


def test_templates_dir_overrides_a_builtin(tmp_path, rec):
    (tmp_path / "http.json").write_text('{"n": {{ batches|length }}, "events": {{ events }}}')
    chans = channels({"http": {"channels": [hook(rec.url)]}}, templates_dir=str(tmp_path))
    d = Delivery(chans, **RETRY)
    d([arp_batch(), Batch("STP_PACKET_FOUND", {}, None, 1.0, 1.0, 2)])
    wait_for(lambda: rec.delivered(), what="the request")
    d.close(1)
    assert rec.delivered() == [{"n": 2, "events": 5}]


def test_from_a_config_file(tmp_path, rec):
    """The config loader's output (defaults filled, durations in seconds, paths
    relative to the file) drives Delivery as it is."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "http.json").write_text('{"types": {{ types|tojson }}}')
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(f"""
event:
  templates_dir: templates
  delivery: {{retry_initial: 10ms, retry_max: 20ms, max_age: 1hour}}
  notifiers:
    http:
      channels:
        - url: {rec.url}/all
        - url: {rec.url}/stp
          events: [STP_PACKET_FOUND]
""")
    d = Delivery.from_config(load(conf)["event"], tmp_path / "state")
    assert (d.retry_initial, d.retry_max, d.max_age) == (0.01, 0.02, 3600.0)
    d(window())
    d.test()
    wait_for(lambda: len(rec.delivered()) == 3, what="three requests")
    d.close(1)
    assert rec.delivered("/all") == [{"types": sorted(b.type for b in window())}, {"types": ["IXPECT_TEST"]}]
    assert rec.delivered("/stp") == [{"types": ["STP_PACKET_FOUND"]}]


def test_two_channels_to_one_destination_spool_apart(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/same"
    chans = channels({"http": {"channels": [hook(url, ["STP_PACKET_FOUND"]), hook(url, ["ETHER_TYPE_VIOLATION"])]}})
    assert len({c.key for c in chans}) == 2
    d = Delivery(chans, tmp_path, **RETRY)
    d(window())
    d.close(0.2)
    assert sorted(len(list(p.iterdir())) for p in (tmp_path / "spool").iterdir()) == [1, 1]
    rec = Recorder(port=port)
    try:
        d = Delivery(channels({"http": {"channels": [hook(url, ["STP_PACKET_FOUND"]),
                                                     hook(url, ["ETHER_TYPE_VIOLATION"])]}}), tmp_path, **RETRY)
        wait_for(lambda: len(rec.delivered()) == 2, what="both spooled units")
        d.close(1)
    finally:
        rec.close()
    assert types(rec.delivered()) == ["ETHER_TYPE_VIOLATION", "STP_PACKET_FOUND"]


def test_collector_to_webhook(rec):
    """The capture path's view: events go into the Collector, whose finished window is
    handed to Delivery; the webhook gets the merged batch with its sample frame."""
    d = Delivery(channels({"http": {"channels": [hook(rec.url)]}}), **RETRY)
    collector = Collector(60.0, d)
    frame = arp_batch().sample
    for i in range(5):
        collector.add(Event("ARP_NEIGHBOR_NEW_UNKNOWN", 1000.0 + i, {"ip4_addr": "192.0.2.1",
                                                                   "mac_addr": "aa:bb:cc:dd:ee:ff"}, frame))
    collector.tick(1061.0)
    (body,) = wait_for(lambda: rec.delivered(), what="the window")
    d.close(1)
    (batch,) = body["batches"]
    assert (batch["type"], batch["count"], batch["first"], batch["last"]) == (
        "ARP_NEIGHBOR_NEW_UNKNOWN", 5, "1970-01-01T00:16:40.000000Z", "1970-01-01T00:16:44.000000Z")
    assert base64.b64decode(batch["sample"]) == frame
