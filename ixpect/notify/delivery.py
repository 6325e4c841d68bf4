"""Delivery: hands every finished window to every channel without ever blocking the
caller, and keeps each unit of work until its destination has taken it.

The caller only enqueues; a router thread splits the window per channel (filter, then
the notifier's messages) and spools each unit; each channel has its own worker thread
and queue, so a dead mail relay delays only mail. A failed send is retried with
exponential backoff and jitter (retry_initial .. retry_max) and moves behind the
channel's other pending units, so that one message a destination keeps refusing
cannot hold up the rest. With a state directory every pending unit is also a JSON
file in `<state_dir>/spool/<channel key>/` (written atomically, deleted once
delivered, re-queued on the next start), so neither a restart nor a crash loses
batches; work older than max_age is dropped and logged with a count."""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ixpect.atomic import write_atomic
from ixpect.events import Batch
from ixpect.notify import Channel, channels

log = logging.getLogger(__name__)


def batch_to_dict(b: Batch) -> dict:
    return {"id": b.id, "type": b.type, "data": b.data, "member": b.member,
            "member_claimed": b.member_claimed, "first": b.first,
            "last": b.last, "count": b.count,
            "sample": base64.b64encode(b.sample).decode() if b.sample is not None else None}


def batch_from_dict(d: dict) -> Batch:
    sample = base64.b64decode(d["sample"]) if d.get("sample") is not None else None
    return Batch(d["type"], d["data"], d["member"], d["first"], d["last"], d["count"], sample, d["id"],
                 d.get("member_claimed"))


def channels_of(event_cfg: dict) -> list[Channel]:
    """The channels of a loaded `event` section; NotifierError if one cannot be built."""
    return channels(event_cfg.get("notifiers") or {}, event_cfg.get("templates_dir"),
                    event_cfg.get("catch_all", "compatible"))


@dataclass(eq=False)
class Job:
    """One unit of delivery: the batches of one message of one channel."""

    batches: list[Batch]
    created: float
    path: Path | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __str__(self) -> str:
        return counted([self])


def counted(jobs: list[Job]) -> str:
    return (f"{sum(len(j.batches) for j in jobs)} batches "
            f"({sum(b.count for j in jobs for b in j.batches)} events)")


class Worker(threading.Thread):
    def __init__(self, channel: Channel, spool: Path | None, delivery: Delivery):
        super().__init__(name=f"notify {channel.name}", daemon=True)
        self.channel = channel
        self.spool = spool
        self.delivery = delivery
        self.jobs: deque[Job] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.deadline = float("inf")

    def put(self, batches: list[Batch], created: float) -> None:
        job = Job(batches, created)
        if self.spool is not None:
            path = self.spool / f"{created:.6f}-{job.id}.json"
            doc = {"channel": self.channel.name, "created": created,
                   "batches": [batch_to_dict(b) for b in batches]}
            try:
                self.spool.mkdir(parents=True, exist_ok=True)
                write_atomic(path, json.dumps(doc).encode())
                job.path = path
            except OSError as exc:  # keep it in memory: a full disk must not lose events
                log.error("%s: cannot spool %s, keeping it in memory: %s", self.channel.name, job, exc)
        self.requeue(job)

    def requeue(self, job: Job) -> None:
        with self.cond:
            self.jobs.append(job)
            self.cond.notify()

    def run(self) -> None:
        attempt = 0
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.jobs or self.closing)
                if self.closing:
                    break
                self._expire()
                if not self.jobs:
                    continue
                job = self.jobs[0]
            if self._send(job):
                attempt = 0
                continue
            with self.cond:  # retry it after the others
                if job in self.jobs:
                    self.jobs.remove(job)
                    self.jobs.append(job)
            delay = min(self.delivery.retry_max, self.delivery.retry_initial * 2 ** attempt)
            delay *= random.uniform(0.5, 1.0)
            attempt += 1
            log.info("%s: retry %d in %.1fs", self.channel.name, attempt, delay)
            with self.cond:
                self.cond.wait_for(lambda: self.closing, timeout=delay)
        self._last_pass()

    def _count(self, what: str, n: int = 1) -> None:
        counts = self.delivery.tally.setdefault(what, {})  # only this worker writes its channel's entries
        counts[self.channel.name] = counts.get(self.channel.name, 0) + n

    def _send(self, job: Job) -> bool:
        try:
            self.channel.notifier.send(job.batches)
        except Exception as exc:  # noqa: BLE001 - any failure of a destination is retried
            self._count("failures")
            log.warning("%s: delivery of %s failed: %s: %s", self.channel.name, job,
                        type(exc).__name__, self.channel.scrub(str(exc)))
            return False
        self._count("deliveries")
        with self.cond:
            self.jobs.remove(job)
        if job.path is not None:
            job.path.unlink(missing_ok=True)
        return True

    def _expire(self) -> None:
        """Drop work older than max_age (called with the lock held)."""
        limit = time.time() - self.delivery.max_age
        old = [j for j in self.jobs if j.created < limit]
        for job in old:
            self.jobs.remove(job)
            if job.path is not None:
                job.path.unlink(missing_ok=True)
        if old:
            self._count("dropped", sum(len(j.batches) for j in old))
            log.error("%s: dropped %s older than max_age %.0fs, undelivered",
                      self.channel.name, counted(old), self.delivery.max_age)

    def _last_pass(self) -> None:
        """On shutdown: try each pending unit once more, until the deadline."""
        with self.cond:
            self._expire()
        for job in list(self.jobs):
            if time.monotonic() >= self.deadline:
                break
            self._send(job)
        left = list(self.jobs)
        if not left:
            return
        kept = [j for j in left if j.path is not None]
        if kept:
            log.warning("%s: %d undelivered units left in the spool for the next start",
                        self.channel.name, len(kept))
        lost = [j for j in left if j.path is None]
        if lost:
            self._count("dropped", sum(len(j.batches) for j in lost))
            log.error("%s: dropped %s at shutdown, undelivered (no state dir)", self.channel.name, counted(lost))


