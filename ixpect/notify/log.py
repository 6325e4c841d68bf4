"""The `log` notifier: one line per batch on stderr (and so in the journal)."""

from __future__ import annotations

import json
import logging

from ixpect.events import Batch, iso
from ixpect.notify import Notifier
from ixpect.notify.render import kv, member

log = logging.getLogger("ixpect.events")


def describe(batch: Batch) -> str:
    """Human-readable one-line summary of a batch, shared by text-based notifiers."""
    who = f" member={member(batch.member)}" if batch.member else ""
    if batch.member_claimed:
        who += f" member_claimed={member(batch.member_claimed)}"
    return f"{batch.type} x{batch.count} {iso(batch.first)}..{iso(batch.last)} {kv(batch.data)}{who}".rstrip()


class LogNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates=None):
        self.json = cfg.get("format", "text") == "json"

    def send(self, batches: list[Batch]) -> None:
        for b in batches:
            log.warning("%s", json.dumps(b.to_json()) if self.json else describe(b))
