"""Fuzz targets, one per input surface: frames, capture files (and pipes), configs,
IX-F exports and notify-socket messages. Each mutates real seeds (the demo capture,
the example configs, real exports, capture's own wire messages) and checks that the
only outcome is the surface's clear error or a well-formed result: no other
exception, no hang.

A CI run is short (IXPECT_FUZZ_EXAMPLES examples per target, 100 by default, fewer
for the slower IX-F render). A longer run with seeds of your own:

    IXPECT_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/test_fuzz.py --hypothesis-seed=RANDOM_INT

Hypothesis prints any failing input, shrunk, with the decorator that replays it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ixpect import config
from ixpect._frames import Block, Sieve
from ixpect.collector import Collector
from ixpect.engine import Engine
from ixpect.events import TS_MAX, iso
from ixpect.ixf import IxfError, Problems, fetch
from ixpect.ixf.render import Options, render
from ixpect.pcap import PcapError, chunks, frames
from ixpect.pcapwrite import pcap
from ixpect.relay import Receiver, encode

from conftest import REPO, SHARED
from test_hostile_input import pcapng
from test_sieve import _ring

EXAMPLES = int(os.environ.get("IXPECT_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

DEMO_CONF = REPO / "examples" / "demo.conf.yaml"
SEED_FRAMES = [f for _, f in frames(REPO / "examples" / "demo.pcap")]
CONFIGS = [p.read_text() for p in (REPO / "examples" / "ixpect.conf.yaml", REPO / "examples" / "demo.conf.yaml",
                                   REPO / "tests" / "data" / "ddix.conf.yaml")]
EXPORTS = [(SHARED / "ixf" / name, ixp, vlan) for name, ixp, vlan in (
    ("arix-2024-10-v1.0.json", 1, 1), ("miaowoo-ashburn-2023-02-v1.0.json", 1, 1),
    ("nixsk-2016-10-v0.5.json", 552, 10))]


@st.composite
def mutated(draw, seed: bytes, max_edits: int = 8) -> bytes:
    """`seed` with a few byte flips, overwrites, insertions, deletions or a cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            value = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 1]) | st.integers(0, 255))
            data[at:at + 4] = bytes([value]) * min(4, len(data) - at)
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "cut":
            del data[at:]
    return bytes(data)


# -- frames ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    events = []
    cfg = config.load(DEMO_CONF, files=False)
    return Engine(cfg["probes"], events.append), events


@FUZZ
@given(st.data())
def test_fuzz_frames(engine, data):
    """Every frame is processed or reported as IXPECT_BAD_PACKET; events can be written."""
    eng, events = engine
    seeds = data.draw(st.lists(st.sampled_from(SEED_FRAMES), min_size=1, max_size=8))
    batch = [data.draw(mutated(seed, 12)) for seed in seeds]
    del events[:]
    eng.feed((1761426000.0 + i, f) for i, f in enumerate(batch))
    for ev in events:
        json.dumps(ev.to_json())
        assert isinstance(ev.type, str) and 0 <= ev.timestamp <= TS_MAX


# -- capture files and pipes -----------------------------------------------------------

PCAP_SEED = pcap([(1761426000.0 + i, f) for i, f in enumerate(SEED_FRAMES[:6])])
PCAPNG_SEEDS = [pcapng([(1761426000 * 10**6 + i, f) for i, f in enumerate(SEED_FRAMES[:4])]),
                *(p.read_bytes() for p in sorted((SHARED / "pcaps" / "tcpdump").glob("*.pcapng"))
                  if p.stat().st_size < 4096)]


