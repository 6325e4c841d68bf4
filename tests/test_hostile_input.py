"""Hostile or careless input around the frame decoder: configs, IX-F exports, capture
files and the notify socket. Each case was once a traceback, a dead process, a hang or
a lost batch; each must be a clear error, a refused reload or a delivered event."""

from __future__ import annotations

import gzip
import json
import math
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scapy.layers.l2 import LLC, STP, Dot3

from ixpect import config
from ixpect.pcap import PcapError, chunks
from ixpect.relay import Decoder, encode

from conftest import SHARED, wait_for
from livenet import start, stop
from notifyutil import Recorder

IXPECT = [sys.executable, "-m", "ixpect"]
REPO = Path(__file__).resolve().parent.parent


def ixpect(*args, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*IXPECT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def alias_bomb(levels: int = 7) -> str:
    """The classic "billion laughs": 368 bytes that expand to 9**8 scalars."""
    lines = ['x0: &x0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


# -- configs ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, error", [
    ("probes: {}\n\0\n", "t.yaml:2: character #x0000 is not allowed in YAML"),
    ("probes:\n  stp: " + "[" * 1000 + "]" * 1000 + "\n", "t.yaml:2: YAML nested deeper than 64 levels"),
    ("a: &a [*a]\n", "t.yaml:1: YAML nested deeper than 64 levels"),
    ("probes:\n  bum_rate:\n    thresholds:\n      broadcast: " + "7" * 5000 + "\n",
     "t.yaml:4: an integer of 5000 characters is too long"),
    (alias_bomb(), "t.yaml:1: YAML aliases expand the document by more than 100000 nodes"),
])
def test_yaml_beyond_bounds_is_a_located_error(text, error):
    started = time.monotonic()
    with pytest.raises(config.ConfigError) as exc:
        config.load_text(text, "t.yaml")
    assert exc.value.errors == [error]
    assert time.monotonic() - started < 5


def test_aliases_within_bounds_still_work():
    cfg = config.load_text("probes:\n  arp_bogon: &p {enable: true}\n  stp: *p\n")
    assert cfg["probes"]["stp"]["enable"] is True


def test_check_config_of_a_nul_byte_is_one_line(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"probes:\n  stp: {enable: true}\x00\n")
    result = ixpect("check-config", path)
    assert (result.returncode, result.stderr) == (1, f"{path}:2: character #x0000 is not allowed in YAML\n")


SECRET_CONFIG = """\
event:
  collection_window: 1s
  notifiers:
    email:
      smtp:
        host: 127.0.0.1
        port: 9
        encryption: none
        auth:
          user: ixpect
          pass_file: {secret}
      from: ixpect@example.net
      channels:
        - to: [noc@example.net]
"""

HTTP_CONFIG = """\
event:
  notifiers:
    http:
      channels:
        - url: http://127.0.0.1:9/hook
          template: {template}
"""


