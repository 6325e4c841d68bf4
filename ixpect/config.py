"""The config file: parse, validate against schema/ixpect.conf.schema.json, complete.

Public API:
    load(path, files=True) -> dict  the config of a file, ready to use; with `files`
                                    the secret files and member table it names are
                                    checked by building what uses them (the
                                    templates it names are always checked)
    load_with_members(path) -> (dict, MemberTable | None)
                                    load(path) and the member table it built
    load_text(text, name="<config>", base_dir=None, files=False) -> dict
                                    the same for YAML text (e.g. a rendered config)
    parse_yaml(text, name) -> (doc, lines)
                                    any YAML document, bounded in depth and alias
                                    expansion (a config, or a base config to render)
    validate(doc) -> list[str]      problems of an already parsed document, as
                                    "path.to.key: message" lines; [] when valid
    ConfigError                     raised by load/load_text; .errors is the list of
                                    "NAME:LINE: path.to.key: message" lines, sorted by line
    check_config_main(args) -> int  `ixpect check-config FILE`
    schema() -> dict                the JSON schema (cached; do not modify)

A loaded config has every schema default filled in (the schema is the only place
defaults live), durations as float seconds, EtherTypes as integers, MACs in lower
case, addresses and prefixes in canonical text form, relative paths joined to the
config file's directory, and DD-IX spellings rewritten to ours: `pass: {file: P}`
becomes `pass_file: P` (likewise for every `X` beside an `X_file` key), upper-case
enum values become lower case, `log: {events: [...]}` becomes a log notifier with
one channel, and a notifier with `enable: false` is left out (`enable` is
consumed: every notifier in `event.notifiers` is one to use).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import ipaddress
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ixpect import humantime, schemacheck
from ixpect.addresses import canonical_packed
from ixpect.members import MemberTable
from ixpect.notify import NO_NOTIFIER

SCHEMA_PATH = Path(__file__).parent / "schema" / "ixpect.conf.schema.json"


class ConfigError(Exception):
    """The config is unusable; `errors` says why, one line per problem."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# -- formats: each checker returns the canonical value or raises ValueError --------

_CANONICAL: dict[str, tuple[Callable, tuple[type, ...]]] = {}  # format -> (checker, value types)


def _format(name: str, *types: type):
    """Register a checker for `format: name` on values of `types` (other types are
    left to the schema's `type` keyword, so a value gets one error, not two). A config
    names the same addresses and MACs many times, and validation and completion both
    ask, so the canonical values of strings and numbers are cached."""

    def register(func):
        cached = functools.lru_cache(maxsize=1 << 16, typed=True)(func)
        _CANONICAL[name] = (lambda value: cached(value) if isinstance(value, (str, int)) else func(value), types)
        return func

    return register


def _format_valid(name: str, value) -> bool:
    """Whether `value` passes `format: name`; ValueError says why it does not."""
    func, types = _CANONICAL[name]
    return not isinstance(value, types) or isinstance(value, bool) or func(value) is not None


def _format_passes(name: str, value) -> bool:
    try:
        return _format_valid(name, value)
    except ValueError:
        return False


@_format("humantime", str, dict)
def _duration(value: str | dict) -> float | dict:
    """Seconds of a humantime string, or of DD-IX's serialized form `{secs, nanos}`."""
    if isinstance(value, dict):
        secs, nanos = value.get("secs"), value.get("nanos", 0)
        if type(secs) is not int or type(nanos) is not int or min(secs, nanos) < 0:
            return value  # the schema says what is wrong with it
        seconds = secs + nanos / 1e9
    else:
        seconds = humantime.parse(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is zero: a duration here must be positive")
    return seconds


@_format("template", str)
def _template(value: str) -> str:
    import jinja2  # only a config with a template pays for it

    try:
        jinja2.Environment().parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"{value!r} is not a jinja2 template: {exc.message}") from None
    return value


