"""From a normalised export to the two files the monitor reads: its config and the member table.

The member table is written first, so that the config never names a missing table; each file is
replaced atomically and only when its bytes change. A refresh that would drop more than
`max_drop` of the static entries is refused (a truncated export must not turn hundreds of
members into UNKNOWN neighbors); the operator overrides that with `force`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2
import yaml

from ixpect import config
from ixpect.atomic import write_atomic
from ixpect.ixf import IxfError, Problems, schema
from ixpect.ixf.normalise import Address, Export, counts, link_local, parse_macs
from ixpect.metrics import ixf_status_path

_NEIGHBOR = (("arp_neighbor", "arp_bogon", 4), ("ipv6_neighbor", "ipv6_bogon", 6))


@dataclass
class Options:
    ixp_id: int
    vlan_id: int
    output: Path
    base: Path | None = None
    template: Path | None = None
    strict: bool = False
    force: bool = False
    max_drop: float = 0.3


@dataclass
class Rendered:
    config: str
    table: str
    table_path: Path
    counts: dict = field(default_factory=dict)
    notifiers: bool = True  # the config has a notifier of its own


def render(doc: dict, opts: Options, problems: Problems) -> Rendered:
    """Everything up to (not including) writing; IxfError names what is wrong."""
    version = schema.check(doc, problems, opts.strict)
    export = Export(doc, problems)
    lan = export.lan(opts.ixp_id, opts.vlan_id)
    if not lan:
        raise IxfError(f"no member address in ixp_id {opts.ixp_id} vlan_id {opts.vlan_id}; "
                       f"this export has: {_available(export)} (see `ixpect ixf list`)")
    vlan = export.vlan(opts.ixp_id, opts.vlan_id)
    if not vlan.declared:
        problems.add("VLAN not declared in ixp_list, so it brings no prefixes",
                     f"ixp_id {opts.ixp_id} vlan_id {opts.vlan_id}")
    base = _load_base(opts.base)
    where = f"ixp_id {opts.ixp_id} vlan_id {opts.vlan_id}"
    static, prefixes, macs = _expected(lan, vlan.prefixes, base, problems, where)
    enable = _enable(base, prefixes, problems, where)
    table_path = opts.output.with_name(opts.output.name.removesuffix(".yaml").removesuffix(".yml") + ".members.json")
    ctx = {
        "ixp": {"id": opts.ixp_id, "shortname": export.infrastructures[opts.ixp_id].shortname},
        "vlan": {"id": vlan.id, "name": vlan.name},
        "member_table": table_path.name,
        "prefixes4": [str(n) for n in prefixes[4]], "prefixes6": [str(n) for n in prefixes[6]],
        "arp_static": _entries(static[4]), "nd_static": _entries(static[6]),
        "enable": enable, "base": base,
    }
    doc_out = _merge(base, _template(opts.template, ctx))
    text = _header(ctx, opts, version) + yaml.dump(doc_out, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                                                   width=120)
    cfg = _validate_config(text, opts.output)
    table = _table_json(_member_table(lan, macs, export.connections.get((opts.ixp_id, opts.vlan_id), {}), problems))
    if opts.strict and problems:
        raise IxfError("--strict: the export has defects that would otherwise be warnings:\n  "
                       + "\n  ".join(problems.lines()))
    summary = {**counts(lan), "arp_static": len(static[4]), "nd_static": len(static[6])}
    return Rendered(text, table, table_path, summary, bool(cfg["event"]["notifiers"]))


def _expected(lan: list[Address], vlan_prefixes: list, base: dict, problems: Problems, where: str):
    """Static (ip, mac) entries and prefixes per family (the base's first), and MAC -> owners."""
    static = {f: _base_static(base, probe, f) for probe, _, f in _NEIGHBOR}
    prefixes = {f: _base_prefixes(base, bogon, f) for _, bogon, f in _NEIGHBOR}
    for net in vlan_prefixes:
        prefixes[net.version].setdefault(net, None)
    macs: dict[str, set] = {}
    for a in lan:
        for m in a.macs:
            static[a.ip.version].setdefault((a.ip, m), None)
            macs.setdefault(m, set()).update(a.owners.values())
        if prefixes[a.ip.version] and not any(a.ip in n for n in prefixes[a.ip.version]):
            problems.add("address outside the VLAN prefixes (the monitor will report it as a bogon)",
                         f"{_owners(a)} {a.ip}")
    for m in sorted(macs):
        static[6].setdefault((link_local(m), m), None)
    if not macs:
        problems.add("no MAC address in this VLAN: no static neighbor entries, only prefixes and the member table",
                     where)
    return static, prefixes, macs


def _enable(base: dict, prefixes: dict, problems: Problems, where: str) -> dict[str, bool]:
    """The probes the export feeds are on unless the base config turns them off; a bogon probe
    without any prefix stays off, since then every address would be a bogon."""
    def on(probe: str) -> bool:
        return ((base.get("probes") or {}).get(probe) or {}).get("enable", True) is not False

    enable = {}
    for probe, bogon, f in _NEIGHBOR:
        enable[probe] = on(probe)
        enable[bogon] = on(bogon) and bool(prefixes[f])
        if on(bogon) and not prefixes[f]:
            problems.add(f"no IPv{f} prefix, so {bogon} is off (the base config can add probes.{bogon}.prefixes)",
                         where)
    return enable


def write(r: Rendered, opts: Options) -> bool:
    """Apply the safety valve, then replace what changed. True if anything changed."""
    _safety_valve(opts, r.config)
    base_mode = opts.base.stat().st_mode & 0o777 if opts.base else 0o644  # the base may hold secrets
    changed = write_if_changed(r.table_path, r.table, 0o644)
    return write_if_changed(opts.output, r.config, base_mode) or changed


def diff(r: Rendered, opts: Options) -> str:
    """What `write` would change, as unified diffs of the config and the member table
    (empty: nothing); the safety valve refuses as it would there."""
    _safety_valve(opts, r.config)
    return "".join(_diff(path, text) for path, text in ((opts.output, r.config), (r.table_path, r.table)))


def _diff(path: Path, text: str) -> str:
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeDecodeError) as e:
        raise IxfError(f"{path}: cannot read: {e}") from None
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), text.splitlines(keepends=True),
                                        str(path), f"{path} (rendered)"))


