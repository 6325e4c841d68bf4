"""Notifiers: every channel of every configured notifier gets the batches its
`events` filter admits. An empty or missing list (a catch-all channel) admits
everything, except, unless `event.catch_all: all`, the event types in UNASKED. A config
without any notifier gets the log notifier, so that no event is thrown away unseen.

A notifier class is built as `Class(notifier_cfg, channel_cfg, templates)` and offers
`send(batches)` (raise on failure: delivery retries), `messages(batches)` (how a
window is split into units that are delivered, and retried, independently) and
`secrets` (strings that must never reach a log line)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import sys
from itertools import groupby
from pathlib import Path
from urllib.parse import urlsplit


from ixpect.events import Batch

# not `log`: importing the submodule ixpect.notify.log rebinds that name in this package
logger = logging.getLogger(__name__)

#: notifier key under `event.notifiers` -> "module:Class"
KINDS = {
    "log": "ixpect.notify.log:LogNotifier",
    "email": "ixpect.notify.email:EmailNotifier",
    "http": "ixpect.notify.http:HttpNotifier",
    "matrix": "ixpect.notify.matrix:MatrixNotifier",
    "slack": "ixpect.notify.slack:SlackNotifier",
    "alertmanager": "ixpect.notify.alertmanager:AlertmanagerNotifier",
}
#: what `check-config`, `ixf render` and the daemon say of a config without notifiers
NO_NOTIFIER = "no notifier configured: events go to the log notifier (stderr, the journal under systemd)"


#: Event types DD-IX's IXpect does not know that are raised without the config asking
#: for them (the additional probes raise nothing unless enabled): a catch-all channel
#: of an upstream config must not start receiving them.
UNASKED = frozenset({"ARP_SENDER_MISMATCH", "IXPECT_BAD_PACKET"})


def scrub(text: str, secrets) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


class _Scrubber(logging.Filter):
    """Keeps secrets out of the HTTP library's own debug lines (it logs request paths,
    which for webhooks are credentials)."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_scrubber = _Scrubber()
logging.getLogger("urllib3.connectionpool").addFilter(_scrubber)


class Notifier:
    secrets: tuple[str, ...] = ()
    #: whether it renders templates: jinja2 is loaded only for a notifier that does
    templated = True

    def messages(self, batches: list[Batch]) -> list[list[Batch]]:
        return [batches]

    def send(self, batches: list[Batch]) -> None:
        raise NotImplementedError


def by_type(batches: list[Batch]) -> list[list[Batch]]:
    """One message per event type (mail, chat): the subject names the type."""
    ordered = sorted(batches, key=lambda b: b.type)
    return [list(group) for _, group in groupby(ordered, key=lambda b: b.type)]


def secret(cfg: dict, key: str) -> str | None:
    """`key` itself or the stripped content of the file named by `key_file`."""
    if cfg.get(key) is not None:
        return cfg[key]
    path = cfg.get(f"{key}_file")
    return Path(path).read_text().strip() if path else None


def url_secrets(url: str) -> tuple[str, ...]:
    """A URL and the parts of it an HTTP library may quote on its own in an error
    (path and query, password): webhook URLs carry their credential there."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return tuple(s for s in (url, tail if len(tail) > 1 else "", parts.query, parts.password) if s)


class Channel:
    """One destination with its event filter.

    `key` names the destination, not its position in the config, so that spooled
    batches go only where they were meant to go after the config changed."""

    def __init__(self, name: str, events: list[str] | None, notifier: Notifier, key: str | None = None,
                 catch_all: str = "compatible"):
        self.name = name
        self.events = frozenset(events or ())
        self.unasked = UNASKED if catch_all == "compatible" else frozenset()
        self.notifier = notifier
        self.key = key or name

    def select(self, batches: list[Batch]) -> list[Batch]:
        if not self.events:
            return [b for b in batches if b.type not in self.unasked]
        return [b for b in batches if b.type in self.events]

    def scrub(self, text: str) -> str:
        return scrub(text, self.notifier.secrets)


def _key(kind: str, channel_cfg: dict) -> str:
    dest = {k: v for k, v in channel_cfg.items() if k != "events"}
    digest = hashlib.sha256(json.dumps([kind, dest], sort_keys=True, default=str).encode())
    return f"{kind}-{digest.hexdigest()[:16]}"


class NotifierError(Exception):
    """Notifiers cannot be built: files they read (secret, template) are unusable.
    `problems` are (config key, reason) pairs, the key e.g. ("event", "notifiers", "email"),
    all of them, so that one check shows every file to fix."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        super().__init__("; ".join(f"{'.'.join(map(str, path))}: {reason}" for path, reason in problems))
        self.problems = problems


def _key_of(cfg, value, path: tuple = ()) -> tuple | None:
    """The path of the key holding `value` in a notifier's config (the file that failed)."""
    if value is not None and cfg == value:
        return path
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg) if isinstance(cfg, list) else ()
    return next((p for k, v in items if (p := _key_of(v, value, (*path, k))) is not None), None)


def _unusable_file() -> tuple[type[Exception], ...]:
    """What building a notifier raises for a file it cannot use: jinja2's errors too
    once a notifier has loaded jinja2 (only then can it raise them)."""
    jinja2 = sys.modules.get("jinja2")
    return (OSError, UnicodeDecodeError, *((jinja2.TemplateError,) if jinja2 else ()))


def channels(notifiers: dict, templates_dir: str | None = None, catch_all: str = "compatible") -> list[Channel]:
    """Instantiate a Channel per configured channel of each notifier in `event.notifiers`;
    NotifierError when files they need cannot be read."""
    if not notifiers:
        logger.warning("%s", NO_NOTIFIER)
        notifiers = {"log": {}}
    templates = None
    out: list[Channel] = []
    problems: list[tuple[tuple, str]] = []
    for kind, cfg in notifiers.items():
        module, _, cls = KINDS[kind].partition(":")
        notifier_cls = getattr(importlib.import_module(module), cls)
        if notifier_cls.templated and templates is None:
            from ixpect.notify.render import Templates

            templates = Templates(templates_dir)
        for i, ch in enumerate(cfg.get("channels") or [{}]):
            try:
                notifier = notifier_cls(cfg, ch, templates)
            except _unusable_file() as exc:
                from ixpect.notify.render import failure

                where = _key_of(cfg, getattr(exc, "filename", None)) or (
                    ("channels", i) if cfg.get("channels") else ())
                problems.append((("event", "notifiers", kind, *where),
                                 failure(exc, getattr(exc, "filename", None) or kind)))
                continue
            _scrubber.secrets.update(notifier.secrets)
            key = _key(kind, ch)
            taken = sum(c.key.startswith(key) for c in out)  # same destination twice
            out.append(Channel(f"{kind}[{i}]", ch.get("events"), notifier, f"{key}-{taken}" if taken else key,
                               catch_all))
    if problems:
        raise NotifierError(problems)
    return out
