"""Robustness: every capture of tcpdump's test suite (many deliberately malformed)
goes through `ixpect run --pcap` without a traceback or a hang."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import CORPUS, IXPECT, REPO

pytestmark = pytest.mark.needs("test data")

CONF = REPO / "examples" / "demo.conf.yaml"


def replay(path):
    try:
        p = subprocess.run([*IXPECT, "run", "-c", CONF, "--pcap", path, "--jsonl", "/dev/null"],
                           capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return path.name, "hang (over 10 s)"
    if p.returncode not in (0, 2):
        return path.name, f"exit {p.returncode}"
    if "Traceback" in p.stderr or "internal error" in p.stderr:
        return path.name, p.stderr[-2000:]
    return path.name, None


def test_every_tcpdump_capture_replays_cleanly():
    files = sorted(CORPUS.iterdir())
    if not files:
        pytest.fail(f"robustness corpus missing at {CORPUS}")
    assert len(files) == 830
    with ThreadPoolExecutor(4) as pool:
        failures = {name: why for name, why in pool.map(replay, files) if why}
    assert failures == {}
