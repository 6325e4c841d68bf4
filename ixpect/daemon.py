"""`ixpect run`: frames in, probes, batches out to the notifiers, in one process."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterable
from contextlib import ExitStack

from ixpect import config as configuration
from ixpect.collector import Collector
from ixpect.engine import Engine
from ixpect.events import Event
from ixpect.members import MemberTable
from ixpect.notify.delivery import Delivery
from ixpect.pcap import PcapError, frames

log = logging.getLogger("ixpect")

EXIT_OK, EXIT_CONFIG, EXIT_BAD_INPUT = 0, 1, 2
#: how long a stopping monitor keeps trying to deliver what is pending
CLOSE_TIMEOUT = 10.0


class Stop(Exception):
    """SIGTERM: flush what is pending, then exit 0."""


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    events = logging.StreamHandler(sys.stderr)
    events.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ev_log = logging.getLogger("ixpect.events")
    ev_log.addHandler(events)
    ev_log.propagate = False


def load(path: str) -> tuple[dict, MemberTable | None]:
    """The config and its member table; raises ConfigError or OSError."""
    cfg = configuration.load(path)
    table = cfg.get("member_table")
    return cfg, MemberTable.load(table) if table else None


class Monitor:
    """Engine, collector and delivery of one process, with the signal behaviour of
    DESIGN.md: SIGHUP reloads (learned state and pending batches stay), SIGUSR1
    sends IXPECT_TEST, SIGTERM stops after flushing. Signals only set flags; they
    take effect between chunks of frames (`apply_signals`), never inside a probe."""

    def __init__(self, config_path: str, cfg: dict, members: MemberTable | None, *,
                 state_dir: str | None = None, jsonl=None):
        self.config_path = config_path
        self.cfg = cfg
        self.state_dir = state_dir
        self.jsonl = jsonl
        self.delivery = Delivery.from_config(cfg["event"], state_dir)
        self.collector = Collector(cfg["event"]["collection_window"], self._deliver, cfg["event"]["max_batches"])
        self.engine = Engine(cfg["probes"], self.sink, members, timers=(self.collector,))
        self.pending: set[int] = set()

    def _deliver(self, batches) -> None:
        self.delivery(batches)  # late-bound: a reload may replace the delivery

    def sink(self, ev: Event) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(ev.to_json()) + "\n")
        self.collector.add(ev)

    def feed(self, source: Iterable[tuple[float, bytes]]) -> None:
        self.engine.feed(source)
        self.apply_signals()

    def install_signals(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: self.pending.add(signum))

    def apply_signals(self) -> None:
        while self.pending:
            sig = self.pending.pop()
            if sig == signal.SIGTERM:
                raise Stop
            if sig == signal.SIGUSR1:
                log.info("SIGUSR1: sending IXPECT_TEST")
                self.delivery.test()
            elif sig == signal.SIGHUP:
                self.reload()

    def reload(self) -> None:
        try:
            cfg, members = load(self.config_path)
        except configuration.ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", "\n".join(exc.errors))
            return
        except OSError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        self.engine.configure(cfg["probes"], members or MemberTable())
        self.collector.window = cfg["event"]["collection_window"]
        self.collector.max_batches = cfg["event"]["max_batches"]
        if cfg["event"] != self.cfg["event"]:
            # what the old channels still hold stays in the spool for the new ones
            self.delivery.close(CLOSE_TIMEOUT)
            self.delivery = Delivery.from_config(cfg["event"], self.state_dir)
        self.cfg = cfg
        log.info("configuration reloaded from %s", self.config_path)

    def close(self) -> None:
        """Report windows in progress, deliver everything pending (within CLOSE_TIMEOUT)."""
        self.engine.flush()
        self.collector.flush()
        self.delivery.close(CLOSE_TIMEOUT)


def run(args) -> int:
    setup_logging()
    try:
        cfg, members = load(args.config)
    except configuration.ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
        return EXIT_CONFIG
    except (OSError, ValueError) as exc:
        log.error("cannot load configuration: %s", exc)
        return EXIT_CONFIG
    if not args.pcap:
        log.error("live capture (--interface, --vxlan) is not available in this build")
        return EXIT_CONFIG
    with ExitStack() as stack:
        jsonl = None
        if args.jsonl:
            jsonl = sys.stdout if args.jsonl == "-" else stack.enter_context(open(args.jsonl, "a", buffering=1))
        monitor = Monitor(args.config, cfg, members, state_dir=args.state_dir, jsonl=jsonl)
        monitor.install_signals()
        status = EXIT_OK
        try:
            for path in args.pcap:
                try:
                    monitor.feed(frames(path))
                except (PcapError, OSError) as exc:
                    log.error("%s", exc)
                    status = EXIT_BAD_INPUT
        except (Stop, KeyboardInterrupt):
            log.info("stopping: flushing pending batches")
        finally:
            monitor.close()
            log.info("%d frames processed", monitor.engine.frames)
    return status