@_format("mac", str)
def _mac(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", value):
        raise ValueError(f"{value!r} is not a MAC address: write six hex pairs as aa:bb:cc:dd:ee:ff")
    return value.lower()


def _other_family(value: str, family: str, what: str) -> None:
    """Raise a plain-spoken error if `value` is a `what` of the other IP version."""
    try:
        version = ipaddress.ip_network(value, strict=False).version
    except ValueError:
        return
    if f"IPv{version}" != family:
        raise ValueError(f"{value!r} is an IPv{version} {what}, not an {family} one")


def _address(cls, family: str):
    def canonical(value: str) -> str:
        if canonical_packed(value, 4 if family == "IPv4" else 6) is not None:  # as rendered configs have them
            return value
        try:
            if "%" in value:
                raise ValueError("zone indices are not allowed")
            return str(cls(value))
        except ValueError as exc:
            _other_family(value, family, "address")
            raise ValueError(f"{value!r} is not an {family} address ({exc})") from None

    return canonical


def _prefix(cls, family: str, host_length: int):
    def canonical(value: str) -> str:
        if "/" not in value:
            raise ValueError(f"{value!r} is not an {family} prefix: the prefix length is missing "
                             f"(a single address is {value}/{host_length})")
        try:
            return str(cls(value))
        except ValueError as exc:
            try:
                network = cls(value, strict=False)
            except ValueError:
                _other_family(value, family, "prefix")
                raise ValueError(f"{value!r} is not an {family} prefix ({exc})") from None
            raise ValueError(f"{value!r} has host bits set: the prefix is {network}") from None

    return canonical


_format("ipv4", str)(_address(ipaddress.IPv4Address, "IPv4"))
_format("ipv6", str)(_address(ipaddress.IPv6Address, "IPv6"))
_format("ipv4-prefix", str)(_prefix(ipaddress.IPv4Network, "IPv4", 32))
_format("ipv6-prefix", str)(_prefix(ipaddress.IPv6Network, "IPv6", 128))


@_format("ether-type", int, str)
def _ether_type(value: int | str) -> int:
    if isinstance(value, str):
        if not re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            raise ValueError(f"{value!r} is not an EtherType: write an integer or a hex string such as '0x88cc'")
        number, shown = int(value, 16), repr(value)
    else:
        number, shown = value, f"{value} ({value:#06x})" if value >= 0 else str(value)
    if 0 <= number < 0x0600:
        raise ValueError(f"{shown} is an 802.3 length, not an EtherType (EtherTypes are 0x0600..0xffff)")
    if not 0x0600 <= number <= 0xFFFF:
        raise ValueError(f"{shown} is out of range: EtherTypes are 0x0600..0xffff")
    return number


@_format("url", str)
def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


@_format("mailbox", str)
def _mailbox(value: str) -> str:
    from email.utils import parseaddr  # only a config that sends mail pays for the email package

    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", parseaddr(value)[1]):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


# -- validation and messages ------------------------------------------------------

@functools.cache
def _conforms() -> Callable[[object], bool]:
    """Whether a document conforms to the schema: the fast check of every load."""
    return schemacheck.compile_schema(schema(), {name: functools.partial(_format_passes, name) for name in _CANONICAL})


@functools.cache
def _validator():
    """jsonschema's validator, which says why a document does not conform (imported
    only then: the import alone costs more than checking a large config)."""
    from jsonschema import Draft202012Validator, FormatChecker

    formats = FormatChecker(formats=())
    for name in _CANONICAL:
        formats.checks(name, raises=ValueError)(functools.partial(_format_valid, name))
    return Draft202012Validator(schema(), format_checker=formats)


def _dotted(path: tuple) -> str:
    """`('probes', 'arp_neighbor', 'static_resolutions', 2, 'mac')` ->
    `probes.arp_neighbor.static_resolutions[2].mac`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "nothing"}


_VALUE_NAMES = {str: "string", int: "integer", float: "number"}


def _kind(value) -> str:
    """How an error message names a wrong value."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{_VALUE_NAMES.get(type(value), 'value')} {value!r}"


def _suggest(word, choices) -> str:
    import difflib  # for error messages only

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _valid_text(text: str, fmt: str | None) -> bool:
    """Whether `text` would be accepted as a string of format `fmt`."""
    try:
        _CANONICAL.get(fmt, (str,))[0](text)
    except ValueError:
        return False
    return True


def _explain(error, plain: Callable[[tuple], str | None]) -> list[tuple[tuple, str]]:
    """Operator-facing (path, message) pairs for one jsonschema error; `plain(path)`
    gives the source text of an unquoted YAML scalar, if there is one."""
    path, kind, value, sub = tuple(error.absolute_path), error.validator, error.instance, error.schema
    rule = error.validator_value
    if kind == "additionalProperties":
        known = sub.get("properties", {})
        return [(path + (k,), "unknown key" + _suggest(k, known)) for k in value if k not in known]
    if kind == "required":
        return [(path, f"missing required key {k!r}") for k in rule if k not in value]
    if kind == "not" and set(rule) == {"required"}:
        keys = rule["required"]
        return [(path + (keys[-1],), f"{' and '.join(keys)} are mutually exclusive: set only one")]
    if kind == "anyOf" and all(set(alt) == {"required"} for alt in rule):
        keys = [k for alt in rule for k in alt["required"]]
        return [(path, f"missing required key: one of {', '.join(map(repr, keys))}")]
    if kind == "type":
        wanted = [rule] if isinstance(rule, str) else rule
        message = "expected " + " or ".join(_TYPE_NAMES[t] for t in wanted)
        source = plain(path)
        if "string" in wanted and source and _valid_text(source, sub.get("format")):
            read_as = "a boolean" if isinstance(value, bool) else "null" if value is None else "a number"
            return [(path, f"{message}; YAML reads the unquoted {source} as {read_as}: put it in quotes")]
        example = f" such as {json.dumps(sub['examples'][0])}" if sub.get("examples") else ""
        return [(path, f"{message}{example}, got {_kind(value)}")]
    if kind == "format":
        return [(path, str(error.cause))]
    if kind == "enum":
        if "title" in sub:
            return [(path, f"{value!r} is not a known {sub['title']}" + _suggest(value, rule))]
        shown: dict = {}
        for v in rule:  # one spelling of each case-insensitive value: the first listed
            shown.setdefault(str(v).lower(), v)
        return [(path, f"{value!r} is not one of: {', '.join(map(str, shown.values()))}")]
    if kind in ("minItems", "minLength") and rule == 1:
        return [(path, "must not be empty")]
    if kind == "uniqueItems":
        twice = next(v for i, v in enumerate(value) if v in value[:i])
        return [(path, f"{twice!r} is listed more than once")]
    if kind == "pattern":
        example = f" (example: {sub['examples'][0]!r})" if sub.get("examples") else ""
        return [(path, f"{value!r} does not have the expected form{example}")]
    return [(path, error.message)]


def _problems(doc, plain: Callable[[tuple], str | None] = lambda path: None) -> list[tuple[tuple, str]]:
    if _conforms()(doc):
        return []
    found = []
    for error in _validator().iter_errors(doc):
        found += _explain(error, plain)
    return list(dict.fromkeys(found))


def validate(doc) -> list[str]:
    """Problems of a parsed config document as "path.to.key: message" lines ([] if valid)."""
    return sorted(f"{_dotted(path)}: {message}" for path, message in _problems(doc))


# -- YAML with line numbers and bounds ------------------------------------------

#: deepest nesting of mappings and lists a YAML document may have (a config has about 8)
MAX_DEPTH = 64
#: nodes that aliases may add to a YAML document beyond those written in it; more is
#: an alias bomb ("billion laughs"), which would cost minutes and gigabytes to walk
MAX_ALIAS_NODES = 100_000


class _Limit(yaml.MarkedYAMLError):
    """A YAML document beyond MAX_DEPTH or MAX_ALIAS_NODES, or a number Python will not read."""


def _too_deep(mark) -> _Limit:
    return _Limit(problem=f"YAML nested deeper than {MAX_DEPTH} levels", problem_mark=mark)


class _Lines:
    """Where each path of a composed YAML document is written, and duplicate keys
    (which YAML would silently resolve to the last one). The walk expands aliases,
    so it enforces MAX_DEPTH and MAX_ALIAS_NODES (raising _Limit) and is iterative.
    Where the paths are written is worked out only when asked: a config without
    errors never needs it."""

    def __init__(self, root: yaml.Node | None):
        self.root = root
        seen: set[int] = set()
        repeated = 0
        repeats: dict[int, list] = {}  # id of a mapping -> (name, its first key node) per repeated key
        todo = [(root, 0)] if root is not None else []
        while todo:
            node, depth = todo.pop()
            again = id(node) in seen
            if again:
                repeated += 1
                if repeated > MAX_ALIAS_NODES:
                    raise _Limit(problem=f"YAML aliases expand the document by more than {MAX_ALIAS_NODES} nodes",
                                 problem_mark=node.start_mark)
            seen.add(id(node))
            if depth > MAX_DEPTH:
                raise _too_deep(node.start_mark)
            if node.__class__ is yaml.MappingNode:
                first: dict = {}  # key -> its first key node
                for k, _ in () if again else node.value:
                    name = k.value if k.__class__ is yaml.ScalarNode else None
                    if name in first:
                        repeats.setdefault(id(node), []).append((name, first[name]))
                    else:
                        first[name] = k
                todo += [(v, depth + 1) for _, v in reversed(node.value)]  # in document order
            elif node.__class__ is yaml.SequenceNode:
                todo += [(v, depth + 1) for v in reversed(node.value)]
        self.aliased = repeated > 0
        self.duplicates = [(path + (name,), f"duplicate key (first at line {first.start_mark.line + 1})")
                           for path, (_, node) in self.nodes.items() if id(node) in repeats
                           for name, first in repeats[id(node)]] if repeats else []

    @functools.cached_property
    def nodes(self) -> dict[tuple, tuple[yaml.Node | None, yaml.Node]]:
        """path -> (its key node, its node); of duplicate keys the last one wins, as in YAML."""
        nodes = {}
        todo = [(self.root, (), None)] if self.root is not None else []
        while todo:
            node, path, key = todo.pop()
            nodes[path] = (key, node)
            if node.__class__ is yaml.MappingNode:
                todo += [(v, path + (k.value if k.__class__ is yaml.ScalarNode else None,), k)
                         for k, v in reversed(node.value)]  # in document order: the last of duplicate keys wins
            elif node.__class__ is yaml.SequenceNode:
                todo += [(v, path + (i,), None) for i, v in reversed(list(enumerate(node.value)))]
        return nodes

    def line(self, path: tuple) -> int:
        """The line of the key (for mappings and lists: where the operator wrote
        the key) or scalar value at `path`, or of the nearest written ancestor."""
        while path and path not in self.nodes:
            path = path[:-1]
        if path not in self.nodes:
            return 1
        key, node = self.nodes[path]
        mark = node.start_mark if key is None or isinstance(node, yaml.ScalarNode) else key.start_mark
        return mark.line + 1

    def plain(self, path: tuple) -> str | None:
        key_node = self.nodes.get(path)
        node = key_node and key_node[1]
        if isinstance(node, yaml.ScalarNode) and node.style is None and node.tag != "tag:yaml.org,2002:str":
            return node.value
        return None


def _int(loader, node):
    """YAML integers, with Python's limit on decimal digits as a located error."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise _Limit(problem=f"an integer of {len(node.value)} characters is too long", problem_mark=node.start_mark) \
            from None


class _SafeLoader(yaml.SafeLoader):
    """The pure-Python parser, bounded in depth while it composes (it recurses)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                raise _too_deep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _int)

