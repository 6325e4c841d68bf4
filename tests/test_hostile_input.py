"""Hostile or careless input around the frame decoder: configs, IX-F exports, capture
files and the notify socket. Each case was once a traceback, a dead process, a hang or
a lost batch; each must be a clear error, a refused reload or a delivered event."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ixpect import config

from conftest import SHARED, wait_for
from livenet import start, stop

IXPECT = [sys.executable, "-m", "ixpect"]


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
                           f"11: event.notifiers.email.smtp.auth.pass_file: cannot read {tmp_path}/nothere: "
                           "No such file or directory"),
        "secret is a directory": (SECRET_CONFIG.format(secret="adir"),
                                  f"11: event.notifiers.email.smtp.auth.pass_file: cannot read {tmp_path}/adir: "
                                  "Is a directory"),
        "missing http template": (HTTP_CONFIG.format(template="hook.j2"),
                                  f"6: event.notifiers.http.channels[0].template: cannot read {tmp_path}/hook.j2: "
                                  "No such file or directory"),
        "missing templates_dir": ("event:\n  templates_dir: tpl\n",
                                  f"2: event.templates_dir: {tmp_path}/tpl is not a directory"),
        "missing member table": ("member_table: members.json\n",
                                 f"1: member_table: cannot read {tmp_path}/members.json: No such file or directory"),
    }


@pytest.mark.parametrize("case", ["missing secret", "secret is a directory", "missing http template",
                                  "missing templates_dir", "missing member table"])
def test_files_the_config_names_are_checked_by_check_config_and_run(tmp_path, case):
    text, error = _files(tmp_path)[case]
    conf = tmp_path / "ixpect.conf.yaml"
    conf.write_text(text)
    checked = ixpect("check-config", conf)
    assert (checked.returncode, checked.stderr) == (1, f"{conf}:{error}\n")
    assert ixpect("check-config", "--skip-files", conf).returncode == 0  # for a build sandbox
    pcap = Path(__file__).resolve().parent.parent / "examples" / "demo.pcap"
    ran = ixpect("run", "-c", conf, "--pcap", pcap)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert f"{conf}:{error}" in ran.stderr


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
        assert f"{conf}:11: event.notifiers.email.smtp.auth.pass_file: cannot read {secret}" in log.read_text()
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


def unchanged(out: Path, before: dict) -> bool:
    return {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


@pytest.mark.parametrize("mangle, error", [
    (lambda t: "[" * 1000 + t + "]" * 1000, "JSON nested deeper than 64 levels"),
    (lambda t: t.replace('"member_list"', '"member_list_' + "[" * 900 + '": ' + "[" * 900 + "]" * 900 + ', "member_list"', 1),
     "JSON nested deeper than 64 levels"),
    (lambda t: t.replace('"asnum": ', '"asnum": ' + "9" * 5000 + ', "x": ', 1),
     "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
])
def test_ixf_json_beyond_bounds_is_refused_and_keeps_the_good_files(rendered, tmp_path, mangle, error):
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(EXPORT.read_text()))
    before = {p.name: p.read_bytes() for p in rendered.parent.iterdir()}
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
    before = {p.name: p.read_bytes() for p in rendered.parent.iterdir()}
    started = time.monotonic()
    result = render(EXPORT, rendered, "--base", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error in result.stderr
    assert time.monotonic() - started < 20
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
    before = {p.name: p.read_bytes() for p in rendered.parent.iterdir()}
    try:
        code = ("import resource, sys; from ixpect.cli import main; status = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(status)")
        result = subprocess.run([sys.executable, "-c", code, "ixf", "render", "--source",
                                 f"http://127.0.0.1:{srv.server_address[1]}/members.json", "--ixp-id", "5",
                                 "--vlan-id", "5", "-o", str(rendered)], capture_output=True, text=True, timeout=120)
    finally:
        srv.shutdown()
        srv.server_close()
    assert result.returncode == 1 and "the export is larger than 64 MiB" in result.stderr, result.stderr
    assert int(result.stdout) < 250_000  # KiB of peak RSS: the cap, not the bomb
    assert unchanged(rendered, before)
