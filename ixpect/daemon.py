"""Where the processes are assembled: `ixpect run` (capture, probes and notifiers in
one process), `ixpect capture` and `ixpect notify` (the split deployment)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from ixpect import config as configuration
from ixpect import logsetup, metrics, notify as notifiers, privileges, probes, relay
from ixpect.collector import Collector
from ixpect.engine import Engine
from ixpect.events import Event
from ixpect.members import MemberTable
from ixpect.notify import NotifierError
from ixpect.notify.delivery import Delivery, channels_of
from ixpect.pcap import PcapError, chunks
from ixpect.state import NeighborState
from ixpect.watchdog import Watchdog

log = logging.getLogger("ixpect")

EXIT_OK, EXIT_CONFIG, EXIT_BAD_INPUT = 0, 1, 2
#: how long a stopping monitor keeps trying to deliver what is pending
CLOSE_TIMEOUT = 10.0
#: a live loop waits at most this long for frames before it closes windows on wall-clock time
TICK = 1.0
#: a stopping live loop reads on for at most this long (seconds), until a read of
#: DRAIN_READ comes back empty: the frames that arrived before the stop may wait in the
#: ring's current block, which the kernel hands over only when it retires it (50 ms)
DRAIN, DRAIN_READ = 1.0, 0.2
#: kernel drops are logged at most this often (seconds)
DROPS_EVERY = 10.0
#: capture sends its counters to notify this often (seconds)
METRICS_EVERY = 5.0


class Stop(Exception):
    """SIGTERM: flush what is pending, then exit 0."""


class Batching:
    """Collector and delivery: events in, finished windows out to the notifiers.
    `delivered` is called once a window is in the delivery's spool."""

    timers: tuple

    def __init__(self, event_cfg: dict, state_dir: str | None = None, delivered=None):
        self.event_cfg = event_cfg
        self.state_dir = state_dir
        self.delivered = delivered
        self.tally: dict[str, dict[str, int]] = {"deliveries": {}, "failures": {}, "dropped": {}}
        self.delivery = Delivery.from_config(event_cfg, state_dir, self.tally)
        self.collector = Collector(event_cfg["collection_window"], self._deliver, event_cfg["max_batches"])
        self.timers = (self.collector,)

    def _deliver(self, batches) -> None:
        self.delivery(batches)  # late-bound: a reload may replace the delivery
        if self.delivered is not None:
            self.delivery.inbox.join()  # routed and spooled
            self.delivered()

    def add(self, ev: Event) -> None:
        self.collector.add(ev)

    def counters(self) -> dict:
        """For the metrics: the delivery tally and what each channel has pending."""
        return {**{what: dict(counts) for what, counts in self.tally.items()}, "pending": self.delivery.backlog()}

    def test(self) -> None:
        self.delivery.test()

    def configure(self, event_cfg: dict) -> None:
        if event_cfg != self.event_cfg:
            chans = channels_of(event_cfg)  # may fail: then the running delivery stays
            # what the old channels still hold stays in the spool for the new ones
            self.delivery.close(CLOSE_TIMEOUT)
            self.delivery = Delivery.from_config(event_cfg, self.state_dir, self.tally, chans)
        self.collector.window = event_cfg["collection_window"]
        self.collector.max_batches = event_cfg["max_batches"]
        self.event_cfg = event_cfg

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        self.collector.flush()
        self.delivery.close(timeout)


class Service:
    """The signals a daemon answers: SIGHUP reloads (learned state and pending
    batches stay), SIGUSR1 sends IXPECT_TEST, SIGTERM stops after flushing. Signals
    only set flags; they take effect between chunks of work (`apply_signals`), never
    inside a probe. Subclasses provide `configure(cfg, members)` and `test()`."""

    def __init__(self, config_path: str, cfg: dict):
        self.config_path = config_path
        self.cfg = cfg
        self.pending: set[int] = set()
        self.metrics: metrics.Server | None = None  # of `run` and `notify`

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
                self.test()
            elif sig == signal.SIGHUP:
                self.reload()

    def reload(self) -> None:
        try:
            cfg, members = configuration.load_with_members(self.config_path)
            self.configure(cfg, members)
        except configuration.ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", "\n".join(exc.errors))
            return
        except (OSError, ValueError, NotifierError) as exc:  # a file changed since it was checked
            log.error("reload refused, keeping the running config: %s", exc)
            return
        self.cfg = cfg
        if self.metrics is not None:
            try:
                self.metrics.configure(cfg)
            except OSError as exc:
                log.error("%s; metrics stay on %s", exc, self.metrics.listen or "nothing")
        log.info("configuration reloaded from %s", self.config_path)

    def serve_metrics(self, capture, notify) -> None:
        """Start /metrics if configured; raises OSError when its address cannot be bound."""
        self.metrics = metrics.Server(self.config_path, capture, notify)
        self.metrics.configure(self.cfg)


