"""Learned neighbors across restarts: the dynamic tables of arp_neighbor and
ipv6_neighbor (address -> first MAC, and when it was learned) live in
`<state dir>/neighbors.json`. Saved atomically, only when a table has grown, by
the daemon between chunks of frames and at shutdown (never per frame); loaded at
start, so a restart neither re-announces known neighbors as NEW_DYNAMIC nor
forgets whom a spoofer impersonates. A file that cannot be read is moved aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ixpect.atomic import write_atomic

log = logging.getLogger(__name__)

PROBES = ("arp_neighbor", "ipv6_neighbor")
FILE = "neighbors.json"
VERSION = 1


class NeighborState:
    def __init__(self, state_dir: str | Path, engine):
        self.path = Path(state_dir) / FILE
        self.engine = engine
        self.kept: dict[str, dict] = {}  # tables of probes not enabled at start: written back as they were
        self.saved: tuple | None = None  # what the file holds, as `_key()`

    def _probes(self) -> dict:
        return {name: p for name in PROBES if (p := self.engine.probes.get(name)) is not None}

    def _key(self) -> tuple:
        return tuple((name, id(p), len(p.dynamic)) for name, p in self._probes().items())

    def load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"not a version {VERSION} neighbor state")
            probes = self._probes()
            for name in PROBES:
                table = doc.get(name, {})
                if not isinstance(table, dict):
                    raise ValueError(f"{name}: not an object")
                if name in probes:
                    probes[name].restore(table)
                elif table:
                    self.kept[name] = table
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            log.error("%s: unreadable learned neighbors (%s: %s), moved aside to %s; learning afresh",
                      self.path, type(exc).__name__, exc, bad.name)
            try:
                self.path.replace(bad)
            except OSError as err:
                log.error("%s: cannot move it aside: %s", self.path, err)
            return
        self.saved = self._key()
        log.info("%s: restored %s", self.path,
                 ", ".join(f"{len(p.dynamic)} {name} entries" for name, p in self._probes().items()) or "nothing")

    def adopt(self) -> None:
        """After a reload: a probe enabled now takes the table it had at the last start."""
        for name, p in self._probes().items():
            if name in self.kept:
                try:
                    p.restore(self.kept.pop(name))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.error("%s: %s: unreadable learned neighbors dropped: %s", self.path, name, exc)

    def save(self) -> None:
        """Write the tables if they have changed since the last save."""
        key = self._key()
        if key == self.saved:
            return
        doc = {"version": VERSION, **self.kept, **{name: p.learned() for name, p in self._probes().items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as exc:
            log.error("%s: cannot save learned neighbors: %s", self.path, exc)
            return
        self.saved = key
