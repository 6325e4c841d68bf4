"""Log lines to stderr at the level the operator chose. Under systemd (stderr is the
journal stream named by $JOURNAL_STREAM) each line starts with its syslog priority
(`<3>` for errors), so that journalctl -p and alerting on the journal see it."""

from __future__ import annotations

import logging
import os
import sys

#: logging level -> syslog priority (sd-daemon(3))
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def to_journal() -> bool:
    """Whether stderr is the journal stream systemd connected (not a redirection of it)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


def _tag(level: int) -> str:
    return f"<{PRIORITY.get(level, 6)}>"


def prefix(level: int) -> str:
    """The tag for a line of this logging level printed to stderr: `<N>` under systemd, else ""."""
    return _tag(level) if to_journal() else ""


class _Prioritised(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _tag(record.levelno) + super().format(record)


def setup(level: str = "info") -> None:
    """Log records of `level` and above; event lines (logger ixpect.events) bare."""
    formatter = _Prioritised if to_journal() else logging.Formatter
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter("%(levelname)s %(name)s: %(message)s"))
    events = logging.StreamHandler(sys.stderr)
    events.setFormatter(formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    ev_log = logging.getLogger("ixpect.events")
    ev_log.addHandler(events)
    ev_log.propagate = False
