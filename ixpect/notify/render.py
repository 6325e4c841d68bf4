"""Message templates: jinja2 with the operator's `event.templates_dir` searched first
and the built-in templates (ixpect/templates/) second, so that dropping a file of the
same name into that directory overrides exactly that one template. DD-IX's IXpect
names its templates with a `.j2` suffix (`email.html.j2`): such a file overrides the
built-in template of the name without it.

Every template is rendered once with sample batches when it is loaded, with every
variable required to exist (jinja2's StrictUndefined), so that a misspelt variable in
an operator's template stops the config from loading instead of leaving a blank in
each mail. Event data keys differ per event type and are not checked."""

from __future__ import annotations

import base64
import functools
import json
import logging
import traceback
from pathlib import Path

import jinja2

from ixpect.events import Batch
from ixpect.notify.log import kv, member

log = logging.getLogger(__name__)

BUILTIN = Path(__file__).resolve().parent.parent / "templates"
#: the templates the notifiers render, which a templates_dir may override
NAMES = ("subject.txt", "email.txt", "email.html", "summary.txt", "table.html", "slack.txt", "http.json")


def mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Data(dict):
    """Event data; printed whole (`{{ batch.data }}`, as DD-IX's templates do) it is JSON."""

    def __str__(self) -> str:
        return json.dumps(self)


class _AnyData(_Data):
    """Event data of the load-time check: any key may be asked for."""

    def __missing__(self, key):
        return ""


class _Row(dict):
    """A batch as templates see it; `size` and `timestamp` are DD-IX's names for
    `count` and `first`. Attributes, not keys, so that `batches|tojson` is unchanged."""

    size = property(lambda self: self["count"])
    timestamp = property(lambda self: self["first"])


class _Suffixed(jinja2.FileSystemLoader):
    """`name` found as `name.j2`: DD-IX's template file names."""

    def get_source(self, environment, template):
        return super().get_source(environment, f"{template}.j2")


@functools.cache
def _missing(templates_dir: str) -> None:
    """Said once per directory, however often templates are built (a check builds them twice)."""
    log.warning("templates_dir %s is not a directory: the built-in templates are used", templates_dir)


@functools.cache
def builtin() -> dict[str, str]:
    """The built-in templates by name, read once: a daemon that dropped privileges
    may no longer be able to read its installation."""
    return {path.name: path.read_text() for path in BUILTIN.iterdir() if path.is_file()}


class Templates:
    def __init__(self, templates_dir: str | None = None):
        if templates_dir and not Path(templates_dir).is_dir():
            _missing(templates_dir)
        loaders = [jinja2.FileSystemLoader(templates_dir), _Suffixed(templates_dir)] if templates_dir else []
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([*loaders, jinja2.DictLoader(builtin())]),
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )
        self.env.filters.update(kv=kv, member=member, mrkdwn=mrkdwn)
        self.strict = self.env.overlay(undefined=jinja2.StrictUndefined)

    def get(self, name: str) -> jinja2.Template:
        """Loaded and checked when a notifier is built, so that a broken override fails at start."""
        _check(self.strict.get_template(name))
        return self.env.get_template(name)

    def load(self, path: str) -> jinja2.Template:
        """A template given by file path (e.g. an http channel's `template`); it may
        still include or extend templates by name."""
        source = Path(path).read_text()
        _check(self.strict.from_string(source), path)
        return self.env.from_string(source)


def problems(templates_dir: str | None, files=()) -> list[tuple[str | None, str]]:
    """What is wrong with the templates a config uses: with a `templates_dir`, every
    template name (looked up there, then in the built-ins), and the template `files`
    (http channels). One (file, why) per problem, file None for a template name; []
    when all load."""
    templates, found = Templates(templates_dir), []
    names = NAMES if templates_dir else ()
    for load, what, file in [*((templates.get, n, None) for n in names), *((templates.load, f, f) for f in files)]:
        try:
            load(what)
        except (OSError, UnicodeDecodeError, jinja2.TemplateError) as exc:
            found.append((file, failure(exc, what)))
    return found


def failure(exc: Exception, what: str) -> str:
    """What went wrong loading `what` (a template or a file a notifier reads), for an operator."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or what}:{exc.lineno}: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):  # an include or extends (it is an OSError too)
        return f"{what}: template {exc.name!r} not found"
    if isinstance(exc, OSError):
        return f"{what}: cannot read: {exc.strerror or exc}"
    return str(exc) if isinstance(exc, jinja2.UndefinedError) else f"{what}: {exc}"


def _samples() -> list[list[Batch]]:
    """Batches that take every branch on `member` and `sample`."""
    return [[Batch("ARP_NEIGHBOR_SPOOFED_STATIC", {"ip4_addr": "192.0.2.1", "mac_addr": "02:00:00:00:00:01",
                                                    "mac_addr_expected": ["02:00:00:00:00:02"]},
                   {"asn": 64500, "name": "Example"}, 0.0, 1.0, 2, bytes(60))],
            [Batch("STP_PACKET_FOUND", {}, None, 0.0, 0.0)]]


def _check(template: jinja2.Template, path: str | None = None) -> None:
    """Render `template` with the sample batches; an undefined variable raises
    jinja2.UndefinedError saying "FILE:LINE: 'name' is undefined"."""
    for batches in _samples():
        try:
            template.render(context(batches, _AnyData))
        except jinja2.UndefinedError as exc:
            file = template.filename or "<template>"
            lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == file]
            where = f"{path or file}:{lines[-1]}" if lines else path or file
            message = exc.message.replace(f"{_Row.__module__}.{_Row.__name__}", "batch")
            raise jinja2.UndefinedError(f"{where}: {message}") from None


def render(template: jinja2.Template, batches: list[Batch]) -> str:
    return template.render(context(batches))


def context(batches: list[Batch], data: type = _Data) -> dict:
    """What every template sees: `batches` as JSON-ready dicts (plus the sample frame
    in base64), `type` of the first batch (messages are per type), `events` total;
    and DD-IX's names: `name` (the type) and `batch_count`."""
    rows = [_Row(b.to_json(), data=data(b.data), sample=base64.b64encode(b.sample).decode() if b.sample else None)
            for b in batches]
    return {"type": batches[0].type, "types": sorted({b.type for b in batches}),
            "batches": rows, "events": sum(b.count for b in batches),
            "name": batches[0].type, "batch_count": len(batches)}
