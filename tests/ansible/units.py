"""Read systemd unit files as data, so the role's units can be compared with the NixOS
module's and with nix/hardening.json directive by directive."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARDENING = json.loads((REPO / "nix" / "hardening.json").read_text())
DAEMONS = ("ixpect-capture", "ixpect-notify", "ixpect-ixf")


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> directive -> values in file order (repeated lines add values)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def systemd_value(value) -> list[str]:
    """A hardening.json value as the lines it must become."""
    items = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in items]


def expected_hardening(unit: str) -> dict[str, list[str]]:
    """Every hardening directive the unit must carry, from nix/hardening.json alone."""
    merged = dict(HARDENING["sandbox"]) if unit in DAEMONS else {}
    merged |= HARDENING[unit]
    return {key: systemd_value(v) for key, v in merged.items()}


def argv(line: str) -> list[str]:
    """An Exec*= value as the argv systemd runs (quoting removed)."""
    return shlex.split(line)
