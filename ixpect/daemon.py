"""`ixpect run`: frames in, probes, batches out to the notifiers, in one process."""

from __future__ import annotations

import json
import logging
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from ixpect import config as configuration
from ixpect.collector import Collector
from ixpect.engine import Engine
from ixpect.events import Event
from ixpect.members import MemberTable
from ixpect.notify import Dispatcher, channels
from ixpect.pcap import PcapError, frames

log = logging.getLogger("ixpect")

EXIT_OK, EXIT_CONFIG, EXIT_BAD_INPUT = 0, 1, 2


class Stop(Exception):
    """SIGTERM: flush what is pending, then exit 0."""


def _stop(signum, frame):
    raise Stop


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
    cfg = configuration.load(path)
    table = cfg.get("member_table")
    return cfg, MemberTable.load(table) if table else None


def run(args) -> int:
    setup_logging()
    try:
        cfg, members = load(args.config)
    except configuration.ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
        return EXIT_CONFIG
    except OSError as exc:
        log.error("cannot load configuration: %s", exc)
        return EXIT_CONFIG
    with ExitStack() as stack:
        sinks = []
        if args.jsonl:
            out = sys.stdout if args.jsonl == "-" else stack.enter_context(open(args.jsonl, "a", buffering=1))
            sinks.append(lambda ev: out.write(json.dumps(ev.to_json()) + "\n"))
        collector = Collector(cfg["event"]["collection_window"],
                              Dispatcher(channels(cfg["event"]["notifiers"])))
        sinks.append(collector.add)

        def sink(ev: Event) -> None:
            for s in sinks:
                s(ev)

        engine = Engine(cfg["probes"], sink, members, timers=(collector,))
        signal.signal(signal.SIGTERM, _stop)
        status = EXIT_OK
        try:
            if args.pcap:
                status = _replay(engine, args.pcap)
            else:
                log.error("live capture (--interface, --vxlan) is not available in this build")
                status = EXIT_CONFIG
        except (Stop, KeyboardInterrupt):
            log.info("stopping: flushing pending batches")
        finally:
            engine.flush()
            collector.flush()
            log.info("%d frames processed", engine.frames)
    return status


def _replay(engine: Engine, paths: list[str]) -> int:
    status = EXIT_OK
    for path in paths:
        try:
            engine.feed(frames(path))
        except (PcapError, OSError) as exc:
            log.error("%s", exc)
            status = EXIT_BAD_INPUT
    return status


def capture(args) -> int:
    raise NotImplementedError


def notify(args) -> int:
    raise NotImplementedError