def _files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (config text, the error line check-config must print for it)."""
    (tmp_path / "adir").mkdir()
    return {
        "missing secret": (SECRET_CONFIG.format(secret="nothere"),
                           f"11: event.notifiers.email.smtp.auth.pass_file: {tmp_path}/nothere: "
                           "cannot read: No such file or directory"),
        "secret is a directory": (SECRET_CONFIG.format(secret="adir"),
                                  f"11: event.notifiers.email.smtp.auth.pass_file: {tmp_path}/adir: "
                                  "cannot read: Is a directory"),
        "missing http template": (HTTP_CONFIG.format(template="hook.j2"),
                                  f"6: event.notifiers.http.channels[0].template: {tmp_path}/hook.j2: "
                                  "cannot read: No such file or directory"),
        "missing member table": ("member_table: members.json\n",
                                 f"1: member_table: {tmp_path}/members.json: cannot read: No such file or directory"),
    }


@pytest.mark.parametrize("case", ["missing secret", "secret is a directory", "missing http template",
                                  "missing member table"])
def test_files_the_config_names_are_checked_by_check_config_and_run(tmp_path, case):
    text, error = _files(tmp_path)[case]
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(text)
    checked = ixpect("check-config", conf)
    assert (checked.returncode, checked.stderr) == (1, f"{conf}:{error}\n")
    if case != "missing http template":  # templates are part of the config, always checked
        assert ixpect("check-config", "--skip-files", conf).returncode == 0  # for a build sandbox
    ran = ixpect("run", "-c", conf, "--pcap", REPO / "examples" / "demo.pcap")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert f"{conf}:{error}" in ran.stderr


def test_check_config_names_every_unusable_notifier_file(tmp_path):
    """Two broken channels: one check shows both, not one fix-and-retry round each."""
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(SECRET_CONFIG.format(secret="nothere")
                    + "    matrix:\n      homeserver: http://127.0.0.1:9\n      access_token_file: token\n"
                    + "      channels: [{room_id: '!r:m.example.net'}]\n")
    checked = ixpect("check-config", conf)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        f"{conf}:11: event.notifiers.email.smtp.auth.pass_file: {tmp_path}/nothere: cannot read: No such file or directory",
        f"{conf}:17: event.notifiers.matrix.access_token_file: {tmp_path}/token: cannot read: No such file or directory"]


def test_a_secret_gone_between_the_check_and_the_start_is_an_error_not_a_traceback(tmp_path, monkeypatch, caplog):
    """systemd may rotate a credential between loading the config and building the notifiers."""
    from ixpect import cli, config, daemon

    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(SECRET_CONFIG.format(secret=secret))
    load = config.load_with_members

    def load_then_lose_the_secret(path):
        loaded = load(path)
        secret.unlink()
        return loaded

    monkeypatch.setattr(config, "load_with_members", load_then_lose_the_secret)
    args = cli.parser().parse_args(["run", "-c", str(conf), "--pcap", str(REPO / "examples" / "demo.pcap")])
    assert daemon.run(args) == daemon.EXIT_CONFIG
    assert f"cannot start: event.notifiers.email.smtp.auth.pass_file: {secret}: cannot read: No such file" in caplog.text


def test_a_reload_while_a_secret_is_missing_is_refused_and_notify_lives(tmp_path):
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(SECRET_CONFIG.format(secret=secret))
    log = tmp_path / "notify.log"
    notify = start(["notify", "-c", conf, "--socket", tmp_path / "notify.sock"], log, ready="listening on")
    try:
        secret.unlink()
        conf.write_text(SECRET_CONFIG.format(secret=secret).replace("collection_window: 1s", "collection_window: 2s"))
        notify.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log.read_text(), what="the refused reload in the log")
        time.sleep(0.3)
        assert notify.poll() is None, log.read_text()
        assert f"{conf}:11: event.notifiers.email.smtp.auth.pass_file: {secret}: cannot read" in log.read_text()
    finally:
        assert stop(notify) == 0
    assert "Traceback" not in log.read_text()


# -- IX-F exports ----------------------------------------------------------------------

EXPORT = SHARED / "ixf" / "franceix-mrs-2016-10-v0.5.json"


def render(source, out: Path, *extra) -> subprocess.CompletedProcess:
    return ixpect("ixf", "render", "--source", source, "--ixp-id", 5, "--vlan-id", 5, "-o", out, *extra)


@pytest.fixture
def rendered(tmp_path) -> Path:
    """A good render whose files every failure below must leave as they are."""
    out = tmp_path / "etc" / "ixpect.conf.yaml"
    out.parent.mkdir()
    assert render(EXPORT, out).returncode == 0
    return out


def outputs(out: Path) -> dict[str, bytes]:
    """The rendered config and member table (the status file beside them records failures)."""
    return {p.name: p.read_bytes() for p in out.parent.iterdir() if not p.name.endswith(".status.json")}


def unchanged(out: Path, before: dict) -> bool:
    return outputs(out) == before


@pytest.mark.parametrize("mangle, error", [
    (lambda t: "[" * 1000 + t + "]" * 1000, "JSON nested deeper than 64 levels"),
    (lambda t: t.replace('"member_list"', '"x": ' + "[" * 900 + "]" * 900 + ', "member_list"', 1),
     "JSON nested deeper than 64 levels"),
    (lambda t: t.replace('"asnum": ', '"asnum": ' + "9" * 5000 + ', "x": ', 1),
     "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
])
def test_ixf_json_beyond_bounds_is_refused_and_keeps_the_good_files(rendered, tmp_path, mangle, error):
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(EXPORT.read_text()))
    before = outputs(rendered)
    for args in (("render", "--source", bad, "--ixp-id", 5, "--vlan-id", 5, "-o", rendered), ("list", "--source", bad)):
        result = ixpect("ixf", *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert error in result.stderr
    assert unchanged(rendered, before)


@pytest.mark.parametrize("base, error", [
    (b"probes: {stp: {enable: true}}\n# caf\xe9\n", "base config is not UTF-8 text (byte 35)"),
    (b"probes: " + b"[" * 1000 + b"]" * 1000 + b"\n", "base.yaml:1: YAML nested deeper than 64 levels"),
    (alias_bomb().encode(), "base.yaml:1: YAML aliases expand the document by more than 100000 nodes"),
])
def test_a_hostile_base_config_is_refused_and_keeps_the_good_files(rendered, tmp_path, base, error):
    path = tmp_path / "base.yaml"
    path.write_bytes(base)
    before = outputs(rendered)
    started = time.monotonic()
    result = render(EXPORT, rendered, "--base", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error in result.stderr
    assert time.monotonic() - started < 20
    assert unchanged(rendered, before)


def test_a_damaged_current_config_is_refused_not_a_traceback(rendered):
    rendered.write_text("probes: " + "[" * 1000 + "]" * 1000 + "\n")
    before = outputs(rendered)
    result = render(EXPORT, rendered)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{rendered}: cannot read the current config to compare: config:1: YAML nested deeper" in result.stderr
    assert unchanged(rendered, before)


class _Bomb(BaseHTTPRequestHandler):
    """A portal answering with 512 MiB of gzip-compressed zeros (about 500 KiB on the wire)."""

    body = gzip.compress(bytes(512 << 20), compresslevel=9)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_a_gzip_bomb_from_the_portal_is_refused_with_bounded_memory(rendered):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Bomb)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    before = outputs(rendered)
    try:
        # VmHWM, not ru_maxrss: the kernel carries the forking parent's peak (pytest's, late in a
        # long suite hundreds of MiB) into the child's ru_maxrss across exec
        code = ("import re, sys; from ixpect.cli import main; status = main(sys.argv[1:]); "
                "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); sys.exit(status)")
        result = subprocess.run([sys.executable, "-c", code, "ixf", "render", "--source",
                                 f"http://127.0.0.1:{srv.server_address[1]}/members.json", "--ixp-id", "5",
                                 "--vlan-id", "5", "-o", str(rendered)], capture_output=True, text=True, timeout=120)
    finally:
        srv.shutdown()
        srv.server_close()
    assert result.returncode == 1 and "the export is larger than 64 MiB" in result.stderr, result.stderr
    assert int(result.stdout) < 250_000  # KiB of peak RSS: the cap, not the bomb
    assert unchanged(rendered, before)


# -- the notify socket -----------------------------------------------------------------

class Client:
    """A raw connection to `ixpect notify`, speaking the relay's wire format."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.decoder = Decoder()

    def send(self, obj) -> None:
        self.sock.sendall(encode(obj))

    def send_raw(self, body: bytes) -> None:
        self.sock.sendall(struct.pack("!I", len(body)) + body)

    def acks(self, timeout: float = 10.0) -> list:
        self.sock.settimeout(timeout)
        while True:
            for msg in self.decoder.feed(self.sock.recv(65536)):
                return msg["ack"]

    def close(self) -> None:
        self.sock.close()


