"""What the command line tells an operator: help on every option, IXPECT_<FLAG>
variables that act like the flag, the log level and journald priorities, errors
that name what is wrong (interface, namespace, privileges, state directory), and
`ixf render --dry-run`."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import IXPECT, REPO
from livenet import without_capabilities
from ixpect.cli import env_var, parser

DEMO = ["-c", str(REPO / "examples" / "demo.conf.yaml"), "--pcap", str(REPO / "examples" / "demo.pcap")]
NOBODY = pwd.getpwnam("nobody")


def ixpect(*argv, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*IXPECT, *map(str, argv)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=REPO, **kw)


def subparsers(p: argparse.ArgumentParser, path=("ixpect",)):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subparsers(sub, (*path, name))


def test_every_option_and_argument_is_explained():
    for path, p in subparsers(parser()):
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and not action.help.startswith("["), f"{' '.join(path)} {name} has no help"
            long = [o for o in action.option_strings if o.startswith("--")]
            if long:
                assert f"[${env_var(long[0])}]" in action.help, f"{' '.join(path)} {name} does not name its variable"


def events(jsonl: str) -> list[tuple]:
    return [(e["type"], e["timestamp"], e["data"]) for e in map(json.loads, jsonl.splitlines())]


def test_environment_variables_act_like_flags():
    env = {"IXPECT_PCAP": DEMO[3], "IXPECT_CONFIG": DEMO[1], "IXPECT_JSONL": "-"}
    from_env = ixpect("run", env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert events(from_env.stdout) == events(ixpect("run", *DEMO, "--jsonl", "-").stdout)
    assert len(events(from_env.stdout)) > 20
    # the command line wins, also within a group of alternatives the variable belongs to
    flag = ixpect("run", *DEMO, env={"IXPECT_INTERFACE": "nosuch0", "IXPECT_CONFIG": "/nonexistent"})
    assert flag.returncode == 0, flag.stderr
    # a variable is checked like the flag
    bad = ixpect("ixf", "render", "--source", "x", "--vlan-id", "1", "-o", "/nonexistent/out", env={"IXPECT_IXP_ID": "one"})
    assert bad.returncode == 2 and "argument --ixp-id: invalid int value: 'one'" in bad.stderr
    off = ixpect("run", *DEMO, "--log-level", "error", env={"IXPECT_LOG_LEVEL": "debug"})
    assert off.returncode == 0 and "INFO" not in off.stderr


def test_log_level():
    default = ixpect("run", *DEMO)
    assert "INFO ixpect: 538 frames processed" in default.stderr
    quiet = ixpect("run", *DEMO, "--log-level", "warning")
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    assert "ARP_NEIGHBOR_SPOOFED_STATIC x1" in quiet.stderr  # events are not log chatter
    broken = ["-c", "/nonexistent.yaml", "--pcap", DEMO[3]]
    assert "ERROR ixpect: /nonexistent.yaml: cannot read the config" in ixpect("run", *broken, "--log-level", "error").stderr
    wrong = ixpect("run", *DEMO, "--log-level", "verbose")
    assert wrong.returncode == 2 and "argument --log-level: invalid choice: 'verbose'" in wrong.stderr


def test_journal_gets_syslog_priorities(tmp_path):
    """Under systemd, stderr is the stream named by $JOURNAL_STREAM: every line carries its priority."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("probes: {stp: {enable: maybe}}\n")
    err = tmp_path / "stderr"
    with open(err, "w") as stream:
        st = os.fstat(stream.fileno())
        journal = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([*IXPECT, "run", *DEMO], stderr=stream, stdout=subprocess.DEVNULL, env={**os.environ, **journal})
        subprocess.run([*IXPECT, "run", "-c", bad, "--pcap", DEMO[3]], stderr=stream, env={**os.environ, **journal})
        subprocess.run([*IXPECT, "ixf", "render", "--source", tmp_path / "none.json", "--ixp-id", "1", "--vlan-id", "1",
                        "-o", tmp_path / "out.yaml"], stderr=stream, env={**os.environ, **journal})
    lines = err.read_text().splitlines()
    assert "<6>INFO ixpect: 538 frames processed" in lines
    assert any(line.startswith("<3>ERROR ixpect: ") and "stp.enable" in line for line in lines)
    assert f"<3>error: {tmp_path / 'none.json'}: cannot read: No such file or directory" in lines
    assert all(line[:3] in ("<3>", "<4>", "<6>") for line in lines), lines
    # stderr redirected elsewhere (a file, a terminal) by a process started from the unit: no prefixes
    elsewhere = ixpect("run", "-c", bad, "--pcap", DEMO[3], env=journal)
    assert elsewhere.stderr.startswith("ERROR ixpect: ")