def _walk(chunked, sieve: Sieve | None = None) -> tuple[list, str | None]:
    """The frames of the chunks (those the sieve lets through), and the error that ended them."""
    got, error = [], None
    try:
        for chunk in chunked:
            got.extend(sieve.over(chunk) if sieve is not None else chunk)
    except (PcapError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return got, error


def _taught() -> Sieve:
    """A sieve taught every seed frame by its first 20 bytes: it swallows most of them."""
    sieve = Sieve({f[12] << 8 | f[13]: (20, ((0, 20),)) for f in SEED_FRAMES}, 1000)
    for f in SEED_FRAMES:
        sieve.teach(f)
    return sieve


def _sifted_alike(chunked, got: list, error: str | None) -> None:
    """The sieve walking the same frames ends alike, and lets a part of them through,
    in order, having counted the rest."""
    sieve = _taught()
    passed, sieved_error = _walk(chunked, sieve)
    assert sieved_error == error
    rest = iter(got)
    assert all(item in rest for item in passed)
    assert len(passed) + sum(n for n, _ in sieve.counts().values()) == len(got)


@FUZZ
@given(st.data())
def test_fuzz_capture_files_and_pipes(tmp_path, data):
    """Only PcapError; timestamps an event can carry; a pipe reads as the file does;
    the sieve walking the records in C ends alike and swallows only what it counts."""
    seed = data.draw(st.sampled_from([PCAP_SEED, *PCAPNG_SEEDS]))
    blob = data.draw(mutated(seed, 6))
    path = tmp_path / "x.cap"
    path.write_bytes(blob)
    got, error = _walk(chunks(str(path), 0.01))
    assert error is None or error.startswith("PcapError")
    assert all(isinstance(f, bytes) and 0 <= ts <= TS_MAX for ts, f in got)
    _sifted_alike(chunks(str(path), 0.01), got, error)
    if len(blob) <= 65536:  # fits the pipe's buffer: written whole before it is read
        r, w = os.pipe()
        os.write(w, blob)
        os.close(w)
        try:
            piped, piped_error = _walk(chunks(f"/dev/fd/{r}", 0.01))
        finally:
            os.close(r)
        assert piped == got and (piped_error is None) == (error is None)


RING_SEED = bytes(_ring([(1761426000.5 + i, f) for i, f in enumerate(SEED_FRAMES[:6])]))


@FUZZ
@given(st.data())
def test_fuzz_ring_blocks(data):
    """A damaged TPACKET_V3 block (or a wrong offset or count) is a ValueError after
    the frames before it, whether Python or the sieve walks it."""
    ring = bytearray(data.draw(mutated(RING_SEED, 6)))
    offset = data.draw(st.sampled_from([8, 8, 0, -1, len(ring) - 8]))
    count = data.draw(st.integers(0, 8))
    got, error = _walk([Block(ring, offset, count)])
    assert error is None or error.startswith("ValueError")
    _sifted_alike([Block(ring, offset, count)], got, error)


# -- configs ---------------------------------------------------------------------------

YAML_BITS = ["&a ", "*a", "[", "]", "{", "}", ": ", "- ", "!!int ", "!!python/object ", "<<: *a", "\t", "\0", "'",
             '"', "|\n", ">\n", "%YAML 1.1\n", "---\n", "...\n", "9" * 5000, "0x" + "f" * 40, "1e999", ".nan", "~",
             "\n  ", "\ud800", "\ufeff", "? ", "#"]


@st.composite
def yaml_text(draw) -> str:
    lines = draw(st.sampled_from(CONFIGS)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["bit", "text", "delete", "repeat"]))
        if kind == "bit" and lines:
            line = lines[min(at, len(lines) - 1)]
            pos = draw(st.integers(0, len(line)))
            lines[min(at, len(lines) - 1)] = line[:pos] + draw(st.sampled_from(YAML_BITS)) + line[pos:]
        elif kind == "text":
            lines.insert(at, draw(st.text(max_size=40)) + "\n")
        elif kind == "delete":
            del lines[at:at + draw(st.integers(1, 5))]
        elif lines:
            lines[at:at] = lines[at:at + draw(st.integers(1, 10))] * draw(st.integers(2, 50))
    return "".join(lines)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=20)


def _load(text: str, tmp_path: Path) -> None:
    started = time.monotonic()
    try:
        cfg = config.load_text(text, "f.yaml", tmp_path, files=True)
    except config.ConfigError as exc:
        assert exc.errors and all(line.startswith("f.yaml:") for line in exc.errors)
    else:
        json.dumps(cfg)
    assert time.monotonic() - started < 10


@FUZZ
@given(yaml_text())
def test_fuzz_config_text(tmp_path, text):
    """A config either loads or gives f.yaml:LINE errors, in bounded time."""
    _load(text, tmp_path)


@FUZZ
@given(st.sampled_from(CONFIGS), st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4), JSON_VALUES)
def test_fuzz_config_values(tmp_path, seed, path, value):
    """Any value at any key of a real config."""
    doc = yaml.safe_load(seed)
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = value
    _load(yaml.safe_dump(doc, allow_unicode=True), tmp_path)


