"""Durations written the way Rust's `humantime` crate reads them ("15s", "1min",
"1hour 12min 5s"), so that DD-IX IXpect config files keep their meaning here.

A duration is one or more `<integer><unit>` parts, optionally separated by
whitespace; the parts add up. Units are case-sensitive (`m` is a minute, `M` a month).
"""

from __future__ import annotations

import re

_NS = {
    "nsec": 1, "ns": 1,
    "usec": 10**3, "us": 10**3,
    "msec": 10**6, "ms": 10**6,
    "seconds": 10**9, "second": 10**9, "sec": 10**9, "s": 10**9,
    "minutes": 60 * 10**9, "minute": 60 * 10**9, "min": 60 * 10**9, "m": 60 * 10**9,
    "hours": 3600 * 10**9, "hour": 3600 * 10**9, "hr": 3600 * 10**9, "h": 3600 * 10**9,
    "days": 86400 * 10**9, "day": 86400 * 10**9, "d": 86400 * 10**9,
    "weeks": 7 * 86400 * 10**9, "week": 7 * 86400 * 10**9, "w": 7 * 86400 * 10**9,
    # humantime's month and year: 30.44 and 365.25 days
    "months": 2_630_016 * 10**9, "month": 2_630_016 * 10**9, "M": 2_630_016 * 10**9,
    "years": 31_557_600 * 10**9, "year": 31_557_600 * 10**9, "y": 31_557_600 * 10**9,
}

_PART = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*")
_UNIT_HELP = "ns, us, ms, s, min, h, d, w, M (month), y (and long forms such as sec, hours, days)"


def parse(text: str) -> float:
    """Return the duration `text` in seconds; ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string such as '15s', got {text!r}")
    if not text.strip():
        raise ValueError("empty duration: write a number with a unit, such as '15s' or '1min'")
    total, pos = 0, 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration: expected a number at {text[pos:].strip()!r}")
        number, unit = m.groups()
        if not unit:
            if text[m.end():m.end() + 1] in (".", ","):
                raise ValueError(f"{text!r} is not a duration: fractions are not supported, "
                                 "combine units instead (e.g. '1h 30min')")
            raise ValueError(f"{text!r} is not a duration: time unit needed after {number}, "
                             f"e.g. '{number}s' or '{number}min'")
        if unit not in _NS:
            raise ValueError(f"{text!r} is not a duration: unknown time unit {unit!r}; use {_UNIT_HELP}")
        total += int(number) * _NS[unit]
        pos = m.end()
    return total / 1e9
