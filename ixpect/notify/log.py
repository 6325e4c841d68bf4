"""The `log` notifier: one line per batch on stderr (and so in the journal); and the
text forms of event data and members that the templates use too."""

from __future__ import annotations

import json
import logging

from ixpect.events import Batch, iso
from ixpect.notify import Notifier

log = logging.getLogger("ixpect.events")


def kv(data: dict) -> str:
    """Event data as `key=value` pairs; list values comma-joined."""
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items())


def member(m: dict | None) -> str:
    """`AS64500 (Name)`; a MAC or address several members share names each of them."""
    if not m:
        return ""
    return " / ".join(f"AS{o['asn']} ({o['name']})" for o in (m, *m.get("shared_with", ())))


def describe(batch: Batch) -> str:
    """Human-readable one-line summary of a batch, shared by text-based notifiers."""
    who = f" member={member(batch.member)}" if batch.member else ""
    if batch.member_claimed:
        who += f" member_claimed={member(batch.member_claimed)}"
    return f"{batch.type} x{batch.count} {iso(batch.first)}..{iso(batch.last)} {kv(batch.data)}{who}".rstrip()


class LogNotifier(Notifier):
    templated = False

    def __init__(self, cfg: dict, channel: dict, templates=None):
        self.json = cfg.get("format", "text") == "json"

    def send(self, batches: list[Batch]) -> None:
        for b in batches:
            log.warning("%s", json.dumps(b.to_json()) if self.json else describe(b))