@pytest.mark.needs("root")
def test_capture_errors_name_interface_namespace_and_privilege():
    wrong = ixpect("run", "-c", DEMO[1], "--interface", "nosuch0")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "ERROR ixpect: cannot open the capture source: cannot capture on nosuch0: there is no such interface"
    no_ns = ixpect("run", "-c", DEMO[1], "--interface", "eth0", "--netns", "ixt-nosuch")
    assert "there is no network namespace ixt-nosuch (`ixpect netns up --name ixt-nosuch` creates it)" in no_ns.stderr
    unprivileged = ixpect("run", "-c", DEMO[1], "--interface", "lo", preexec_fn=without_capabilities)
    assert unprivileged.returncode == 1
    assert "cannot capture on lo: Operation not permitted; capturing needs root or CAP_NET_RAW" in unprivileged.stderr
    assert "Traceback" not in wrong.stderr + no_ns.stderr + unprivileged.stderr


@pytest.mark.needs("root")
def test_an_interface_with_addresses_is_warned_about(tmp_path):
    ns = f"ixt-addr-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.0.2.9/24", "dev", "v0"], check=True)
        for argv in (["-c", DEMO[1]], ["-c", DEMO[1], "--user", "nobody"]):
            proc = subprocess.Popen([*IXPECT, "run", *argv, "--interface", "v0", "--netns", ns],
                                    stderr=subprocess.PIPE, text=True)
            line = proc.stderr.readline()
            proc.terminate()
            proc.communicate(timeout=20)
            assert line.startswith("WARNING ixpect.afpacket: v0 has addresses (192.0.2.9/24): ")
        subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", "v0"], check=True)
        proc = subprocess.Popen([*IXPECT, "run", "-c", DEMO[1], "--interface", "v0", "--netns", ns, "--user", "nobody"],
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        proc.terminate()
        assert "running as uid" in line and "has addresses" not in proc.communicate(timeout=20)[1]
    finally:
        subprocess.run(["ip", "netns", "del", ns])


@pytest.fixture
def root_only():
    """A directory root owns and nobody may enter but not write (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ixpect-cli-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)])


@pytest.mark.needs("root")
def test_an_unwritable_state_directory_is_named_with_its_user(root_only):
    state, conf = root_only / "state", root_only / "ixpect.conf.yaml"  # notify reloads it as the user
    conf.write_bytes(Path(DEMO[1]).read_bytes())
    (root_only / "demo.members.json").write_bytes((REPO / "examples" / "demo.members.json").read_bytes())
    expected = (f"ERROR ixpect: state directory {state}: cannot create it: Permission denied; "
                f"it must be writable by uid {NOBODY.pw_uid}, the user this process runs as")
    run = ixpect("run", "-c", conf, "--interface", "lo", "--state-dir", state, "--user", "nobody")
    assert run.returncode == 1 and run.stderr.strip().endswith(expected)
    state.mkdir()
    capture = ixpect("capture", "-c", conf, "--interface", "lo", "--socket", root_only / "n.sock",
                     "--state-dir", state, "--user", "nobody")
    assert capture.returncode == 1 and "Traceback" not in capture.stderr
    assert expected.replace("cannot create it: Permission denied", "not writable") in capture.stderr
    notify = ixpect("notify", "-c", conf, "--socket", root_only / "n.sock", "--state-dir", state, "--user", "nobody")
    assert notify.returncode == 1 and "Traceback" not in notify.stderr
    assert expected.replace("cannot create it: Permission denied", "not writable") in notify.stderr
    os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)  # the state directory is right, the socket's is not
    notify = ixpect("notify", "-c", conf, "--socket", root_only / "n.sock", "--state-dir", state, "--user", "nobody")
    assert notify.returncode == 1
    assert (f"ERROR ixpect: cannot listen on {root_only / 'n.sock'}: Permission denied; its directory must be "
            f"writable by uid {NOBODY.pw_uid}, the user this process runs as") in notify.stderr
    (state / "relay-outbox.jsonl").touch(mode=0o600)  # left by an earlier run as root
    capture = ixpect("capture", "-c", conf, "--interface", "lo", "--socket", root_only / "n.sock",
                     "--state-dir", state, "--user", "nobody")
    assert capture.returncode == 1 and "Traceback" not in capture.stderr
    assert f"cannot start: [Errno 13] Permission denied: '{state / 'relay-outbox.jsonl'}'" in capture.stderr


# --------------------------------------------------------------- ixf render --dry-run

def export(macs: list[str]) -> dict:
    """A small IX-F 1.0 export: one LAN, a member per MAC."""
    return {"version": "1.0", "timestamp": "2026-01-01T00:00:00Z",
            "ixp_list": [{"ixp_id": 1, "shortname": "IXP", "vlan": [
                {"id": 10, "name": "peering", "ipv4": {"prefix": "192.0.2.0", "mask_length": 24}}]}],
            "member_list": [{"asnum": 64500 + i, "name": f"M{i}", "connection_list": [{"ixp_id": 1, "vlan_list": [
                {"vlan_id": 10, "ipv4": {"address": f"192.0.2.{i + 1}", "mac_addresses": [mac]}}]}]}
                for i, mac in enumerate(macs)]}


def test_render_dry_run_shows_the_change_and_writes_nothing(tmp_path):
    source, out = tmp_path / "export.json", tmp_path / "etc" / "ixpect.conf.yaml"
    out.parent.mkdir()
    macs = [f"02:00:00:00:00:{i:02x}" for i in range(1, 11)]
    source.write_text(json.dumps(export(macs)))
    render = ["ixf", "render", "--source", source, "--ixp-id", "1", "--vlan-id", "10", "-o", out]
    first = ixpect(*render, "--dry-run")
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith("changed\n") and f"+++ {out} (rendered)" in first.stdout
    assert "+      mac: 02:00:00:00:00:0a" in first.stdout or "02:00:00:00:00:0a" in first.stdout
    assert list(out.parent.iterdir()) == []
    assert ixpect(*render).stdout == "changed\n"
    files = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert ixpect(*render, "--dry-run").stdout == "unchanged\n"

    macs[0] = "02:00:00:00:00:ff"  # one member swapped its router
    source.write_text(json.dumps(export(macs)))
    one = ixpect(*render, "--dry-run")
    removed = [line for line in one.stdout.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in one.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert one.returncode == 0 and one.stdout.endswith("changed\n")
    assert any("02:00:00:00:00:01" in line for line in removed) and any("02:00:00:00:00:ff" in line for line in added)
    assert not any("02:00:00:00:00:02" in line for line in removed + added)

    source.write_text(json.dumps(export(macs[:5])))  # half the LAN gone: the safety valve refuses, also dry
    refused = ixpect(*render, "--dry-run")
    assert refused.returncode == 1 and "error: refusing to drop 12 of 20 static entries" in refused.stderr
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == files
