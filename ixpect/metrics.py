"""Prometheus metrics (config `metrics.listen`), computed at scrape time from counters
the daemon keeps anyway, so serving them adds no work per frame.

The numbers come as one JSON-able snapshot: `capture_snapshot(monitor)` for frames,
bytes, kernel drops, events, the sieve and the watchdog, `Batching.counters()` for the
notifiers.
`ixpect run` serves both from its own objects; in the split deployment capture sits
in a namespace without addresses, so it sends its snapshot to notify over the relay
every few seconds and notify serves both. The IX-F refresh (a separate oneshot) is
read from the status file `ixpect ixf render` writes beside the config."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict]


def capture_snapshot(monitor) -> dict:
    frames, octets = {}, {}
    for cls, (n, size) in monitor.engine.traffic().items():
        frames[cls], octets[cls] = n, size
    snap = {"frames": frames, "bytes": octets, "events": dict(monitor.events), "kernel_drops": monitor.kernel_drops,
            "member_events": [[*key, n] for key, n in monitor.member_events.items()],
            "sieve_given_up": sorted(f"0x{et:04x}" for et in monitor.engine.unsieved),
            "sieve_forgets": monitor.engine.forgets}
    if monitor.watchdog is not None:
        snap["watchdog"] = monitor.watchdog.snapshot()
    return snap


def ixf_status_path(config_path: str | Path) -> Path:
    """Where `ixpect ixf render -o CONFIG` records its last refresh: for
    `ixpect.conf.yaml`, `ixpect.conf.status.json` (beside `ixpect.conf.members.json`).
    Symlinks are followed: NixOS links /etc/ixpect/ixpect.conf.yaml to the rendered file."""
    config_path = Path(config_path).resolve()
    return config_path.with_name(f"{config_path.stem}.status.json")


class Metrics:
    """A prometheus_client collector over snapshots (None: that side has not reported)."""

    def __init__(self, capture: Callable[[], dict | None], notify: Snapshot, config_path: str | Path):
        self.capture = capture
        self.notify = notify
        self.ixf_status = ixf_status_path(config_path)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        cap = self.capture()
        if cap is not None:
            yield _counter("ixpect_frames", "Frames seen, by EtherType class (innermost, after VLAN tags; "
                           "802.3 is llc). Frames with a truncated Ethernet header count as IXPECT_BAD_PACKET "
                           "events only.", "class", cap["frames"])
            yield _counter("ixpect_bytes", "Bytes of the frames seen (as captured), by EtherType class.",
                           "class", cap["bytes"])
            yield _counter("ixpect_events", "Events raised by the probes, by event type.", "type", cap["events"])
            c = CounterMetricFamily("ixpect_member_events", "Events naming a member (the sender of the frame), "
                                    "by member and event type.", labels=["asn", "member", "type"])
            for type_, asn, name, n in cap.get("member_events", ()):
                c.add_metric([str(asn), name, type_], n)
            yield c
            yield _gauge("ixpect_sieve_given_up", "1 for an EtherType whose frames (or its transit packets) varied too "
                         "much for the sieve: they run the probes (more CPU per frame) until the next reload.",
                         "ether_type",
                         dict.fromkeys(cap.get("sieve_given_up", ()), 1))
            yield _counter("ixpect_sieve_forgets", "Times a probe made the sieve forget every frame it was "
                           "taught (an address challenged, a mac_address window starting, a flood of unknown "
                           "MACs): frames run the probes until it learns them again.", None,
                           cap.get("sieve_forgets", 0))
            if cap.get("kernel_drops") is not None:
                yield _counter("ixpect_kernel_drops", "Frames the kernel dropped before IXpect could read "
                               "them (PACKET_STATISTICS of the capture socket).", None, cap["kernel_drops"])
            if "watchdog" in cap:
                yield GaugeMetricFamily("ixpect_capture_silent", "1 while the capture has seen no frame (of "
                                        "watchdog.classes) for watchdog.silent_after: the monitor may be blind.",
                                        value=float(cap["watchdog"]["silent"]))
                yield GaugeMetricFamily("ixpect_capture_last_traffic_timestamp_seconds", "When the watchdog last "
                                        "saw frames (of watchdog.classes) arrive (Unix time, to a second).",
                                        value=cap["watchdog"]["last_traffic"])
            if "received" in cap:
                yield GaugeMetricFamily("ixpect_capture_report_timestamp_seconds", "When notify last "
                                        "received capture's counters (Unix time).", value=cap["received"])
        note = self.notify()
        yield _counter("ixpect_notifier_deliveries", "Messages a notifier channel delivered.", "channel",
                       note["deliveries"])
        yield _counter("ixpect_notifier_failures", "Failed delivery attempts of a notifier channel "
                       "(each is retried).", "channel", note["failures"])
        yield _counter("ixpect_notifier_dropped_batches", "Batches a notifier channel dropped undelivered "
                       "(older than delivery.max_age, or pending at exit without a state directory).", "channel",
                       note["dropped"])
        yield _gauge("ixpect_notifier_pending", "Messages of a notifier channel waiting for delivery (or a retry).",
                     "channel", note["pending"])
        yield from self._ixf()

    def _ixf(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            status = json.loads(self.ixf_status.read_bytes())
            refreshed, failed = (float(status[k]) if k in status else None for k in ("refreshed", "failed"))
            entries = dict(status.get("entries", {}))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable IX-F status: %s", self.ixf_status, exc)
            return
        if refreshed is not None:
            yield GaugeMetricFamily("ixpect_ixf_refresh_timestamp_seconds", "Last successful `ixpect ixf render` "
                                    "(Unix time), changed or not.", value=refreshed)
        if failed is not None:
            yield GaugeMetricFamily("ixpect_ixf_refresh_failure_timestamp_seconds", "Last failed `ixpect ixf "
                                    "render` (Unix time); the config kept is the last good one.", value=failed)
        yield _gauge("ixpect_ixf_entries", "Entries of the last rendered IX-F export: members, IPv4 and IPv6 "
                     "addresses.", "kind", entries)


def _counter(name: str, doc: str, label: str | None, values):
    from prometheus_client.core import CounterMetricFamily

    return _family(CounterMetricFamily, name, doc, label, values)


def _gauge(name: str, doc: str, label: str, values: dict):
    from prometheus_client.core import GaugeMetricFamily

    return _family(GaugeMetricFamily, name, doc, label, values)


def _family(cls, name: str, doc: str, label: str | None, values):
    """A metric family: one value, or one sample per key of `values` under `label`."""
    if label is None:
        return cls(name, doc, value=values)
    family = cls(name, doc, labels=[label])
    for key, n in sorted(values.items()):
        family.add_metric([key], float(n))
    return family


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` (the schema has checked the form)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class Server:
    """The /metrics HTTP server of `run` or `notify`; a reload that changes
    `metrics.listen` moves it (or starts or stops it)."""

    def __init__(self, config_path: str, capture: Callable[[], dict | None], notify: Snapshot):
        self.collector = Metrics(capture, notify, config_path)
        self.listen: str | None = None
        self.server = None

    def configure(self, cfg: dict) -> None:
        """Serve on `metrics.listen` (none: stop). Raises OSError when the address cannot
        be bound; then the previous address is served again, if it can be."""
        listen = (cfg.get("metrics") or {}).get("listen")
        if listen == self.listen:
            return
        previous = self.listen
        self.close()  # first: the new address may share the port
        try:
            self._start(listen)
        except OSError:
            if previous is not None:
                try:
                    self._start(previous)
                except OSError:
                    log.error("metrics: cannot serve on %s again either", previous)
            raise

    def _start(self, listen: str | None) -> None:
        if listen is None:
            return
        # imported only here: 50 ms of start-up that a monitor without metrics need not pay
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        host, port = parse_listen(listen)
        try:
            self.server, _ = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
        self.listen = listen
        log.info("metrics on http://%s/metrics", listen)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.server, self.listen = None, None