class Monitor(Service):
    """The engine and where its events go: batching in this process (`run`) or the
    relay to `ixpect notify` (`capture`). With a state directory the learned
    neighbors are loaded at start and saved by `checkpoint` and `close`."""

    def __init__(self, config_path: str, cfg: dict, members: MemberTable | None, *,
                 state_dir: str | None = None, jsonl=None, outlet=None):
        super().__init__(config_path, cfg)
        self.jsonl = jsonl
        self.outlet = outlet if outlet is not None else Batching(cfg["event"], state_dir)
        self.engine = Engine(cfg["probes"], self.sink, members, timers=self.outlet.timers)
        self.events: dict[str, int] = {}  # by type, for the metrics
        self.member_events: dict[tuple[str, int, str], int] = {}  # by (type, member ASN, name)
        self.kernel_drops: int | None = None  # of a live source, as the main loop last read them
        self.watchdog: Watchdog | None = None  # of a live source
        self.state = NeighborState(state_dir, self.engine) if state_dir else None
        if self.state is not None:
            self.state.load()
        self.saved_at = time.time()

    def sink(self, ev: Event) -> None:
        self.events[ev.type] = self.events.get(ev.type, 0) + 1
        if ev.member:
            key = (ev.type, ev.member["asn"], ev.member["name"])
            self.member_events[key] = self.member_events.get(key, 0) + 1
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(ev.to_json()) + "\n")
        self.outlet.add(ev)

    def checkpoint(self, now: float) -> None:
        """Save learned neighbors (if changed) once per collection window of wall-clock time."""
        if self.state is not None and now - self.saved_at >= self.cfg["event"]["collection_window"]:
            self.state.save()
            self.saved_at = now

    def feed(self, source: Iterable[tuple[float, bytes]]) -> None:
        self.engine.feed(source)
        self.apply_signals()

    def test(self) -> None:
        self.outlet.test()

    def configure(self, cfg: dict, members: MemberTable | None) -> None:
        self.outlet.configure(cfg["event"])  # first: the notifiers are what can still fail
        self.engine.configure(cfg["probes"], members or MemberTable())
        if self.watchdog is not None:
            self.watchdog.configure(cfg["watchdog"])
        if self.state is not None:
            self.state.adopt()

    def close(self) -> None:
        """Report windows in progress, deliver everything pending (within CLOSE_TIMEOUT)."""
        self.engine.flush()
        if self.state is not None:
            self.state.save()
        self.outlet.close(CLOSE_TIMEOUT)


class Notify(Service):
    """`ixpect notify`: events from `ixpect capture` in, batches out to the notifiers;
    serves the metrics of both (capture's arrive over the relay)."""

    def __init__(self, config_path: str, cfg: dict, socket_path: str, state_dir: str | None):
        super().__init__(config_path, cfg)
        self.batching = Batching(cfg["event"], state_dir, delivered=self._delivered)
        self.receiver = relay.Receiver(socket_path, state_dir, self.batching.collector)
        self.receiver.replay()
        log.info("listening on %s", socket_path)

    def _delivered(self) -> None:
        self.receiver.window_delivered()

    def test(self) -> None:
        self.batching.test()

    def configure(self, cfg: dict, members: MemberTable | None) -> None:
        self.batching.configure(cfg["event"])

    def serve(self) -> None:
        collector = self.batching.collector
        while True:
            now = time.time()
            if now >= collector.deadline:
                collector.tick(now)
            self.apply_signals()
            self.receiver.poll(TICK)

    def close(self) -> None:
        self.batching.close(CLOSE_TIMEOUT)
        self.receiver.close()