def write_status(r: Rendered, opts: Options) -> None:
    """Record this successful refresh beside the config, for the daemon's metrics
    (ixpect.metrics.ixf_status_path): when, and how many entries."""
    path = ixf_status_path(opts.output)
    entries = {k: r.counts[k] for k in ("members", "ipv4", "ipv6", "macs")}
    status = {"refreshed": time.time(), "entries": entries}
    try:
        write_atomic(path, json.dumps(status).encode() + b"\n", 0o644)
    except OSError as e:
        raise IxfError(f"{path}: cannot write: {e.strerror}") from None


def write_failure(output: Path, error: IxfError) -> None:
    """Record a failed refresh in the status file, keeping the last success, so that
    the metrics tell a refresh that keeps failing from one that is merely unchanged.
    Best effort: the failure itself is what the caller reports."""
    path = ixf_status_path(output)
    try:
        status = json.loads(path.read_bytes())
        status = status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        status = {}
    status.update(failed=time.time(), error=str(error))
    try:
        write_atomic(path, json.dumps(status).encode() + b"\n", 0o644)
    except OSError:
        pass


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Atomic replace (temp file, fsync, rename) only when the bytes differ; keeps an existing mode."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    except OSError as e:
        raise IxfError(f"{path}: cannot read: {e.strerror}") from None
    try:
        write_atomic(path, data, mode)
    except OSError as e:
        raise IxfError(f"{path}: cannot write: {e.strerror}") from None
    return True