#: libyaml's parser when available: a rendered config with thousands of entries
#: parses several times faster (libyaml bounds the nesting itself). Error reports
#: always come from the pure-Python parser, whose messages and scalar styles the
#: hints below rely on.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)
if _FAST_LOADER is not None:
    _FAST_LOADER = type("_CSafeLoader", (_FAST_LOADER,), {})
    _FAST_LOADER.add_constructor("tag:yaml.org,2002:int", _int)


_STR, _SEQ, _MAP, _MERGE, _VALUE = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map", "merge", "value"))


def _construct(loader: yaml.SafeLoader, root: yaml.Node, aliased: bool):
    """What `loader.construct_document(root)` returns, several times faster for what a
    config is made of: strings, lists and mappings are built here, every other node
    by the loader's own constructors (which raise what they raise). A document with
    aliases goes to the loader whole: it builds each aliased node once. The walk
    recurses at most MAX_DEPTH deep: `_Lines` has walked the document before."""

    def build(node: yaml.Node):
        if node.tag == _STR and node.__class__ is yaml.ScalarNode:
            return node.value
        if node.tag == _SEQ and node.__class__ is yaml.SequenceNode:
            return [build(item) for item in node.value]
        if node.tag == _MAP and node.__class__ is yaml.MappingNode and all(
                key.__class__ is yaml.ScalarNode and key.tag not in (_MERGE, _VALUE) for key, _ in node.value):
            return {build(key): build(value) for key, value in node.value}
        return loader.construct_object(node, deep=True)

    return loader.construct_document(root) if aliased else build(root)


