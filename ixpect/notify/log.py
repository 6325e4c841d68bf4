"""The `log` notifier: one line per batch on stderr (and so in the journal)."""

from __future__ import annotations

import json
import logging

from ixpect.events import Batch, iso

log = logging.getLogger("ixpect.events")


def describe(batch: Batch) -> str:
    """Human-readable one-line summary of a batch, shared by text-based notifiers."""
    data = " ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in batch.data.items())
    member = f" member=AS{batch.member['asn']} ({batch.member['name']})" if batch.member else ""
    return f"{batch.type} x{batch.count} {iso(batch.first)}..{iso(batch.last)} {data}{member}".rstrip()


class LogNotifier:
    def __init__(self, cfg: dict, channel: dict):
        self.json = cfg.get("format", "text") == "json"

    def send(self, batches: list[Batch]) -> None:
        for b in batches:
            log.warning("%s", json.dumps(b.to_json()) if self.json else describe(b))
