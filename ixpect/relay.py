"""The link between `ixpect capture` and `ixpect notify`: events over a unix socket,
at least once, across a restart or a kill -9 of either side.

Wire format, both directions: a 4-byte big-endian length, then one JSON object.
capture -> notify: {"event": {"id", "type", "ts", "data", "member", "member_claimed",
                              "frame" (base64 or null)}}
  (any local process that can connect is a client: notify checks every event against
  `event_from_wire`, bounds messages, clients and unread acknowledgements, and never
  blocks on one client)
capture -> notify: {"metrics": {...}}, capture's counters every few seconds (ixpect.metrics;
  neither journaled nor acknowledged: the next one supersedes it).
notify -> capture: {"ack": [id, ...]}, sent once the events are in notify's journal.

The capture side (Sender) writes every event to its outbox file before sending and
forgets it only when acknowledged; on (re)connect it sends everything unacknowledged,
oldest first; it keeps at most PENDING_MAX of them (a flood while notify is away),
dropping and counting the rest. The notify side (Receiver) appends each new event
to its journal (fsync, then ack), feeds it to the collector and drops ids it has
seen (a bounded set, kept in the journal). When the collector hands a window to
the delivery and the delivery has spooled it, the journal is rewritten to the seen
ids alone, and every JOURNAL_MAX events to the seen ids and a snapshot of the open
window; on start the snapshot and the events after it reopen the window. Batch ids
derive from their first event's id, so a window replayed after a crash at the
wrong moment is delivered again under the same batch ids: a duplicate the
receiver can see.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import re
import selectors
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

from ixpect.atomic import write_atomic
from ixpect.collector import Collector
from ixpect.events import TS_MAX, Event
from ixpect.notify.delivery import batch_from_dict, batch_to_dict

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")
#: largest message (an event with the largest frame, base64, is about 350 KiB)
MAX_MESSAGE = 1 << 20
#: connections notify serves at once (capture needs one); a new one beyond them
#: closes the one idle longest, so that idle connections cannot lock capture out
MAX_CLIENTS = 16
#: acknowledgements a client may leave unread, in bytes, before notify drops it
MAX_BACKLOG = 1 << 20
#: how many event ids the notify side remembers to drop a resent event
SEEN_MAX = 1 << 16
#: events capture keeps for notify at most; more are dropped (and counted in the log)
PENDING_MAX = 200_000
#: events appended to notify's journal before it is compacted to a snapshot of the window
JOURNAL_MAX = 10_000
RETRY_MAX = 2.0


class ProtocolError(Exception):
    pass


def encode(obj: dict) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body


class Decoder:
    """Splits a byte stream into messages."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if n > MAX_MESSAGE:
                raise ProtocolError(f"message of {n} bytes exceeds the limit of {MAX_MESSAGE}")
            if len(self.buf) < 4 + n:
                break
            body = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            try:
                msg = json.loads(body)
            except RecursionError:
                raise ProtocolError("message nested too deeply") from None
            except ValueError as exc:
                raise ProtocolError(f"message is not JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise ProtocolError("message is not a JSON object")
            out.append(msg)
        return out


def event_to_wire(ev: Event) -> dict:
    return {"id": ev.id, "type": ev.type, "ts": ev.timestamp, "data": ev.data, "member": ev.member,
            "member_claimed": ev.member_claimed,
            "frame": base64.b64encode(ev.frame).decode() if ev.frame is not None else None}


_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ID = re.compile(r"[\w-]{1,64}", re.ASCII)


def _scalar(v) -> bool:
    if isinstance(v, str):
        return len(v) <= 1024
    return v is None or isinstance(v, int) or isinstance(v, float) and math.isfinite(v)


def _flat(d, items: int) -> bool:
    """An object of at most `items` short keys whose values are scalars or short lists of them."""
    return isinstance(d, dict) and len(d) <= items and all(
        isinstance(k, str) and len(k) <= 64
        and (_scalar(v) or isinstance(v, list) and len(v) <= 1024 and all(map(_scalar, v))) for k, v in d.items())


def _member(m) -> bool:
    """A member record (ixpect.members) or None: flat, but for its `shared_with` list of
    flat records."""
    if m is None:
        return True
    shared = m.get("shared_with", []) if isinstance(m, dict) else None
    return (isinstance(shared, list) and len(shared) <= 64 and all(_flat(r, 16) for r in shared)
            and _flat({k: v for k, v in m.items() if k != "shared_with"}, 16))


def event_from_wire(d) -> Event:
    """The event a wire object describes; ValueError saying why for anything else (a
    null or a list, nested data, a time that is not a finite instant up to the year
    9999, an oversized part), since what arrives on the socket is not trusted."""
    if not isinstance(d, dict):
        raise ValueError("an event must be an object")
    ev_id, kind, ts, data, frame = (d.get(k) for k in ("id", "type", "ts", "data", "frame"))
    if not isinstance(ev_id, str) or not _ID.fullmatch(ev_id):
        raise ValueError("id must be a string of up to 64 letters, digits, '-' and '_'")
    if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
        raise ValueError("type must be an event type name")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= TS_MAX:  # NaN fails too
        raise ValueError("ts must be seconds since 1970, up to the end of the year 9999")
    if not _flat(data, 64):
        raise ValueError("data must be an object of scalars and lists of scalars")
    if not _member(d.get("member")) or not _member(d.get("member_claimed")):
        raise ValueError("member and member_claimed must be null or member records")
    if frame is not None:
        if not isinstance(frame, str) or len(frame) > MAX_MESSAGE:
            raise ValueError("frame must be null or base64")
        try:
            frame = base64.b64decode(frame, validate=True)
        except binascii.Error:
            raise ValueError("frame must be null or base64") from None
    return Event(kind, float(ts), data, frame, d.get("member"), d.get("member_claimed"), ev_id)


class JsonLines:
    """An append-only file of JSON records (unbuffered: a kill -9 loses no write)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.dirty = False

    def records(self) -> list[dict]:
        out = []
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    out.append(json.loads(line))
                except ValueError:  # only the last line can be cut short by a crash
                    log.warning("%s:%d: unreadable record skipped", self.path, n)
        return out

    def append(self, *records: dict) -> None:
        if records:
            os.write(self.fd, b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
            self.dirty = True

    def sync(self) -> None:
        if self.dirty:
            os.fsync(self.fd)
            self.dirty = False

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)  # appends continue at the new end
        self.dirty = True

    def rewrite(self, records: list[dict]) -> None:
        """Replace the content atomically."""
        write_atomic(self.path, b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.dirty = False

    def close(self) -> None:
        self.sync()
        os.close(self.fd)


class Sender:
    """Capture side: `add(event)` never blocks; a thread keeps the connection to
    notify (retrying while notify is not there) and sends what is unacknowledged."""

    timers = ()  # batching windows are notify's

    def __init__(self, path: str, state_dir: str | None = None):
        self.path = path
        self.cond = threading.Condition()
        self.pending: OrderedDict[str, bytes] = OrderedDict()  # id -> encoded message
        self.queue: deque[str] = deque()  # ids still to send on this connection
        self.counters: bytes | None = None  # the latest metrics message, not yet sent
        self.outbox = JsonLines(Path(state_dir) / "relay-outbox.jsonl") if state_dir else None
        if self.outbox is not None:
            self._recover()
        self.closing = False
        self.dropped = 0
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="relay sender", daemon=True)
        self.thread.start()

    def _recover(self) -> None:
        events: OrderedDict[str, dict] = OrderedDict()
        for rec in self.outbox.records():
            if "event" in rec:
                events[rec["event"]["id"]] = rec["event"]
            for i in rec.get("ack", ()):
                events.pop(i, None)
        for i, wire in events.items():
            self.pending[i] = encode({"event": wire})
        self.outbox.rewrite([{"event": e} for e in events.values()])
        if events:
            log.info("%d unacknowledged events from the last run will be resent", len(events))

    def add(self, ev: Event) -> None:
        wire = event_to_wire(ev)
        with self.cond:
            if len(self.pending) >= PENDING_MAX:
                self.dropped += 1
                if self.dropped % 10_000 == 1:
                    log.error("%d events wait for notify, the limit: %d events dropped so far",
                              PENDING_MAX, self.dropped)
                return
            if self.outbox is not None:
                self.outbox.append({"event": wire})
            self.pending[ev.id] = encode({"event": wire})
            self.queue.append(ev.id)
            self.cond.notify_all()

    def test(self) -> None:
        """SIGUSR1: an IXPECT_TEST event through the whole path."""
        self.add(Event("IXPECT_TEST", time.time(), {}))

    def report(self, snapshot: dict) -> None:
        """Send capture's counters to notify (the latest only; dropped while disconnected)."""
        with self.cond:
            self.counters = encode({"metrics": snapshot})
            self.cond.notify_all()

    def configure(self, event_cfg: dict) -> None:
        """The `event` section (windows, notifiers) is applied by notify."""

    def sync(self) -> None:
        """Make what was added durable (once per chunk of frames)."""
        if self.outbox is not None:
            with self.cond:
                self.outbox.sync()

    def _acked(self, ids: list[str]) -> None:
        with self.cond:
            for i in ids:
                self.pending.pop(i, None)
            if self.outbox is not None:
                if self.pending:
                    self.outbox.append({"ack": ids})
                else:  # everything is acknowledged: start the file afresh
                    self.outbox.clear()
            self.cond.notify_all()

    def _connect(self) -> socket.socket | None:
        delay, waiting = 0.05, False
        while not self.closing:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                log.info("connected to notify at %s", self.path)
                return sock
            except OSError as exc:
                sock.close()
                if not waiting:
                    log.warning("waiting for notify at %s: %s", self.path, exc)
                    waiting = True
            with self.cond:
                self.cond.wait_for(lambda: self.closing, timeout=delay)
            delay = min(RETRY_MAX, delay * 2)
        return None

    def _run(self) -> None:
        while (sock := self._connect()) is not None:
            with self.cond:
                self.sock = sock
                self.queue = deque(self.pending)
            reader = threading.Thread(target=self._read_acks, args=(sock,), name="relay acks", daemon=True)
            reader.start()
            try:
                while True:
                    with self.cond:
                        self.cond.wait_for(lambda: self.queue or self.counters or self.closing
                                           or self.sock is not sock)
                        if self.closing or self.sock is not sock:
                            break
                        msgs = [self.pending[i] for i in self._take()]
                        if self.counters is not None:
                            msgs.append(self.counters)
                            self.counters = None
                    sock.sendall(b"".join(msgs))
            except OSError as exc:
                log.warning("connection to notify lost: %s", exc)
            sock.close()
            reader.join()
            with self.cond:
                if self.closing:
                    return

    def _take(self) -> list[str]:
        out = []
        while self.queue and len(out) < 256:
            i = self.queue.popleft()
            if i in self.pending:
                out.append(i)
        return out

    def _read_acks(self, sock: socket.socket) -> None:
        decoder = Decoder()
        try:
            while data := sock.recv(65536):
                for msg in decoder.feed(data):
                    if isinstance(acks := msg.get("ack"), list):
                        self._acked([str(i) for i in acks])
            if not self.closing:
                log.warning("connection to notify lost: closed by notify")
        except (OSError, ProtocolError) as exc:
            if not self.closing:
                log.warning("connection to notify lost: %s", exc)
        with self.cond:
            if self.sock is sock:
                self.sock = None  # the sending loop reconnects
            self.cond.notify_all()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds, and only while connected) until notify has
        acknowledged everything; what is left stays in the outbox for the next start."""
        with self.cond:
            self.cond.wait_for(lambda: not self.pending or self.sock is None, timeout=timeout)
            left, kept = len(self.pending), self.outbox is not None
            self.closing = True
            self.cond.notify_all()
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.thread.join(max(timeout, 1.0))
        with self.cond:  # a late acknowledgement must not write to a closed file
            if self.outbox is not None:
                self.outbox.close()
                self.outbox = None
        if left:
            log.warning("%d events not acknowledged by notify%s", left,
                        "; kept in the outbox for the next start" if kept else ", lost (no state dir)")


class _Client:
    """One connection to notify: what it sent that is not yet a whole message, and the
    acknowledgements it has not yet read."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.decoder = Decoder()
        self.out = bytearray()
        self.active = time.monotonic()  # when it last sent something