def event(**over) -> dict:
    ev = {"id": str(uuid.uuid4()), "type": "STP_PACKET_FOUND", "ts": time.time(), "member": None, "frame": None,
          "data": {"mac_addr_source": "02:00:00:00:00:01", "mac_addr_destination": "01:80:c2:00:00:00"}}
    return {**ev, **over}


@pytest.fixture
def notify(tmp_path):
    """`ixpect notify` with a one-second window delivering to a real HTTP server."""
    sink = Recorder()
    conf = tmp_path / "notify.conf.yaml"
    conf.write_text("event:\n  collection_window: 1s\n  notifiers:\n    http:\n"
                    f"      channels: [{{url: '{sink.url}/hook'}}]\n")
    sock, log = tmp_path / "notify.sock", tmp_path / "notify.log"
    proc = start(["notify", "-c", conf, "--socket", sock, "--state-dir", tmp_path / "state"], log,
                 ready="listening on")
    proc.sock, proc.log, proc.sink = sock, log, sink
    yield proc
    try:
        assert stop(proc) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        sink.close()


def delivered_ids(sink: Recorder) -> set[str]:
    """The data of every batch delivered, as the good events' distinguishing source MACs."""
    return {b["data"]["mac_addr_source"] for body in sink.delivered() for b in body["batches"]}


def good_event(n: int) -> dict:
    return event(data={"mac_addr_source": f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}",
                       "mac_addr_destination": "01:80:c2:00:00:00"})