def live(monitor: Monitor, source, after_chunk=None) -> None:
    """Feed the source's chunks until SIGTERM, and those that arrived before it. Frames
    bring their kernel time; when none arrive, windows still close on wall-clock time,
    and the watchdog notices the silence. Kernel drops are logged."""
    engine, dropped, reported = monitor.engine, 0, 0.0
    log.info("capturing from %s", source.describe())
    watchdog = monitor.watchdog = Watchdog(monitor.cfg["watchdog"], source.name, time.time())
    while True:
        chunk = source.read(TICK)
        if chunk:
            engine.feed(chunk)
        now = time.time()
        if now >= engine.deadline:
            engine.tick(now)
        monitor.kernel_drops = drops = source.drops()  # one syscall per chunk at most
        if drops != dropped and now - reported >= DROPS_EVERY:
            log.warning("%s: the kernel dropped %d frames (%d in total)", source.describe(), drops - dropped, drops)
            dropped, reported = drops, now
        watchdog.check(now, engine.traffic, engine.emit)
        monitor.checkpoint(now)
        if after_chunk is not None:
            after_chunk()
        try:
            monitor.apply_signals()
        except Stop:
            deadline = time.monotonic() + DRAIN
            while time.monotonic() < deadline and (chunk := source.read(DRAIN_READ)):
                engine.feed(chunk)
            raise


def open_source(args, inherited: int | None = None):
    """The live source of `run`/`capture`, opened before privileges are dropped."""
    if getattr(args, "vxlan", None):
        from ixpect.vxlan import VxlanSource

        return VxlanSource(args.vxlan, args.vni)
    from ixpect.afpacket import AfPacketSource

    return AfPacketSource(args.interface, args.netns, fd=inherited)


def _load_or_log(args):
    try:
        return configuration.load_with_members(args.config)
    except configuration.ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
    except (OSError, ValueError) as exc:
        log.error("cannot load configuration: %s", exc)
    return None


#: what the probes and notifiers import only when first used, found by tracing a
#: delivery through every notifier: a metrics scrape; jinja2 compiling a template (its
#: string literals) or reporting an error; an e-mail (EmailMessage's policy); requests
#: looking for ~/.netrc and encoding a non-ASCII host name
LATE_IMPORTS = ("prometheus_client", "prometheus_client.core", "jinja2.debug", "encodings.unicode_escape",
                "email.policy", "netrc", "encodings.idna", "idna")


def preload() -> None:
    """Import every probe and notifier (a reload may enable any) and what they import
    late, and read the built-in templates: once privileges are dropped the user may
    not be able to read the installation (a venv under /root, mode 0700)."""
    for kinds in (probes.KINDS, notifiers.KINDS):
        for target in kinds.values():
            importlib.import_module(target.partition(":")[0])
    for module in LATE_IMPORTS:
        importlib.import_module(module)
    from ixpect.notify.render import builtin

    builtin()


def usable_state_dir(path: str | None) -> bool:
    """Create the state directory if missing and check that this process may write
    it; otherwise log which directory, and for whom, it must be writable."""
    if path is None:
        return True
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK | os.X_OK):
            return True
        problem = "not writable"
    except OSError as exc:
        problem = f"cannot create it: {exc.strerror}"
    log.error("state directory %s: %s; it must be writable by uid %d, the user this process runs as",
              path, problem, os.getuid())
    return False


def _started(args, make):
    """`make()`, which opens the files of the state directory, or None (logged) when
    the directory or a file in it cannot be used."""
    if not usable_state_dir(args.state_dir):
        return None
    try:
        return make()
    except (OSError, NotifierError) as exc:  # NotifierError: a file changed since the config was checked
        log.error("cannot start: %s", exc)
        return None


def _start_live(args):
    """Open the source, then drop privileges; None (logged) when either fails."""
    inherited = privileges.inherited_socket()
    try:
        source = open_source(args, inherited)
    except (OSError, ValueError) as exc:
        log.error("cannot open the capture source: %s", exc)
        return None
    if args.interface and inherited is None:
        source.warn_if_addressed()
    preload()
    try:
        # AF_PACKET needs CAP_NET_RAW only to open: hand the socket to a fresh exec if need be
        handover = source.sock.fileno() if args.interface and inherited is None else None
        privileges.drop(args.user, handover)
    except (OSError, KeyError, RuntimeError) as exc:
        source.close()
        log.error("cannot drop privileges: %s", exc)
        return None
    return source


