"""Message templates: jinja2 with the operator's `event.templates_dir` searched first
and the built-in templates (ixpect/templates/) second, so that dropping a file of the
same name into that directory overrides exactly that one template."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from ixpect.events import Batch

BUILTIN = Path(__file__).resolve().parent.parent / "templates"


def kv(data: dict) -> str:
    """Event data as `key=value` pairs; list values comma-joined."""
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items())


def member(m: dict | None) -> str:
    return f"AS{m['asn']} ({m['name']})" if m else ""


def mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Templates:
    def __init__(self, templates_dir: str | None = None):
        loaders = [jinja2.FileSystemLoader(templates_dir)] if templates_dir else []
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([*loaders, jinja2.FileSystemLoader(BUILTIN)]),
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )
        self.env.filters.update(kv=kv, member=member, mrkdwn=mrkdwn)

    def get(self, name: str) -> jinja2.Template:
        """Loaded when a notifier is built, so that a broken override fails at start."""
        return self.env.get_template(name)

    def load(self, path: str) -> jinja2.Template:
        """A template given by file path (e.g. an http channel's `template`); it may
        still include or extend templates by name."""
        return self.env.from_string(Path(path).read_text())


def render(template: jinja2.Template, batches: list[Batch]) -> str:
    return template.render(context(batches))


def context(batches: list[Batch]) -> dict:
    """What every template sees: `batches` as JSON-ready dicts (plus the sample frame
    in base64), `type` of the first batch (messages are per type), `events` total."""
    rows = [{**b.to_json(), "sample": base64.b64encode(b.sample).decode() if b.sample else None}
            for b in batches]
    return {"type": batches[0].type, "types": sorted({b.type for b in batches}),
            "batches": rows, "events": sum(b.count for b in batches)}
