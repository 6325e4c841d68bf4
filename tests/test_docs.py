"""The operator's documentation: README links every docs/ page, every relative link
resolves, and the README's events table names every event type the schema knows."""

from __future__ import annotations

import re

from ixpect import config

from conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme]
    assert PAGES[1:] and not unlinked


def test_relative_links_resolve():
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in PAGES
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken


def test_readme_events_table_names_every_event_type():
    table = (REPO / "README.md").read_text().split("## Events", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z0-9_]+)`", table))
    missing = [e for e in config.schema()["$defs"]["event_type"]["enum"] if e not in listed]
    assert not missing, missing
