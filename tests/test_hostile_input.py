"""Hostile or careless input around the frame decoder: configs, IX-F exports, capture
files and the notify socket. Each case was once a traceback, a dead process, a hang or
a lost batch; each must be a clear error, a refused reload or a delivered event."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ixpect import config

from conftest import wait_for
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
