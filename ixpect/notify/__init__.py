"""Notifiers: every channel of every configured notifier gets the batches its
`events` filter admits (an empty or missing list admits everything)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from ixpect.events import Batch

log = logging.getLogger(__name__)

#: notifier key under `event.notifiers` -> "module:Class"
KINDS = {
    "log": "ixpect.notify.log:LogNotifier",
}


class Channel:
    """One destination with its event filter."""

    def __init__(self, name: str, events: list[str] | None, send: Callable[[list[Batch]], None]):
        self.name = name
        self.events = frozenset(events or ())
        self.send = send

    def select(self, batches: list[Batch]) -> list[Batch]:
        if not self.events:
            return batches
        return [b for b in batches if b.type in self.events]


def channels(notifiers: dict) -> list[Channel]:
    """Instantiate a Channel per configured channel of each notifier in `event.notifiers`."""
    out = []
    for kind, cfg in notifiers.items():
        module, _, cls = KINDS[kind].partition(":")
        notifier_cls = getattr(importlib.import_module(module), cls)
        for i, ch in enumerate(cfg.get("channels") or [{}]):
            notifier = notifier_cls(cfg, ch)
            out.append(Channel(f"{kind}[{i}]", ch.get("events"), notifier.send))
    return out


class Dispatcher:
    """Hands each finished window to every channel; one failing channel never
    keeps the others from their batches."""

    def __init__(self, chans: list[Channel]):
        self.channels = chans

    def __call__(self, batches: list[Batch]) -> None:
        for ch in self.channels:
            selected = ch.select(batches)
            if not selected:
                continue
            try:
                ch.send(selected)
            except Exception as exc:  # noqa: BLE001 - a notifier must not stop the monitor
                log.error("notifier %s failed: %s", ch.name, exc)
