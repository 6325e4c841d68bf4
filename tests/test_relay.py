"""The capture -> notify relay without namespaces: wire format, outbox, journal, dedup."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ixpect import relay
from ixpect.collector import Collector
from ixpect.events import Batch, Event
from ixpect.relay import Decoder, ProtocolError, Receiver, Sender, encode
from ixpect.vxlan import VxlanSource, parse_endpoint


def ev(i: int, ts: float = 1000.0) -> Event:
    return Event("ARP_NEIGHBOR_NEW_DYNAMIC", ts, {"ip4_addr": f"10.0.0.{i}", "mac_addr": "02:00:00:00:00:01"},
                 b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06")


def test_decoder_reassembles_split_messages_and_rejects_garbage():
    wire = encode({"ack": ["a"]}) + encode({"ack": ["b", "c"]})
    d = Decoder()
    assert d.feed(wire[:3]) == [] and d.feed(wire[3:9]) == []
    assert d.feed(wire[9:]) == [{"ack": ["a"]}, {"ack": ["b", "c"]}]
    with pytest.raises(ProtocolError, match="exceeds"):
        Decoder().feed(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="not JSON"):
        Decoder().feed(b"\0\0\0\x03abc")


class Notify:
    """A Receiver served by a thread, with a collector whose windows are recorded."""

    def __init__(self, path, state_dir):
        self.windows: list[list[Batch]] = []
        self.collector = Collector(60.0, self._deliver)
        self.receiver = Receiver(str(path), str(state_dir), self.collector)
        self.receiver.replay()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _deliver(self, batches):
        self.windows.append(batches)
        self.receiver.window_delivered()

    def _serve(self):
        while self.running:
            self.receiver.poll(0.05)

    def crash(self):
        """Stop serving without flushing anything (what kill -9 leaves behind)."""
        self.running = False
        self.thread.join()
        for sock in self.receiver.clients:
            sock.close()
        self.receiver.server.close()


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_events_survive_a_crash_of_notify_and_a_restart_of_capture(tmp_path):
    path = tmp_path / "notify.sock"
    events = [ev(i) for i in range(8)]
    sender = Sender(str(path), str(tmp_path / "capture"))  # notify is not there yet: it retries
    for e in events[:5]:
        sender.add(e)
    notify = Notify(path, tmp_path / "notify")
    wait(lambda: not sender.pending)
    assert len(notify.collector.batches) == 5
    notify.crash()  # the open window exists only in the journal now

    for e in events[5:]:
        sender.add(e)
    sender.close(0)  # capture stops before notify is back: the outbox keeps them
    sender = Sender(str(path), str(tmp_path / "capture"))
    assert len(sender.pending) == 3
    sender.add(events[3])  # as if capture resent an event notify has already seen
    notify = Notify(path, tmp_path / "notify")  # replays the 5 journaled events
    wait(lambda: not sender.pending)
    sender.close(1)
    assert notify.receiver.duplicates == 1
    notify.collector.flush()
    notify.crash()
    (window,) = notify.windows
    assert sorted(b.data["ip4_addr"] for b in window) == [f"10.0.0.{i}" for i in range(8)]
    assert all(b.count == 1 for b in window)

    # the window is delivered: a restart replays nothing and still knows the ids
    notify = Notify(path, tmp_path / "notify")
    assert notify.collector.batches == {} and notify.receiver.seen
    notify.crash()


def test_a_flood_is_journalled_as_a_snapshot_of_the_window(tmp_path, monkeypatch):
    monkeypatch.setattr(relay, "JOURNAL_MAX", 50)
    monkeypatch.setattr(relay, "PENDING_MAX", 400)
    path = tmp_path / "notify.sock"
    sender = Sender(str(path))
    flood = [Event("ARP_NEIGHBOR_SPOOFED_STATIC", 1000.0 + i / 1000, {"ip4_addr": "192.0.2.1"}) for i in range(420)]
    for e in flood:
        sender.add(e)
    assert len(sender.pending) == 400 and sender.dropped == 20  # bounded while notify is away
    notify = Notify(path, tmp_path / "notify")
    wait(lambda: not sender.pending)
    sender.close(1)
    notify.crash()
    journal = (tmp_path / "notify" / "relay-journal.jsonl").read_text().splitlines()
    assert len(journal) <= 2 + 50  # seen ids, the snapshot, the events after it
    notify = Notify(path, tmp_path / "notify")
    (batch,) = notify.collector.batches.values()
    assert batch.count == 400 and batch.first == 1000.0
    assert batch.id == Batch.of(flood[0]).id
    notify.crash()


def test_a_window_rebuilt_from_the_journal_keeps_its_batch_ids():
    e = ev(1)
    assert Batch.of(e).id == Batch.of(e).id != Batch.of(ev(1)).id


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:4789", ("127.0.0.1", 4789)), ("[::1]:8472", ("::1", 8472)), (":4789", ("::", 4789))])
def test_vxlan_endpoints(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["4789", "host.example:4789", "127.0.0.1:0", "127.0.0.1:http"])
def test_vxlan_endpoint_errors(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_vxlan_header_checks():
    src = VxlanSource(f"127.0.0.1:{free_port()}", vni=42)
    try:
        frame = bytes(14)
        assert src.decap(b"\x08\0\0\0\0\0\x2a\0" + frame) == frame
        assert src.decap(b"\x08\0\0\0\0\0\x2b\0" + frame) is None  # another VNI
        assert src.decap(b"\0\0\0\0\0\0\x2a\0" + frame) is None  # I flag clear
        assert src.decap(b"\x08\0\0\0\0\0\x2a\0" + frame[:13]) is None  # no Ethernet header
        assert (src.received, src.malformed, src.foreign) == (4, 2, 1)
    finally:
        src.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