def _serve_live(monitor: Monitor, source, after_chunk=None) -> int:
    monitor.install_signals()
    status = EXIT_OK
    try:
        live(monitor, source, after_chunk)
    except (Stop, KeyboardInterrupt):
        log.info("stopping: flushing pending events")
    except OSError as exc:
        log.error("capture failed: %s", exc)
        status = EXIT_CONFIG
    finally:
        monitor.close()
        log.info("%d frames processed; %s; %d dropped by the kernel",
                 monitor.engine.frames, source.describe(), source.drops())
        source.close()
    return status


def capture(args) -> int:
    logsetup.setup(args.log_level)
    loaded = _load_or_log(args)
    if loaded is None:
        return EXIT_CONFIG
    source = _start_live(args)
    if source is None:
        return EXIT_CONFIG
    monitor = _started(args, lambda: Monitor(args.config, *loaded, state_dir=args.state_dir,
                                             outlet=relay.Sender(args.socket, args.state_dir)))
    if monitor is None:
        source.close()
        return EXIT_CONFIG
    sender = monitor.outlet
    reported = 0.0

    def after_chunk() -> None:  # make the events durable; now and then tell notify the counters
        nonlocal reported
        sender.sync()
        if (now := time.monotonic()) - reported >= METRICS_EVERY:
            sender.report(metrics.capture_snapshot(monitor))
            reported = now

    return _serve_live(monitor, source, after_chunk)


def notify(args) -> int:
    logsetup.setup(args.log_level)
    loaded = _load_or_log(args)
    if loaded is None:
        return EXIT_CONFIG
    if args.user:  # started by hand as root: nothing after reading the config needs privileges
        preload()
        try:
            privileges.drop(args.user)
        except (OSError, KeyError, RuntimeError) as exc:
            log.error("cannot drop privileges to %s: %s", args.user, exc)
            return EXIT_CONFIG
    if not usable_state_dir(args.state_dir):
        return EXIT_CONFIG
    try:
        service = Notify(args.config, loaded[0], args.socket, args.state_dir)
    except OSError as exc:
        if exc.filename is None:  # the socket's: bind() names no file
            log.error("cannot listen on %s: %s; its directory must be writable by uid %d, the user this "
                      "process runs as", args.socket, exc.strerror, os.getuid())
        else:
            log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    try:
        service.serve_metrics(lambda: service.receiver.capture_metrics, service.batching.counters)
    except OSError as exc:
        log.error("%s", exc)
        service.close()
        return EXIT_CONFIG
    service.install_signals()
    try:
        service.serve()
    except (Stop, KeyboardInterrupt):
        log.info("stopping: flushing pending batches")
    finally:
        service.close()
        service.metrics.close()
        log.info("%d events received, %d duplicates dropped", service.receiver.received,
                 service.receiver.duplicates)
    return EXIT_OK


def run(args) -> int:
    logsetup.setup(args.log_level)
    loaded = _load_or_log(args)
    if loaded is None:
        return EXIT_CONFIG
    with ExitStack() as stack:
        jsonl = None
        if args.jsonl:  # opened before privileges are dropped
            jsonl = sys.stdout if args.jsonl == "-" else stack.enter_context(open(args.jsonl, "a", buffering=1))
        source = None
        if not args.pcap:
            source = _start_live(args)
            if source is None:
                return EXIT_CONFIG
        monitor = _started(args, lambda: Monitor(args.config, *loaded, state_dir=args.state_dir, jsonl=jsonl))
        if monitor is None:
            if source is not None:
                source.close()
            return EXIT_CONFIG
        try:
            monitor.serve_metrics(partial(metrics.capture_snapshot, monitor), monitor.outlet.counters)
        except OSError as exc:
            log.error("%s", exc)
            monitor.close()
            if source is not None:
                source.close()
            return EXIT_CONFIG
        stack.callback(monitor.metrics.close)
        if source is not None:
            return _serve_live(monitor, source)
        monitor.install_signals()
        status = EXIT_OK
        try:
            for path in args.pcap:
                try:
                    for chunk in chunks(path, TICK):  # signals are acted on between chunks
                        monitor.feed(chunk)
                except (PcapError, OSError) as exc:
                    log.error("%s", exc)
                    status = EXIT_BAD_INPUT
        except (Stop, KeyboardInterrupt):
            log.info("stopping: flushing pending batches")
        finally:
            monitor.close()
            log.info("%d frames processed", monitor.engine.frames)
    return status