def static_pairs(config_text: str) -> set[tuple[str, str]]:
    """The (ip, mac) static entries of a config, for comparing two renders."""
    doc = _yaml(config_text, "config")
    probes = doc.get("probes") if isinstance(doc, dict) else None
    pairs = set()
    for probe, _, _ in _NEIGHBOR:
        section = probes.get(probe) if isinstance(probes, dict) else None
        entries = section.get("static_resolutions") if isinstance(section, dict) else None
        pairs |= {(str(e.get("ip")), str(e.get("mac"))) for e in entries or [] if isinstance(e, dict)}
    return pairs


def _safety_valve(opts: Options, new_text: str) -> None:
    try:
        old = static_pairs(opts.output.read_text())
    except FileNotFoundError:
        return  # first render
    except (OSError, UnicodeDecodeError, IxfError) as e:
        raise IxfError(f"{opts.output}: cannot read the current config to compare: {e}") from None
    dropped = len(old - static_pairs(new_text))
    if old and dropped / len(old) > opts.max_drop and not opts.force:
        raise IxfError(f"refusing to drop {dropped} of {len(old)} static entries ({dropped / len(old):.0%}, "
                       f"limit --max-drop {opts.max_drop:.0%}): a truncated export would flood the monitor "
                       f"with UNKNOWN events. Check the export; if the drop is real, re-run with --force")


def _available(export: Export) -> str:
    counts: dict[tuple[int, int], int] = {}
    for ixp_id, vlan_id, _ in export.addresses:
        counts[ixp_id, vlan_id] = counts.get((ixp_id, vlan_id), 0) + 1
    return ", ".join(f"ixp_id {i} vlan_id {v} ({n} addresses)" for (i, v), n in sorted(counts.items())) or "none"


def _owners(a: Address) -> str:
    return " / ".join(str(m) for m in a.owners.values())


def _entries(pairs: dict) -> list[dict]:
    return [{"ip": str(ip), "mac": mac} for ip, mac in sorted(pairs, key=lambda p: (p[0], p[1]))]


def _member_table(lan: list[Address], macs: dict[str, set], connections: dict[int, int],
                  problems: Problems) -> dict:
    """MAC and IP -> {asn, name}, and connections (ports or LAGs) per ASN. An address or
    MAC several ASNs claim names them all (ixpect.members), with a warning."""
    ips = {str(a.ip): _member(a.owners.values(), "address", a.ip, problems) for a in lan}
    by_mac = {}
    for m, owners in sorted(macs.items()):
        by_mac[m] = _member(owners, "MAC", m, problems)
        ips.setdefault(str(link_local(m)), by_mac[m])
    return {"macs": by_mac, "ips": ips, "connections": {str(asn): n for asn, n in connections.items()}}


def _table_json(table: dict) -> str:
    """ixpect/members.py's format, one address per line: readable and diff-friendly."""
    def section(name: str) -> str:
        rows = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(table[name].items())]
        return f' "{name}": {{\n' + ",\n".join(rows) + "\n }"
    return "{\n" + ",\n".join(section(name) for name in ("macs", "ips", "connections")) + "\n}\n"


def _member(owners, what: str, key, problems: Problems) -> dict:
    """The member record of a MAC or address: one {asn, name} per ASN, the lowest first."""
    by_asn = {o.asn: {"asn": o.asn, "name": o.name} for o in sorted(owners, key=lambda o: (o.asn, o.name))}
    first, *others = by_asn.values()
    if others:
        problems.add(f"{what} claimed by several ASNs (events name them all)",
                     f"{key}: " + " / ".join(sorted(str(o) for o in owners)))
        return {**first, "shared_with": others}
    return first


