"""A JSON schema (draft 2020-12) compiled into one predicate: does a document conform?

Loading a config asks that question first, and only when the answer is no does
jsonschema walk the document again to say why (and the daemon does not import it
otherwise: its import alone costs more than checking a config of a thousand members).
The predicate is built from the schema itself, keyword by keyword, with jsonschema's
semantics (booleans are neither integers nor numbers, 1 == 1.0, `pattern` searches,
`format` asserts what the given checkers check and nothing else);
tests/test_config.py checks that it accepts exactly what jsonschema accepts. A keyword
it does not implement is an error when the schema is compiled, never a keyword ignored.

Public API:
    compile_schema(schema, formats) -> Callable[[object], bool]
        `formats` maps a format name to a predicate on the value; formats it does
        not name are not asserted (as jsonschema does without a checker for them)
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[object], bool]

#: keywords that say nothing about validity
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
                         "deprecated", "readOnly", "writeOnly"})


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or v.is_integer()),
}


def _key(value):
    """A hashable stand-in for a JSON value, equal exactly when jsonschema's `equal`
    holds: True is not 1, 1 is 1.0, lists in order, mappings by their items."""
    if isinstance(value, bool) or value is None:
        return (type(value), value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(map(_key, value)))
    if isinstance(value, dict):
        return ("dict", frozenset((k, _key(v)) for k, v in value.items()))
    return ("value", value)  # str, int, float (1 == 1.0, and their hashes agree)


def _properties(props: dict[str, Check]) -> Check:
    def check(v) -> bool:
        if isinstance(v, dict):
            for key, value in v.items():
                prop = props.get(key)
                if prop is not None and not prop(value):
                    return False
        return True

    return check


def _unique(items: list) -> bool:
    keys = [_key(v) for v in items]
    return len(set(keys)) == len(keys)


def compile_schema(schema: dict | bool, formats: dict[str, Check]) -> Check:
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    compiled: dict[str, Check] = {}

    def ref(target: str) -> Check:
        name = target.removeprefix("#/$defs/")
        if name == target or name not in defs:
            raise ValueError(f"$ref {target!r} is not supported: only local #/$defs/ references are")
        if name not in compiled:
            compiled[name] = lambda v: compiled[name](v)  # a reference to itself, while it is being built
            compiled[name] = build(defs[name])
        return compiled[name]

    def build(sub: dict | bool) -> Check:
        if sub is True or sub == {}:
            return lambda v: True
        if sub is False:
            return lambda v: False
        checks = [_keyword(word, rule, sub, build, ref, formats) for word, rule in sub.items()
                  if word not in ANNOTATIONS]
        return _all([c for c in checks if c is not None])

    return build(schema)


def _all(checks: list[Check]) -> Check:
    """The conjunction of `checks`, as a chain of calls (a subschema has a few keywords)."""
    if not checks:
        return lambda v: True
    first, rest = checks[0], _all(checks[1:]) if len(checks) > 1 else None
    return first if rest is None else lambda v: first(v) and rest(v)


def _keyword(word: str, rule, sub: dict, build, ref, formats: dict[str, Check]) -> Check | None:
    """The check of one keyword of the subschema `sub`, or None if it asserts nothing here."""
    if word == "$ref":
        return ref(rule)
    if word == "type":
        kinds = [TYPES[rule]] if isinstance(rule, str) else [TYPES[t] for t in rule]
        return kinds[0] if len(kinds) == 1 else lambda v: any(kind(v) for kind in kinds)
    if word == "enum" or word == "const":
        allowed = {_key(e) for e in (rule if word == "enum" else [rule])}
        return lambda v: _key(v) in allowed
    if word == "properties":
        return _properties({k: build(s) for k, s in rule.items()})
    if word == "additionalProperties":
        if "patternProperties" in sub:
            raise ValueError("additionalProperties beside patternProperties is not supported")
        known = frozenset(sub.get("properties", ()))
        if rule is False:
            return lambda v: not isinstance(v, dict) or v.keys() <= known
        check = build(rule)
        return lambda v: not isinstance(v, dict) or all(check(v[k]) for k in v.keys() - known)
    if word == "required":
        keys = frozenset(rule)
        return lambda v: not isinstance(v, dict) or keys <= v.keys()
    if word == "dependentRequired":
        return lambda v: not isinstance(v, dict) or all(k in v for key, ks in rule.items() if key in v for k in ks)
    if word == "propertyNames":
        check = build(rule)
        return lambda v: not isinstance(v, dict) or all(check(k) for k in v)
    if word == "items":
        check = build(rule)
        return lambda v: not isinstance(v, list) or all(map(check, v))
    if word == "minItems":
        return lambda v: not isinstance(v, list) or len(v) >= rule
    if word == "uniqueItems":
        return (lambda v: not isinstance(v, list) or _unique(v)) if rule else None
    if word == "minLength":
        return lambda v: not isinstance(v, str) or len(v) >= rule
    if word == "pattern":
        search = re.compile(rule).search
        return lambda v: not isinstance(v, str) or search(v) is not None
    if word == "minimum":
        return lambda v: not _is_number(v) or not v < rule  # NaN passes, as in jsonschema
    if word == "maximum":
        return lambda v: not _is_number(v) or not v > rule
    if word == "format":
        return formats.get(rule)
    if word == "not":
        check = build(rule)
        return lambda v: not check(v)
    if word in ("anyOf", "allOf"):
        checks, combine = [build(s) for s in rule], any if word == "anyOf" else all
        return lambda v: combine(check(v) for check in checks)
    raise ValueError(f"JSON schema keyword {word!r} is not supported")