def parse_yaml(text: str, name: str, loader_class=_SafeLoader) -> tuple[object, _Lines]:
    """The document in `text` and where its parts are written; ConfigError with
    `name:LINE:` for text that is not YAML or exceeds the bounds above."""
    try:
        loader = loader_class(text)
    except yaml.reader.ReaderError as exc:  # the pure-Python reader checks the characters at once
        raise ConfigError([_reader_error(exc, text, name)]) from None
    except UnicodeEncodeError as exc:  # libyaml's reader wants UTF-8: a lone surrogate is not
        raise ConfigError([_bad_char(name, text, exc.start)]) from None
    try:
        root = loader.get_single_node()
        lines = _Lines(root)
        doc = _construct(loader, root, lines.aliased) if root is not None else None
    except _Limit as exc:
        raise ConfigError([f"{name}:{exc.problem_mark.line + 1}: {exc.problem}"]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error(exc, text, name)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ConfigError([f"{name}:{line} YAML syntax error: {exc.problem}{context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    return doc, lines


def _reader_error(exc: yaml.reader.ReaderError, text: str, name: str) -> str:
    # libyaml counts bytes, not characters: its report is replaced by the pure-Python one
    char = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return _bad_char(name, text, min(exc.position, len(text)), char)


def _bad_char(name: str, text: str, position: int, char: int | None = None) -> str:
    char = ord(text[position]) if char is None else char
    return f"{name}:{text.count(chr(10), 0, position) + 1}: character #x{char:04x} is not allowed in YAML"


def load_text(text: str, name: str = "<config>", base_dir: str | Path | None = None, files: bool = False) -> dict:
    """Parse, validate and complete the YAML config `text`; errors are reported as
    `name:LINE: ...`. Relative paths are joined to `base_dir` when given. With
    `files`, the files the config names must be usable too (see `_unusable`)."""
    return _checked(text, name, base_dir, files)[0]


def _checked(text: str, name: str, base_dir, files: bool) -> tuple[dict, MemberTable | None]:
    """What `load_text` does, and with `files` the member table built to check it."""
    with _no_cycle_collection():
        if _FAST_LOADER is not None:
            try:
                return _load_text(text, name, base_dir, _FAST_LOADER, files)
            except ConfigError:
                pass  # report it with the exact messages of the pure-Python parser
        return _load_text(text, name, base_dir, _SafeLoader, files)


@contextlib.contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused: the objects a large config is parsed into
    (some 100,000 for 3,000 static entries) would set it off over a hundred times,
    its older generations walking all of them, which more than doubles the time to
    parse (whatever cycles a YAML alias makes are collected once it runs again)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_text(text: str, name: str, base_dir, loader_class, files: bool) -> tuple[dict, MemberTable | None]:
    doc, lines = parse_yaml(text, name, loader_class)
    if doc is None:
        raise ConfigError([f"{name}:1: (top level): the config is empty"])
    problems, members = lines.duplicates + _problems(doc, lines.plain), None
    if not problems:
        doc = _complete(doc, Path(base_dir).resolve() if base_dir is not None else None)
        problems = _template_problems(doc["event"])
        if files and not problems:  # the templates are reported once, from the check above
            problems, members = _unusable(doc)
    if problems:
        ordered = sorted((lines.line(path), _dotted(path), message) for path, message in problems)
        raise ConfigError([f"{name}:{line}: {where}: {message}" for line, where, message in ordered])
    return doc, members


def _template_problems(event: dict) -> list[tuple[tuple, str]]:
    """The notifier templates the config uses, each loaded and test-rendered: a
    template that would fail (or print a blank for a misspelt variable) is a config
    error. The built-in templates alone are not checked: they are tested with the package."""
    files = {ch["template"]: ("event", "notifiers", "http", "channels", i, "template")
             for i, ch in enumerate(event["notifiers"].get("http", {}).get("channels", ())) if "template" in ch}
    if not files and not event.get("templates_dir"):
        return []
    from ixpect.notify import render  # jinja2: only a config with templates of its own pays for it

    return [(files[file] if file else ("event", "templates_dir"), why)
            for file, why in render.problems(event.get("templates_dir"), files)]


def _unusable(cfg: dict) -> tuple[list[tuple[tuple, str]], MemberTable | None]:
    """The files a completed config names (secrets, the member table) that the daemon
    could not use, found by building from them what the daemon builds; and the member
    table so built, if there is one."""
    from ixpect.notify import NotifierError
    from ixpect.notify.delivery import channels_of

    problems, members = [], None
    if cfg.get("member_table"):
        try:
            members = MemberTable.load(cfg["member_table"])
        except (OSError, ValueError) as exc:
            why = f"{cfg['member_table']}: cannot read: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            problems.append((("member_table",), why))
    try:
        if cfg["event"]["notifiers"]:  # none: the log notifier, which reads no file
            channels_of(cfg["event"])
    except NotifierError as exc:
        problems += exc.problems
    return problems, members


def load(path: str | Path, files: bool = True) -> dict:
    """The config file at `path`, ready to use (see the module docstring); with
    `files`, the secret files and member table it names must be usable."""
    return _load_file(path, files)[0]


def load_with_members(path: str | Path) -> tuple[dict, MemberTable | None]:
    """`load(path)` and the member table the config names (None if it names none),
    built once: to check the file, and for the daemon to use."""
    return _load_file(path, True)


def _load_file(path: str | Path, files: bool) -> tuple[dict, MemberTable | None]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the config: {reason}"]) from None
    return _checked(text, str(path), Path(path).parent, files)


# -- completion: defaults, canonical values, DD-IX spellings ----------------------

#: id of a subschema with a `$ref` -> (it, it dereferenced); the entry holds the
#: subschema, so that its id cannot be reused while it is cached
_DEREFERENCED: dict[int, tuple[dict, dict]] = {}


def _deref(sub: dict) -> dict:
    """`sub` with its `$ref` (local `#/$defs/...` only) merged in; siblings win."""
    if "$ref" not in sub:
        return sub
    held = _DEREFERENCED.get(id(sub))
    if held is None or held[0] is not sub:
        merged = sub
        while "$ref" in merged:
            target = schema()["$defs"][merged["$ref"].removeprefix("#/$defs/")]
            merged = {**target, **{k: v for k, v in merged.items() if k != "$ref"}}
        held = _DEREFERENCED[id(sub)] = (sub, merged)
    return held[1]


#: id of a subschema -> (it, its completer); held like _DEREFERENCED
_COMPLETERS: dict[int, tuple[dict, Callable]] = {}


def _completer(sub: dict) -> Callable:
    """`complete(value, base_dir)`: a completed copy of `value` as the schema `sub`
    describes it. Made once per subschema (a config repeats the same ones thousands
    of times: its static entries), and for its children when first needed, so that a
    recursive schema is no endless loop."""
    held = _COMPLETERS.get(id(sub))
    if held is None or held[0] is not sub:
        held = _COMPLETERS[id(sub)] = (sub, _make_completer(_deref(sub)))
    return held[1]


def _make_completer(sub: dict) -> Callable:
    fmt = sub.get("format")
    canonical, types = _CANONICAL.get(fmt, (None, ()))
    props = sub.get("properties", {})
    extra = sub.get("additionalProperties")
    extra = extra if isinstance(extra, dict) else {}
    defaults = [(k, d["default"]) for k, p in props.items() if "default" in (d := _deref(p))]
    filed = {k.removesuffix("_file") for k in props if k.endswith("_file")}  # DD-IX: `pass: {file: PATH}`
    channels = "channels" in props  # DD-IX: `log: {events: [...]}`
    items = sub.get("items", {})
    spellings = [v for v in sub.get("enum", ()) if isinstance(v, str)]

    def complete(value, base_dir: Path | None):
        if isinstance(value, types):
            return canonical(value)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key in filed and isinstance(item, dict):
                    key, item = f"{key}_file", item["file"]
                out[key] = item
            if channels and "events" in out:
                out["channels"] = [{"events": out.pop("events")}]
            for key, default in defaults:
                if key not in out:
                    out[key] = copy.deepcopy(default)
            return {k: _completer(props.get(k, extra))(v, base_dir) for k, v in out.items()}
        if isinstance(value, list):
            each = _completer(items)
            return [each(v, base_dir) for v in value]
        if fmt == "path":
            return str(base_dir / value) if base_dir is not None else value
        if isinstance(value, str) and spellings:  # the first listed spelling is canonical
            return next(v for v in spellings if v.lower() == value.lower())
        return value

    return complete


def _complete(doc: dict, base_dir: Path | None) -> dict:
    doc = _completer(schema())(doc, base_dir)
    notifiers = doc["event"]["notifiers"]
    doc["event"]["notifiers"] = {kind: cfg for kind, cfg in notifiers.items() if cfg.pop("enable")}
    return doc


def check_config_main(args) -> int:
    """`ixpect check-config FILE`: "FILE: ok" and 0, or every problem on stderr and 1."""
    try:
        cfg = load(args.file, files=not args.skip_files)
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    if not cfg["event"]["notifiers"]:
        print(f"{args.file}: {NO_NOTIFIER}", file=sys.stderr)
    return 0
