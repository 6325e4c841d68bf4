"""The capture file reader: pcap (both byte orders, us and ns) and pcapng, damage handling."""

import json
import struct
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

from conftest import IXPECT
from ixpect.pcap import PcapError, frames

F1 = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / (b"a" * 50))
F2 = bytes(Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / (b"b" * 50))


def classic(order: str, nano: bool, linktype: int = 1, records=((1.5, F1), (2.25, F2))) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for t, f in records:
        sec = int(t)
        frac = round((t - sec) * (1e9 if nano else 1e6))
        out += struct.pack(order + "IIII", sec, frac, len(f), len(f)) + f
    return out


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap(tmp_path, order, nano):
    p = tmp_path / "x.pcap"
    p.write_bytes(classic(order, nano))
    assert list(frames(p)) == [(1.5, F1), (2.25, F2)]


def test_scapy_written_pcap(tmp_path):
    pkt = Ether(F1)
    pkt.time = 1761426000.123456
    wrpcap(str(tmp_path / "s.pcap"), [pkt])
    ((t, f),) = frames(tmp_path / "s.pcap")
    assert f == F1 and abs(t - 1761426000.123456) < 1e-6


def test_pcapng(tmp_path):
    p = tmp_path / "x.pcapng"
    w = PcapNgWriter(str(p))
    for t, f in ((1761426000.5, F1), (1761426001.75, F2)):
        pkt = Ether(f)
        pkt.time = t
        w.write(pkt)
    w.close()
    got = list(frames(p))
    assert [f for _, f in got] == [F1, F2]
    assert [round(t, 6) for t, _ in got] == [1761426000.5, 1761426001.75]


def test_truncated_record_yields_what_came_before(tmp_path):
    p = tmp_path / "t.pcap"
    p.write_bytes(classic("<", False)[:-10])
    it = frames(p)
    assert next(it) == (1.5, F1)
    with pytest.raises(PcapError, match="truncated or corrupt record"):
        next(it)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"\x00\x01", "too short"),
    (b"GIF89a" + bytes(30), "not a pcap or pcapng file"),
    (classic("<", False, linktype=113), "unsupported link-layer type 113"),
    (classic("<", False)[:20], "truncated pcap file header"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    with pytest.raises(PcapError, match=message):
        list(frames(p))


def _rss_file_kib() -> int:
    """Resident pages of mapped files in this process (/proc/self/status RssFile)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_a_long_replay_gives_back_the_pages_it_walked(tmp_path):
    """Replaying a large capture must not keep the whole file resident."""
    frame = F1.ljust(1000, b"\0")
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    p = tmp_path / "long.pcap"
    with open(p, "wb") as f:
        f.write(classic("<", False, records=()))
        f.write(record * 64_000)  # 64 MB
    it = frames(p)
    before = _rss_file_kib()
    peak = 0
    for n, (_, got) in enumerate(it, 1):
        if n % 4000 == 0:
            peak = max(peak, _rss_file_kib() - before)
    assert n == 64_000 and got == frame
    assert peak < 24 * 1024, f"{peak} KiB of the 64 MB file stayed resident"


# --- frames the capture cut short (snaplen) ------------------------------------------

def cut_frames():
    """An IPv4 and an IPv6 packet longer than a 96-byte snaplen, a DHCP discover whose
    ports fit into it, and a 60-byte IPv4 frame whose length field is a lie."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    src, lan = "02:00:00:00:00:0a", dict(dst="ff:ff:ff:ff:ff:ff")
    big4 = Ether(src=src, dst="02:00:00:00:00:0b") / IP(src="192.0.2.10", dst="192.0.2.11") / UDP(sport=1, dport=2) \
        / (b"x" * 400)
    big6 = Ether(src=src, dst="02:00:00:00:00:0b") / IPv6(src="2001:db8::a", dst="2001:db8::b") \
        / UDP(sport=1, dport=2) / (b"x" * 400)
    dhcp = Ether(src=src, **lan) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / (b"\0" * 300)
    lie = bytearray(bytes(Ether(src=src, dst="02:00:00:00:00:0b") / IP(src="192.0.2.10", dst="192.0.2.11")
                          / UDP(sport=1, dport=2) / (b"x" * 18)))
    lie[16:18] = (500).to_bytes(2, "big")
    return [bytes(big4), bytes(big6), bytes(dhcp), bytes(lie)]


def cut_classic(snaplen=96) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)
    for i, f in enumerate(cut_frames()):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, min(len(f), snaplen), len(f)) + f[:snaplen]
    return out


def cut_pcapng(snaplen=96) -> bytes:
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, snaplen))
    for i, f in enumerate(cut_frames()):
        us = (1_700_000_000 + i) * 1_000_000
        data = f[:snaplen]
        out += block(6, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(f)) + data)
    return out


@pytest.mark.parametrize("build", [cut_classic, cut_pcapng])
def test_frames_cut_by_the_snaplen_are_not_malformed(tmp_path, build):
    (tmp_path / "cut.pcap").write_bytes(build())
    (tmp_path / "c.yaml").write_text("probes:\n  ip_control: {enable: true, prefixes: [192.0.2.0/24]}\n")
    p = subprocess.run([*IXPECT, "run", "-c", tmp_path / "c.yaml", "--pcap", tmp_path / "cut.pcap", "--jsonl", "-"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    events = [(e["type"], e["data"].get("protocol") or e["data"].get("reason")) for e in map(json.loads,
                                                                                      p.stdout.splitlines())]
    # the cut DHCP discover is still judged by what was captured (its cookie was cut off);
    # only the frame that is shorter than the snaplen and lies is malformed
    assert events == [("DHCP_PACKET_FOUND", "bootp"),
                      ("IXPECT_BAD_PACKET", "IPv4 total length 500 exceeds the frame (46)")]