# -- IX-F exports ----------------------------------------------------------------------

def _render(body: bytes, ixp: int, vlan: int, tmp_path: Path) -> None:
    try:
        doc = fetch.parse("x.json", body)
        render(doc, Options(ixp_id=ixp, vlan_id=vlan, output=tmp_path / "out.yaml"), Problems())
    except IxfError as exc:
        assert str(exc)


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
@given(st.sampled_from(EXPORTS), st.data())
def test_fuzz_ixf_export_bytes(tmp_path, export, data):
    """Byte-level damage to a real export: IxfError or a render."""
    path, ixp, vlan = export
    _render(data.draw(mutated(path.read_bytes(), 6)), ixp, vlan, tmp_path)


@st.composite
def _paths(draw, doc, depth: int = 0) -> list:
    """A path to some node of `doc`."""
    children = list(doc.items()) if isinstance(doc, dict) else list(enumerate(doc)) if isinstance(doc, list) else []
    if not children or depth > 8 or draw(st.integers(0, 3)) == 0:
        return []
    key, child = draw(st.sampled_from(children))
    return [key, *draw(_paths(child, depth + 1))]


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
@given(st.sampled_from(EXPORTS), st.data())
def test_fuzz_ixf_export_values(tmp_path, export, data):
    """Any JSON value in place of any part of a real export (asnum, macs, prefixes, lists ...)."""
    path, ixp, vlan = export
    doc = json.loads(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(_paths(doc))
        if not where:
            continue
        node = doc
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = data.draw(JSON_VALUES)
    _render(json.dumps(doc).encode(), ixp, vlan, tmp_path)


# -- notify-socket messages ----------------------------------------------------------

def _wire(**over) -> dict:
    ev = {"id": str(uuid.uuid4()), "type": "STP_PACKET_FOUND", "ts": 1761426000.5, "member": None,
          "frame": base64.b64encode(SEED_FRAMES[0]).decode(),
          "data": {"mac_addr_source": "02:00:00:00:00:08", "mac_addr_destination": "01:80:c2:00:00:00"}}
    return {**ev, **over}


HOSTILE_FIELDS = st.dictionaries(st.sampled_from(["id", "type", "ts", "data", "member", "frame", "x"]),
                                 JSON_VALUES | st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1, TS_MAX + 1]),
                                 max_size=3)


@st.composite
def messages(draw) -> bytes:
    kind = draw(st.sampled_from(["fields", "message", "bytes", "mutated"]))
    if kind == "fields":
        return encode({"event": _wire(**draw(HOSTILE_FIELDS))})
    if kind == "message":
        return encode(draw(st.dictionaries(st.sampled_from(["event", "metrics", "ack"]), JSON_VALUES, max_size=2)))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    return draw(mutated(encode({"event": _wire()}), 4))


@pytest.fixture
def receiver(tmp_path):
    windows = []
    collector = Collector(1.0, windows.append)
    rx = Receiver(str(tmp_path / "n.sock"), str(tmp_path / "state"), collector)
    yield rx, collector, windows
    rx.close()


@FUZZ
@given(st.lists(messages(), min_size=1, max_size=6))
def test_fuzz_notify_socket(receiver, msgs):
    """Hostile bytes on one connection: notify stays up, a good client is still acknowledged,
    and every batch in the window can be delivered (hashable data, printable times)."""
    rx, collector, windows = receiver
    hostile = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    good = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        hostile.connect(rx.path)
        good.connect(rx.path)
        for m in msgs:
            try:
                hostile.sendall(m)
            except OSError:  # notify has dropped this connection: what it should do
                break
            rx.poll(0.01)
        ev = _wire()
        good.sendall(encode({"event": ev}))
        good.settimeout(5)
        deadline = time.monotonic() + 5
        reply = b""
        while len(reply) < 4 or len(reply) < 4 + int.from_bytes(reply[:4], "big"):
            rx.poll(0.05)
            try:
                good.setblocking(False)
                reply += good.recv(65536)
            except BlockingIOError:
                pass
            assert time.monotonic() < deadline, "the good client was not acknowledged"
        assert json.loads(reply[4:])["ack"] == [ev["id"]]
        collector.flush()
        for batch in (b for w in windows for b in w):
            json.dumps(batch.to_json())
            iso(batch.first), iso(batch.last)
        del windows[:]
    finally:
        hostile.close()
        good.close()
        rx.poll(0)