class Delivery:
    """Callable taking a finished window (list of batches); returns at once."""

    def __init__(self, chans: list[Channel], state_dir: str | Path | None = None, *,
                 retry_initial: float = 5.0, retry_max: float = 600.0, max_age: float = 86400.0,
                 tally: dict[str, dict[str, int]] | None = None):
        #: messages delivered, failed attempts and batches dropped per channel name, for the
        #: metrics (a reload hands the same dicts to the new Delivery: they keep counting)
        self.tally = tally if tally is not None else {"deliveries": {}, "failures": {}, "dropped": {}}
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_age = max_age
        self.spool = Path(state_dir) / "spool" if state_dir is not None else None
        self.workers = [Worker(ch, self.spool / ch.key if self.spool else None, self) for ch in chans]
        for counts in self.tally.values():  # every channel has its series from the start, at 0
            for ch in chans:
                counts.setdefault(ch.name, 0)
        if self.spool is not None:
            self._recover()
        self.inbox: queue.Queue[tuple[list[Batch], float] | None] = queue.Queue()
        self.router = threading.Thread(target=self._route, name="notify router", daemon=True)
        self.router.start()
        for w in self.workers:
            w.start()

    @classmethod
    def from_config(cls, event_cfg: dict, state_dir: str | Path | None = None,
                    tally: dict[str, dict[str, int]] | None = None, chans: list[Channel] | None = None) -> Delivery:
        """From the loaded `event` section (defaults filled, durations in seconds), with
        `chans` if they are built already (see `channels_of`)."""
        delivery = event_cfg.get("delivery") or {}
        return cls(chans if chans is not None else channels_of(event_cfg),
                   state_dir, tally=tally, **{k: float(v) for k, v in delivery.items()
                                              if k in ("retry_initial", "retry_max", "max_age")})

    def __call__(self, batches: list[Batch]) -> None:
        self.inbox.put((list(batches), time.time()))

    def _route(self) -> None:
        while (item := self.inbox.get()) is not None:
            batches, created = item
            for w in self.workers:
                try:
                    selected = w.channel.select(batches)
                    for message in w.channel.notifier.messages(selected) if selected else ():
                        w.put(message, created)
                except Exception:  # a bug here must not silence every channel
                    log.exception("%s: cannot queue %d batches", w.channel.name, len(batches))
            self.inbox.task_done()

    def test(self) -> None:
        """Send an IXPECT_TEST batch through the normal routing (SIGUSR1)."""
        now = time.time()
        self([Batch("IXPECT_TEST", {}, None, now, now)])

    def backlog(self) -> dict[str, int]:
        """Units not yet delivered, by channel name."""
        return {w.channel.name: len(w.jobs) for w in self.workers}

    def pending(self) -> int:
        """Windows not yet routed plus units not yet delivered, over all channels."""
        return self.inbox.unfinished_tasks + sum(len(w.jobs) for w in self.workers)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers after one last attempt at everything pending, within
        `timeout` seconds; what is left stays in the spool."""
        deadline = time.monotonic() + timeout
        self.inbox.put(None)  # route (and spool) every window handed over so far
        self.router.join(timeout)
        for w in self.workers:
            with w.cond:
                w.closing = True
                w.deadline = deadline
                w.cond.notify()
        for w in self.workers:
            w.join(max(0.0, deadline - time.monotonic()))

    def _recover(self) -> None:
        """Re-queue what a previous run left in the spool, oldest first."""
        by_key = {w.channel.key: w for w in self.workers}
        for tmp in self.spool.glob("*/.*.tmp"):  # a write cut short: its unit was never queued
            tmp.unlink()
        for path in sorted(self.spool.glob("*/*.json")):
            try:
                doc = json.loads(path.read_bytes())
                batches = [batch_from_dict(d) for d in doc["batches"]]
                created = float(doc["created"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spool file %s is unreadable, moved aside as .bad: %s", path, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            worker = by_key.get(path.parent.name)
            if worker is not None:
                worker.requeue(Job(batches, created, path, path.stem.partition("-")[2]))
            elif created < time.time() - self.max_age:
                path.unlink()
                log.error("spool: dropped %d batches for %s (no longer configured) older than max_age",
                          len(batches), doc.get("channel"))
            else:
                log.warning("spool: %s holds %d batches for %s, which is no longer configured; kept",
                            path, len(batches), doc.get("channel"))
        for w in self.workers:
            if w.jobs:
                log.info("%s: %d units re-queued from the spool", w.channel.name, len(w.jobs))
