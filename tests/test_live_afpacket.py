"""The AF_PACKET ring when its interface goes away: a link flap is waited out, a
vanished device ends the capture (for systemd to restart) instead of spinning."""

import subprocess
import time
import uuid

import pytest

from ixpect.afpacket import AfPacketSource

from livenet import needs_root


@pytest.fixture
def veth_ns():
    ns, a, b = f"ixt-{uuid.uuid4().hex[:6]}", f"ixa{uuid.uuid4().hex[:6]}", f"ixb{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", b, "up"], check=True)
        yield ns, a
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_root
def test_link_down_is_waited_out_and_a_vanished_device_is_fatal(veth_ns, caplog):
    ns, ifname = veth_ns
    source = AfPacketSource(ifname, ns)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", ifname, "down"], check=True)
        started = time.monotonic()
        assert source.read(0.3) == [] and source.read(0.3) == []
        assert time.monotonic() - started >= 0.25  # the second poll blocked: no spinning on the error
        assert "waiting for the link to come back" in caplog.text
        subprocess.run(["ip", "-n", ns, "link", "del", ifname], check=True)
        with pytest.raises(OSError, match=f"capture interface {ifname} is gone"):
            for _ in range(3):
                source.read(0.3)
    finally:
        source.close()