class Receiver:
    """Notify side: a unix socket server driven by `poll(timeout)` from the main loop,
    so that the collector is only ever touched by one thread. Sockets are non-blocking:
    a client that does not read its acknowledgements is dropped (MAX_BACKLOG), never
    waited for.

    The journal holds the seen ids, a snapshot of the collector's open window and the
    events received since; it is rewritten when the window is delivered and when
    JOURNAL_MAX events have been appended, so a flood costs bounded disk."""

    def __init__(self, path: str, state_dir: str | None, collector: Collector):
        self.collector = collector
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.journal = JsonLines(Path(state_dir) / "relay-journal.jsonl") if state_dir else None
        self.appended = 0  # events in the journal after its snapshot
        self.path = path
        try:
            if Path(path).is_socket():
                os.unlink(path)  # a previous run's; connecting to it would fail anyway
        except OSError:
            pass
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.server.setblocking(False)
        self.selector = selectors.DefaultSelector()  # epoll: no limit on descriptor numbers
        self.selector.register(self.server, selectors.EVENT_READ)
        self.clients: dict[socket.socket, _Client] = {}
        self.evicted = 0  # connections closed for newer ones (MAX_CLIENTS)
        self.received = self.duplicates = 0
        self.replaying = False
        self.capture_metrics: dict | None = None  # capture's last counters, with when they came

    def replay(self) -> None:
        """Reopen the journal's window in the collector (call before serving)."""
        if self.journal is None:
            return
        batches, events = [], []
        for rec in self.journal.records():
            for i in rec.get("seen", ()):
                self._remember(i)
            if "batch" in rec:
                batches.append(batch_from_dict(rec["batch"]))
            if "event" in rec:
                self._remember(rec["event"]["id"])
                events.append(rec["event"])
        self.replaying = True  # windows closing now: rewrite the journal only at the end
        try:
            self.collector.restore(batches)
            for wire in events:
                self.collector.add(event_from_wire(wire))
        finally:
            self.replaying = False
        self._compact()
        if batches or events:
            log.info("journal: reopened a window of %d batches and %d events", len(batches), len(events))

    def window_delivered(self) -> None:
        """The collector's window is in the delivery's spool: the journal need not keep it."""
        if not self.replaying:
            self._compact()

    def _compact(self) -> None:
        if self.journal is not None:
            self.journal.rewrite([{"seen": list(self.seen)},
                                  *({"batch": batch_to_dict(b)} for b in self.collector.batches.values())])
        self.appended = 0

    def _remember(self, i: str) -> None:
        self.seen[i] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)

    def fileno(self) -> int:
        return self.server.fileno()

    def poll(self, timeout: float) -> None:
        """Accept, read and write what is ready, waiting at most `timeout` seconds."""
        for key, mask in self.selector.select(timeout):
            if key.fileobj is self.server:
                self._accept()
                continue
            client = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    self._flush(client)
                if mask & selectors.EVENT_READ:
                    self._read(client)
            except (OSError, ProtocolError) as exc:
                self._drop(client, str(exc))

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:  # gone already, or out of descriptors: the next poll tries again
            return
        if len(self.clients) >= MAX_CLIENTS:
            self.evicted += 1
            idle = min(self.clients.values(), key=lambda c: c.active)
            self._drop(idle, f"idle longest of {MAX_CLIENTS} clients ({self.evicted} closed so far)",
                       self.evicted % 1000 == 1)
        conn.setblocking(False)
        self.clients[conn] = client = _Client(conn)
        self.selector.register(conn, selectors.EVENT_READ, client)
        log.info("capture connected")

    def _drop(self, client: _Client, why: str, logged: bool = True) -> None:
        if logged:
            log.warning("capture connection closed: %s", why)
        self.selector.unregister(client.sock)
        del self.clients[client.sock]
        client.sock.close()

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionResetError("closed by capture")
        client.active = time.monotonic()
        acks = []
        for msg in client.decoder.feed(data):
            if "event" in msg:
                acks.append(self._receive(msg["event"]))
            elif "metrics" in msg:
                self._counters(msg["metrics"])
            else:
                log.error("message of unknown kind dropped (neither event nor metrics)")
        if self.journal is not None:
            self.journal.sync()
        if acks:
            client.out += encode({"ack": [a for a in acks if a is not None]})
            self._flush(client)

    def _flush(self, client: _Client) -> None:
        """Send what the socket takes; wait for it to take the rest, up to MAX_BACKLOG."""
        try:
            del client.out[:client.sock.send(client.out)]
        except BlockingIOError:
            pass
        if len(client.out) > MAX_BACKLOG:
            raise ProtocolError(f"the client leaves more than {MAX_BACKLOG} bytes of acknowledgements unread")
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        if self.selector.get_key(client.sock).events != events:
            self.selector.modify(client.sock, events, client)

    def _counters(self, snapshot) -> None:
        if (isinstance(snapshot, dict) and all(isinstance(snapshot.get(k), dict) for k in ("frames", "bytes", "events"))
                and all(isinstance(n, int) for k in ("frames", "bytes", "events") for n in snapshot[k].values())):
            self.capture_metrics = {**snapshot, "received": time.time()}
        else:
            log.error("malformed metrics from capture dropped")

    def _receive(self, wire) -> str | None:
        try:
            ev = event_from_wire(wire)
        except ValueError as exc:
            ev_id = wire.get("id") if isinstance(wire, dict) else None
            ev_id = ev_id if isinstance(ev_id, str) and _ID.fullmatch(ev_id) else None
            log.error("malformed event %s dropped: %s", ev_id or "without id", exc)
            return ev_id  # acknowledged, so that it is not resent for ever
        if ev.id in self.seen:
            self.duplicates += 1
            return ev.id
        # capture's frames carry this host's clock: a later time is a lie that would hold
        # the window open (windows close on that time) and every later event with it
        ev.timestamp = min(ev.timestamp, time.time())
        self.received += 1
        self._remember(ev.id)
        self.collector.add(ev)  # may close the previous window first (window_delivered)
        if self.journal is not None:
            self.journal.append({"event": event_to_wire(ev)})  # what was checked, not what came
            self.appended += 1
            if self.appended >= JOURNAL_MAX:
                self._compact()
        return ev.id

    def close(self) -> None:
        for sock in self.clients:
            sock.close()
        self.selector.close()
        self.server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self.journal is not None:
            self.journal.close()
