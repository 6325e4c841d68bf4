"""Validate an export against the vendored Euro-IX schema of the version it declares.

Real exports are messy (wrong types in fields nobody reads are common), so an error only stops the render if
it is in a field we read (or in a container of such fields): a wrong `url` type must not cost an
IXP its monitoring, a `vlan_list` that is an object instead of an array must. `--strict` makes
every error fatal. Checks are structural (no `format`), like Euro-IX's own validate.py; the values
we read are parsed and checked by normalise.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from jsonschema import Draft4Validator

from ixpect.ixf import IxfError, Problems

VERSIONS = ("0.4", "0.5", "0.6", "0.7", "1.0")

#: every field normalise reads, as paths with "[]" for any list index
_READ = [tuple(p.split(".")) for p in (
    "version",
    "ixp_list.[].ixp_id", "ixp_list.[].shortname", "ixp_list.[].vlan.[].id", "ixp_list.[].vlan.[].name",
    "ixp_list.[].vlan.[].ipv4.prefix", "ixp_list.[].vlan.[].ipv4.mask_length",
    "ixp_list.[].vlan.[].ipv6.prefix", "ixp_list.[].vlan.[].ipv6.mask_length",
    "member_list.[].asnum", "member_list.[].name",
    "member_list.[].connection_list.[].ixp_id",
    "member_list.[].connection_list.[].vlan_list.[].vlan_id",
    "member_list.[].connection_list.[].vlan_list.[].mac_address",
    "member_list.[].connection_list.[].vlan_list.[].ipv4.address",
    "member_list.[].connection_list.[].vlan_list.[].ipv4.mac_addresses.[]",
    "member_list.[].connection_list.[].vlan_list.[].ipv6.address",
    "member_list.[].connection_list.[].vlan_list.[].ipv6.mac_addresses.[]",
)]


@cache
def validator(version: str) -> Draft4Validator:
    ref = resources.files("ixpect") / "schema" / "ixf" / f"ixp-member-list-{version}.schema.json"
    return Draft4Validator(json.loads(ref.read_text()))


def check(doc: dict, problems: Problems, strict: bool = False) -> str:
    """Validate; return the schema version used. Raise IxfError listing the fatal errors."""
    declared = doc.get("version")
    if declared in VERSIONS:
        version, errors = declared, list(validator(declared).iter_errors(doc))
    else:
        # best effort: the bundled schema this document fits best (the newest among equals)
        version, errors = min(((v, list(validator(v).iter_errors(doc))) for v in reversed(VERSIONS)),
                              key=lambda ve: len(ve[1]))
        problems.add("unknown schema version", f"{declared!r} is not one of {', '.join(VERSIONS)}; "
                     f"validated against {version}, the closest fit")
    fatal = []
    for e in errors:
        where = _where(doc, e)
        if strict or _is_read(e):
            fatal.append(f"{where}: {_short(e.message)}")
        else:
            value = "" if e.validator == "required" else f": {_short(repr(e.instance), 60)}"
            problems.add(f"schema {version}: {_rule(e)} (field not used)", where + value)
    if fatal:
        shown = fatal[:20] + ([f"... and {len(fatal) - 20} more"] if len(fatal) > 20 else [])
        raise IxfError(f"export does not match IX-F schema {version} in {len(fatal)} place(s):\n  "
                       + "\n  ".join(shown))
    return version


def _rule(e) -> str:
    """The violated rule without the offending value, so that equal defects group together."""
    path = ".".join("[]" if isinstance(p, int) else str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "required":
        return f"{path}: {e.message}"
    return f"{path}: {e.validator} {_short(json.dumps(e.validator_value), 60)}"


def _is_read(e) -> bool:
    path = tuple("[]" if isinstance(p, int) else str(p) for p in e.absolute_path)
    if e.validator == "required":
        missing = [p for p in e.validator_value if isinstance(e.instance, dict) and p not in e.instance]
        return any(_is_read_path(path + (m,)) for m in missing)
    if e.validator == "additionalProperties":
        return False
    return _is_read_path(path)


def _is_read_path(path: tuple) -> bool:
    """A read field, or a container holding one."""
    return any(r[:len(path)] == path for r in _READ)


def _where(doc: dict, e) -> str:
    """JSON path of the error, with the member named when it is inside member_list."""
    p = list(e.absolute_path)
    text = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in p).lstrip(".") or "(top level)"
    if len(p) >= 2 and p[0] == "member_list" and isinstance(p[1], int):
        m = doc["member_list"][p[1]]
        if isinstance(m, dict):
            return f"{text} (member AS{m.get('asnum', '?')} {m.get('name', '')})".replace(" )", ")")
    return text


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