def _load_base(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        doc = _yaml(path.read_bytes().decode(), str(path))
    except OSError as e:
        raise IxfError(f"{path}: cannot read base config: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise IxfError(f"{path}: base config is not UTF-8 text (byte {e.start})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise IxfError(f"{path}: base config must be a mapping, not a {type(doc).__name__}")
    return doc


def _base_section(base: dict, probe: str, key: str) -> list:
    value = ((base.get("probes") or {}).get(probe) or {}).get(key) or []
    if not isinstance(value, list):
        raise IxfError(f"base config: probes.{probe}.{key}: must be a list")
    return value


def _base_static(base: dict, probe: str, family: int) -> dict:
    """The operator's own static entries (e.g. the IXP's infrastructure), kept beside the export's."""
    out = {}
    for i, e in enumerate(_base_section(base, probe, "static_resolutions")):
        where = f"base config: probes.{probe}.static_resolutions[{i}]"
        try:
            ip = ipaddress.ip_address(str(e["ip"]))
            problems = Problems()
            (mac,) = parse_macs(str(e["mac"]), where, problems)
        except (TypeError, KeyError, ValueError):
            raise IxfError(f"{where}: needs an IPv{family} address `ip` and one `mac`, got {e!r}") from None
        if ip.version != family:
            raise IxfError(f"{where}: {ip} is not IPv{family}")
        out[ip, mac] = None
    return out


def _base_prefixes(base: dict, probe: str, family: int) -> dict:
    """Extra prefixes the operator configured (e.g. a second LAN range), kept beside the VLAN's."""
    out = {}
    for i, p in enumerate(_base_section(base, probe, "prefixes")):
        try:
            net = ipaddress.ip_network(str(p), strict=False)
        except ValueError:
            net = None
        if net is None or net.version != family:
            raise IxfError(f"base config: probes.{probe}.prefixes[{i}]: {p!r} is not an IPv{family} prefix")
        out[net] = None
    return out


def _template(path: Path | None, ctx: dict) -> dict:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    name = str(path) if path else "built-in template"
    try:
        source = path.read_text() if path else (resources.files("ixpect") / "templates" / "ixpect.conf.yaml.j2").read_text()
        text = env.from_string(source).render(ctx)
    except OSError as e:
        raise IxfError(f"{name}: cannot read template: {e.strerror}") from None
    except jinja2.TemplateSyntaxError as e:
        raise IxfError(f"{name}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.TemplateError as e:
        raise IxfError(f"{name}: template error: {e}") from None
    doc = _yaml(text, f"{name} (rendered)")
    if not isinstance(doc, dict):
        raise IxfError(f"{name}: the rendered text must be a YAML mapping")
    return doc


def _yaml(text: str, name: str):
    """A YAML document, bounded like a config (ixpect.config.parse_yaml)."""
    try:
        return config.parse_yaml(text, name)[0]
    except config.ConfigError as e:
        raise IxfError("\n  ".join(e.errors)) from None


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`: mappings merge recursively, anything else in `top` replaces."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _Dumper(yaml.SafeDumper):
    """Block YAML, but one line per {ip, mac} entry: readable, and a refresh diffs line by line."""

    def represent_dict(self, data):
        flow = True if set(data) == {"ip", "mac"} else None
        return self.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_Dumper.add_representer(dict, _Dumper.represent_dict)


def _header(ctx: dict, opts: Options, version: str) -> str:
    base = f" over the base config {opts.base}" if opts.base else ""
    return (f"# Rendered by `ixpect ixf render` from the IX-F Member Export (schema {version}) of\n"
            f"# {ctx['ixp']['shortname'] or 'ixp'} (ixp_id {opts.ixp_id}), vlan_id {opts.vlan_id}{base}.\n"
            "# Replaced on every refresh: edit the base config instead.\n")


def _validate_config(text: str, path: Path) -> dict:
    """Exactly what the daemon will do with the file: parse and validate it."""
    try:
        return config.load_text(text, str(path), path.parent)
    except config.ConfigError as e:
        raise IxfError("the rendered config does not validate against schema/ixpect.conf.schema.json:\n  "
                       + "\n  ".join(e.errors)) from None
