"""The compiled schema check (ixpect.schemacheck), which decides whether a config is
valid on every load, accepts exactly what jsonschema accepts: on every subschema of the
config schema with values made for it, and on whole configs mutated at random."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from ixpect import config, schemacheck

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "examples" / "ixpect.conf.yaml", REPO / "examples" / "demo.conf.yaml",
           REPO / "tests" / "data" / "ddix.conf.yaml"]

#: values of every JSON type, and strings that pass or just miss each format
VALUES = [None, True, False, 0, 1, -1, 1.0, 1.5, -0.5, 59, 65535, 65536, 999999999, 1000000000, 10**30,
          float("nan"), float("inf"), "", "x", "yes", "15s", "0s", "1hour 12min 5s", "-1s", "0x88cc", "0x0800",
          "0x05dc", "88cc", 0x88CC, 1500, "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff",
          "192.0.2.1", "192.0.2.0/24", "192.0.2.1/24", "300.0.0.1", "2001:db8::1", "2001:db8::/32",
          "2001:db8::1/32", "fe80::1%eth0", "https://example.net/hook", "http://", "ftp://example.net",
          "noc@example.net", "NOC <noc@example.net>", "noc", "!room:example.net", "room:example.net",
          "{{ batches }}", "{{ batches", "ARP_BOGON_SOURCE", "arp_bogon_source", "NO_SUCH_EVENT", "default",
          "alertname", "team_1", "1team", "[::1]:9100", "127.0.0.1:9100", "127.0.0.1", "relative/path", "/abs",
          [], [1], ["x"], ["x", "x"], [1, True], [1, 1.0], [0, False], ["ARP_BOGON_SOURCE"],
          ["ARP_BOGON_SOURCE", "ARP_BOGON_SOURCE"], [{"a": 1}, {"a": 1.0}], [{"a": 1}, {"a": True}],
          {}, {"x": 1}, {"secs": 1}, {"secs": 1, "nanos": 5}, {"secs": -1}, {"secs": 1.0}, {"secs": True},
          {"nanos": 1}, {"file": "/etc/ixpect/secret"}, {"ip": "192.0.2.1", "mac": "aa:bb:cc:dd:ee:ff"},
          {"ip": "2001:db8::1", "mac": "aa:bb:cc:dd:ee:ff"}, {"ip": "192.0.2.1"}, {1: "x"}]


def formats() -> dict:
    return {name: lambda value, name=name: config._format_passes(name, value) for name in config._CANONICAL}


def reference(sub) -> Draft202012Validator:
    return Draft202012Validator(sub, format_checker=config._validator().format_checker)


def subschemas(sub):
    """Every subschema of `sub`, `sub` included."""
    if not isinstance(sub, dict):
        return
    yield sub
    for word, rule in sub.items():
        if word in ("properties", "$defs"):
            for s in rule.values():
                yield from subschemas(s)
        elif word in ("anyOf", "allOf"):
            for s in rule:
                yield from subschemas(s)
        elif word in ("items", "not", "propertyNames", "additionalProperties"):
            yield from subschemas(rule)


def written(sub) -> list:
    """The values the schema itself names for `sub`, and each with a part missing,
    added or replaced."""
    sub = config._deref(sub)
    found = [*sub.get("examples", []), *sub.get("enum", []), *([sub["default"]] if "default" in sub else [])]
    for word in ("required", "dependentRequired"):
        keys = sub.get(word, [])
        found += [{k: "x" for k in keys}, {k: 1 for k in keys}]
    out = list(found)
    for value in found:
        if isinstance(value, dict):
            out += [{k: v for k, v in value.items() if k != key} for key in value]
            out += [{**value, "unknown": 1}] + [{**value, key: other} for key in value for other in VALUES[::7]]
        if isinstance(value, list) and value:
            out += [value[:1] * 2, value + [1], value[1:]]
    return out


def pool() -> list:
    everything = list(VALUES)
    for sub in subschemas(config.schema()):
        everything += [v for v in written(sub) if not isinstance(v, (dict, list))]
    return everything


def test_every_subschema_accepts_what_jsonschema_accepts():
    schema = config.schema()
    values, outcomes = pool(), set()
    for sub in subschemas(schema):
        whole = {**sub, "$defs": schema["$defs"]}
        fast, ref = schemacheck.compile_schema(whole, formats()), reference(whole)
        for value in values + written(sub):
            expected = ref.is_valid(value)
            assert fast(value) == expected, (sub, value)
            outcomes.add(expected)
    assert outcomes == {True, False}


#: each keyword alone, where the config schema's own use of it cannot show an edge
#: (NaN against a minimum, True against 1, 1 against 1.0)
KEYWORDS = [{"type": "integer"}, {"type": "number"}, {"type": ["string", "null"]}, {"type": "boolean"},
            {"minimum": 1}, {"maximum": 1}, {"minLength": 2}, {"minItems": 1}, {"uniqueItems": True},
            {"uniqueItems": False}, {"enum": [1, "x", None, [1, {"a": 1}]]}, {"enum": [True]}, {"const": 0},
            {"pattern": "^[a-z]+$"}, {"pattern": "x"}, {"required": ["secs"]},
            {"dependentRequired": {"secs": ["nanos"]}},
            {"propertyNames": {"pattern": "^s"}}, {"properties": {"secs": {"type": "integer"}}},
            {"properties": {"secs": True}, "additionalProperties": False}, {"additionalProperties": {"type": "string"}},
            {"items": {"type": "integer"}}, {"not": {"type": "null"}}, {"anyOf": [{"type": "string"}, {"minimum": 2}]},
            {"allOf": [{"type": "number"}, {"maximum": 2}]}, {"format": "mac"}, {"format": "not-a-format"}, True, False,
            {"description": "nothing else"}]


@pytest.mark.parametrize("sub", KEYWORDS, ids=str)
def test_each_keyword_agrees_with_jsonschema_on_edge_values(sub):
    fast, ref = schemacheck.compile_schema(sub, formats()), reference(sub)
    for value in VALUES + [float("nan"), [float("nan")] * 2, [True, 1], [False, 0.0], [[1], [1.0]], [{"a": True}]]:
        assert fast(value) == ref.is_valid(value), value


def paths(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, path + (i,))


def mutated(doc, rng: random.Random, values: list):
    """`doc` with one to three random changes: a value replaced (by one of `values` or
    another part of the document), a key removed or added, a list item repeated."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        everywhere = list(paths(doc))
        path = rng.choice(everywhere)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if not path:
            continue
        key, how = path[-1], rng.randrange(5)
        if how == 0 and isinstance(parent, dict):
            del parent[key]
        elif how == 1 and isinstance(parent[key], dict):
            parent[key][rng.choice(["enable", "unknown", "events", "channels", "file", "secs"])] = rng.choice(values)
        elif how == 2 and isinstance(parent[key], list) and parent[key]:
            parent[key].append(copy.deepcopy(rng.choice(parent[key])))
        elif how == 3:
            other = doc
            for part in rng.choice(everywhere):
                other = other[part]
            parent[key] = copy.deepcopy(other)
        else:
            parent[key] = copy.deepcopy(rng.choice(values))
    return doc


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_mutated_configs_are_accepted_exactly_when_jsonschema_accepts_them(path):
    doc = yaml.safe_load(path.read_text())
    ref, values, rng = reference(config.schema()), pool(), random.Random(path.name)
    assert config._conforms()(doc) and ref.is_valid(doc)
    outcomes = []
    for _ in range(1500):
        changed = mutated(doc, rng, values)
        expected = ref.is_valid(changed)
        assert config._conforms()(changed) == expected, changed
        outcomes.append(expected)
    assert min(outcomes.count(True), outcomes.count(False)) >= 30  # both kinds, in numbers


@pytest.mark.parametrize("sub", [{"maxItems": 2}, {"if": {"type": "string"}}, {"$ref": "https://example.net/s"},
                                 {"properties": {"a": {"prefixItems": []}}}])
def test_a_keyword_it_does_not_implement_is_an_error_not_ignored(sub):
    with pytest.raises(ValueError, match="not supported"):
        schemacheck.compile_schema(sub, {})


def test_a_config_is_checked_without_importing_jsonschema():
    """jsonschema is for explaining errors: a valid config must not need it."""
    code = ("import sys; from ixpect import config; config.load(sys.argv[1], files=False);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'referencing')))")
    out = subprocess.run([sys.executable, "-c", code, str(CONFIGS[0])], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"
