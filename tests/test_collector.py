"""Batching: events of one type with equal data merge within a collection window."""

from ixpect.collector import Collector
from ixpect.events import Event


def ev(t, type_="STP_PACKET_FOUND", src="02:00:00:00:00:0a", frame=None):
    return Event(type_, t, {"mac_addr_source": src, "mac_addr_expected": ["x"]}, frame)


def test_equal_events_merge_with_count_times_and_first_frame():
    out = []
    c = Collector(60.0, out.append)
    for i, t in enumerate((10.0, 20.0, 30.0)):
        c.add(ev(t, frame=bytes([i])))
    c.add(ev(35.0, src="02:00:00:00:00:0b"))
    c.add(ev(36.0, type_="IXPECT_TEST"))
    assert out == []
    c.flush()
    (batches,) = out
    first = batches[0]
    assert (first.count, first.first, first.last, first.sample) == (3, 10.0, 30.0, b"\x00")
    assert [b.count for b in batches] == [3, 1, 1]
    assert len({b.id for b in batches}) == 3
    assert first.to_json()["first"] == "1970-01-01T00:00:10.000000Z"


def test_window_closes_in_frame_time():
    out = []
    c = Collector(60.0, out.append)
    c.add(ev(100.0))
    c.tick(159.9)
    assert out == []
    c.tick(160.0)
    assert [b.count for b in out[0]] == [1]
    c.add(ev(161.0))
    c.add(ev(230.0))  # past the second window's end: the window with 161 is delivered first
    assert [[b.first for b in w] for w in out] == [[100.0], [161.0]]
    c.flush()
    c.flush()  # nothing pending: nothing delivered
    assert [[b.first for b in w] for w in out] == [[100.0], [161.0], [230.0]]


def test_batches_per_window_are_capped_and_the_rest_counted():
    out = []
    c = Collector(60.0, out.append, max_batches=3)
    for i in range(10):
        c.add(ev(10.0 + i, src=f"02:00:00:00:00:{i:02x}"))
    c.add(ev(30.0, src="02:00:00:00:00:01"))  # an existing batch still merges
    c.flush()
    (batches,) = out
    assert [(b.type, b.count) for b in batches] == [("STP_PACKET_FOUND", 1), ("STP_PACKET_FOUND", 2),
                                                     ("STP_PACKET_FOUND", 1), ("IXPECT_TABLE_FULL", 7)]
    assert batches[-1].data == {"table": "event.batches", "limit": 3}