HOSTILE = {
    "event null": {"event": None},
    "event a list": {"event": [1, 2]},
    "acks from a client": {"ack": ["x", 1, None]},
    "nested data": {"event": event(data={"a": {"b": [1, {"c": 2}]}})},
    "list in a list": {"event": event(data={"a": [[1]]})},
    "ts NaN": {"event": event(ts=math.nan)},
    "ts +Infinity": {"event": event(ts=math.inf)},
    "ts -Infinity": {"event": event(ts=-math.inf)},
    "ts past 9999": {"event": event(ts=1e15)},
    "ts a string": {"event": event(ts="now")},
    "type not a name": {"event": event(type={"x": 1})},
    "frame not base64": {"event": event(frame="!!")},
    "member a list": {"event": event(member=[1])},
}


@pytest.mark.slow
def test_hostile_messages_are_dropped_and_good_events_still_delivered(notify):
    good = Client(notify.sock)
    sent = set()
    for n, (name, msg) in enumerate(HOSTILE.items()):
        bad = Client(notify.sock)
        bad.send(msg)
        ev = good_event(n)
        good.send({"event": ev})
        assert good.acks() == [ev["id"]], name
        sent.add(ev["data"]["mac_addr_source"])
        bad.close()
    deep = Client(notify.sock)
    deep.send_raw(b'{"event": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    ev = good_event(999)
    good.send({"event": ev})
    assert good.acks() == [ev["id"]]
    sent.add(ev["data"]["mac_addr_source"])
    wait_for(lambda: delivered_ids(notify.sink) >= sent, timeout=15, what="every good event delivered")
    assert notify.poll() is None
    log = notify.log.read_text()
    assert log.count("malformed event") >= len(HOSTILE) - 2 and "message nested too deeply" in log


@pytest.mark.slow
def test_a_thousand_connections_do_not_lock_capture_out(notify):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    crowd = []
    try:
        for _ in range(1100):
            try:
                crowd.append(Client(notify.sock))
            except OSError:  # the listen backlog is full: notify closes faster than we connect
                time.sleep(0.01)
        good = Client(notify.sock)
        ev = good_event(1)
        good.send({"event": ev})
        assert good.acks() == [ev["id"]]
        wait_for(lambda: delivered_ids(notify.sink) >= {ev["data"]["mac_addr_source"]}, timeout=15,
                 what="the good event delivered")
        assert "idle longest of 16 clients" in notify.log.read_text()
    finally:
        for c in crowd:
            c.close()


@pytest.mark.slow
def test_a_client_that_never_reads_its_acknowledgements_does_not_stall_the_others(notify):
    deaf = Client(notify.sock)
    deaf.sock.setblocking(False)
    backlog = bytearray()
    good = Client(notify.sock)
    sent = set()
    deadline = time.monotonic() + 60
    n = 0
    while "acknowledgements unread" not in notify.log.read_text():
        n += 1
        if len(backlog) < 1 << 20:
            backlog += b"".join(encode({"event": event()}) for _ in range(5000))
        try:
            del backlog[:deaf.sock.send(backlog)]
        except (BlockingIOError, OSError):
            pass  # notify has stopped reading it, or dropped it
        ev = good_event(n)
        good.send({"event": ev})
        assert good.acks(timeout=5) == [ev["id"]]
        sent.add(ev["data"]["mac_addr_source"])
        assert time.monotonic() < deadline
    wait_for(lambda: delivered_ids(notify.sink) >= sent, timeout=15, what="every good event delivered")


# -- capture files and pipes -----------------------------------------------------------

DEMO = REPO / "examples" / "demo.conf.yaml"
DEMO_PCAP = REPO / "examples" / "demo.pcap"
STP = bytes(Dot3(src="02:00:00:00:00:08", dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP())


def pcapng_block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng(packets: list[tuple[int, bytes]], tsresol: int | None = None) -> bytes:
    """One section, one Ethernet interface, an Enhanced Packet Block per (ticks, frame)."""
    options = b"" if tsresol is None else struct.pack("<HHB3x", 9, 1, tsresol) + bytes(4)
    out = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += pcapng_block(1, struct.pack("<HHI", 1, 0, 0) + options)
    for ticks, frame in packets:
        header = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        out += pcapng_block(6, header + frame)
    return out


@pytest.mark.parametrize("ticks, tsresol", [(2**64 - 1, None), (2**64 - 1, 0), (253402300800, 0)])
def test_a_pcapng_timestamp_past_9999_is_refused_after_the_frames_before_it(tmp_path, ticks, tsresol):
    path = tmp_path / "future.pcapng"
    path.write_bytes(pcapng([(1761426000 * 10**6 if tsresol is None else 1761426000, STP), (ticks, STP)], tsresol))
    result = ixpect("run", "-c", DEMO, "--jsonl", "-", "--pcap", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: packet at offset " in result.stderr and "has a timestamp past the year 9999" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(e["type"], e["timestamp"]) for e in events} >= {("STP_PACKET_FOUND", "2025-10-25T21:00:00.000000Z")}
    assert "1 frames processed" in result.stderr


def pieces(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def read_chunks(path: str) -> tuple[list, set, str | None]:
    """The frames, the snaplens they came with and the error (or None) of a capture."""
    got, snaplens, error = [], set(), None
    try:
        for chunk in chunks(path, 0.05):
            frames = list(chunk)
            got.extend(frames)
            snaplens |= {chunk.snaplen} if frames else set()
    except PcapError as exc:
        error = str(exc).partition(": ")[2]
    return got, snaplens, error


def through_a_pipe(data: bytes, size: int) -> tuple[list, set, str | None]:
    """read_chunks() of `data` written into a pipe `size` bytes at a time."""
    r, w = os.pipe()

    def writer():
        with open(w, "wb", buffering=0) as f:
            for piece in pieces(data, size):
                f.write(piece)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        return read_chunks(f"/dev/fd/{r}")
    finally:
        thread.join()
        os.close(r)


SAMPLES = sorted((SHARED / "pcaps" / "tcpdump").iterdir())[::40] + [DEMO_PCAP]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_pipe_gives_the_frames_and_snaplen_of_the_file(path):
    got, snaplens, error = read_chunks(str(path))
    for size in (7, 4093, 1 << 20):
        piped, piped_snaplens, piped_error = through_a_pipe(path.read_bytes(), size)
        assert piped == got and piped_snaplens == snaplens
        assert (piped_error is None) == (error is None), (piped_error, error)


def test_run_reads_standard_input_a_fifo_and_dev_stdin(tmp_path):
    def events(out: str) -> list:
        return [{k: v for k, v in json.loads(line).items() if k != "id"} for line in out.splitlines()]

    expected = events(ixpect("run", "-c", DEMO, "--jsonl", "-", "--pcap", DEMO_PCAP).stdout)
    assert expected
    data = DEMO_PCAP.read_bytes()
    for name in ("-", "/dev/stdin"):
        result = ixpect("run", "-c", DEMO, "--jsonl", "-", "--pcap", name, input=data.decode("latin-1"),
                        encoding="latin-1")
        assert result.returncode == 0 and events(result.stdout) == expected
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*IXPECT, "run", "-c", DEMO, "--jsonl", "-", "--pcap", fifo], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with open(fifo, "wb") as f:  # waits for the reader
        for piece in pieces(data, 1000):
            f.write(piece)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and events(out) == expected, err


def test_dev_zero_is_named_and_refused_at_once():
    result = ixpect("run", "-c", DEMO, "--pcap", "/dev/zero", timeout=10)
    assert result.returncode == 2
    assert "ERROR ixpect: /dev/zero: not a pcap or pcapng file (magic 0x00000000)" in result.stderr


def test_sigterm_stops_a_fifo_without_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*IXPECT, "run", "-c", DEMO, "--pcap", fifo], stderr=err)
    time.sleep(2)  # started, waiting for a writer
    assert proc.poll() is None, log.read_text()
    started = time.monotonic()
    assert stop(proc, timeout=5) == 0
    assert time.monotonic() - started < 3
    assert "stopping" in log.read_text()


@pytest.mark.slow
def test_sigterm_during_a_long_replay_acts_promptly(tmp_path):
    path = tmp_path / "long.pcap"
    rec = struct.Struct("<IIII").pack
    arp = bytes.fromhex("0001080006040001")
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(300_000):  # every frame from a new station: nothing for the sieve
        mac, ip = b"\x02\x00" + i.to_bytes(4, "big"), (0x0A000000 + i).to_bytes(4, "big")
        frame = b"\xff" * 6 + mac + b"\x08\x06" + arp + mac + ip + bytes(6) + ip + bytes(18)
        records.append(rec(1761426000 + i // 50_000, i % 50_000 * 20, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(records))
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*IXPECT, "run", "-c", DEMO, "--pcap", path], stderr=err)
    time.sleep(2)
    assert proc.poll() is None, "the replay ended before the signal: make the capture longer"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 5
    text = log.read_text()
    assert "stopping: flushing pending batches" in text
    processed = int(text.rpartition(" frames processed")[0].rpartition(" ")[2])
    assert 0 < processed < 300_000
