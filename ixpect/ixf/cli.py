"""`ixpect ixf list` and `ixpect ixf render`: messages and exit codes around fetch/normalise/render.

Exit codes: 0 success, 1 failure (nothing written). Warnings go to stderr, the result to stdout.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ixpect.ixf import IxfError, Problems, fetch, schema
from ixpect.ixf.normalise import Export, counts
from ixpect.ixf.render import Options, diff, render, write, write_failure, write_status
from ixpect.logsetup import prefix
from ixpect.notify import NO_NOTIFIER


def list_main(args) -> int:
    """Every infrastructure and VLAN with the numbers an operator needs to pick --ixp-id/--vlan-id."""
    problems = Problems()
    try:
        doc = fetch.load(args.source, args.cache_dir)
        try:
            schema.check(doc, problems)
        except IxfError as e:  # still worth listing: the operator sees why a render would fail
            problems.add("this export will not render", str(e))
    except IxfError as e:
        return _fail(e)
    export = Export(doc, problems)
    for ixp in sorted(export.infrastructures.values(), key=lambda i: i.ixp_id):
        note = "" if ixp.declared else "  (not in ixp_list)"
        print(f"ixp_id {ixp.ixp_id}  {ixp.shortname}{note}")
        for vlan in sorted(ixp.vlans.values(), key=lambda v: v.id):
            c = counts(export.lan(ixp.ixp_id, vlan.id))
            prefixes = " ".join(str(n) for n in vlan.prefixes) or "no prefixes"
            name = vlan.name if vlan.declared else "(not in ixp_list)"
            print(f"  vlan_id {vlan.id}  {name}  {prefixes}  "
                  f"members {c['members']}  ipv4 {c['ipv4']}  ipv6 {c['ipv6']}  macs {c['macs']}")
    _warn(problems)
    return 0


def render_main(args) -> int:
    opts = Options(ixp_id=args.ixp_id, vlan_id=args.vlan_id, output=Path(args.output),
                   base=Path(args.base) if args.base else None,
                   template=Path(args.template) if args.template else None,
                   strict=args.strict, force=args.force, max_drop=args.max_drop)
    if not 0 <= opts.max_drop <= 1:
        return _fail(IxfError(f"--max-drop {opts.max_drop}: must be a share between 0 and 1"))
    problems = Problems()
    try:
        doc = fetch.load(args.source, args.cache_dir)
        rendered = render(doc, opts, problems)
        if args.dry_run:
            changes = diff(rendered, opts)
            sys.stdout.write(changes)
            changed = bool(changes)
        else:
            changed = write(rendered, opts)
            write_status(rendered, opts)
    except IxfError as e:
        if not args.dry_run:
            write_failure(opts.output, e)
        _warn(problems)
        return _fail(e)
    _warn(problems)
    c = rendered.counts
    print(f"{opts.output}: {c['members']} members, {c['ipv4']} IPv4 and {c['ipv6']} IPv6 addresses, "
          f"{c['macs']} MACs; {c['arp_static']} ARP and {c['nd_static']} ND static entries", file=sys.stderr)
    if not rendered.notifiers:
        print(f"{opts.output}: {NO_NOTIFIER} (--base adds notifiers)", file=sys.stderr)
    print("changed" if changed else "unchanged")
    return 0


def _warn(problems: Problems) -> None:
    for line in problems.lines():
        print(f"{prefix(logging.WARNING)}warning: {line}", file=sys.stderr)


def _fail(e: IxfError) -> int:
    print(f"{prefix(logging.ERROR)}error: {e}", file=sys.stderr)
    return 1
