"""The `ixpect` command line: the whole CLI contract of DESIGN.md in one place.

Subcommand implementations are imported lazily so that `ixpect run` does not pay
for requests, jsonschema or pyroute2 when it does not need them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ixpect import __version__

DEFAULT_CONFIG = "/etc/ixpect/ixpect.conf.yaml"


class _EnvDefaults(argparse.ArgumentParser):
    """An ArgumentParser whose every `--flag` falls back to `IXPECT_<FLAG>`."""

    def add_argument(self, *names, **kwargs):
        long = next((n for n in names if n.startswith("--")), None)
        if long and long != "--help":
            var = "IXPECT_" + long[2:].upper().replace("-", "_")
            value = os.environ.get(var)
            if value is not None:
                if kwargs.get("action") == "store_true":
                    kwargs["default"] = value.lower() in ("1", "true", "yes", "on")
                elif kwargs.get("nargs") in ("+", "*"):
                    kwargs["default"] = value.split()
                    kwargs["nargs"] = "*"
                else:
                    kwargs["default"] = value
                kwargs.pop("required", None)
        return super().add_argument(*names, **kwargs)


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")


def _netns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--netns", help="network namespace the capture interface lives in")


def _user(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="when started as root: become this user once the capture socket is open")


def parser() -> argparse.ArgumentParser:
    top = _EnvDefaults(prog="ixpect", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"ixpect {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_EnvDefaults)

    run = sub.add_parser("run", help="capture, probe and notify in one process")
    _config(run)
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--interface", help="capture from this interface (AF_PACKET)")
    src.add_argument("--vxlan", metavar="[ADDR]:PORT", help="receive VxLAN-encapsulated frames on this UDP address")
    src.add_argument("--pcap", nargs="+", metavar="FILE", help="replay pcap/pcapng files (or a pipe; - is standard input), flush, exit")
    _netns(run)
    run.add_argument("--vni", type=int, help="accept only this VNI (with --vxlan)")
    run.add_argument("--jsonl", metavar="PATH|-", help="write every event as one JSON line")
    run.add_argument("--state-dir", help="directory for learned state and the event spool")
    _user(run)
    run.set_defaults(impl="ixpect.daemon:run")

    cap = sub.add_parser("capture", help="capture and probe; hand events to `ixpect notify`")
    _config(cap)
    cap.add_argument("--interface", required=True)
    _netns(cap)
    cap.add_argument("--socket", required=True, help="unix socket path of `ixpect notify`")
    cap.add_argument("--state-dir", help="directory for learned state and the events notify has not yet acknowledged")
    _user(cap)
    cap.set_defaults(impl="ixpect.daemon:capture")

    notify = sub.add_parser("notify", help="batch events from `ixpect capture` and notify")
    _config(notify)
    notify.add_argument("--socket", required=True, help="unix socket path to listen on")
    notify.add_argument("--state-dir", help="directory for the event spool")
    notify.set_defaults(impl="ixpect.daemon:notify")

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.add_argument("--skip-files", action="store_true",
                       help="do not read the secret files and the member table the config names: "
                            "for a build sandbox or a copy of the config where they are not present")
    check.set_defaults(impl="ixpect.config:check_config_main")

    ixf = sub.add_parser("ixf", help="IX-F Member Export tools")
    ixf_sub = ixf.add_subparsers(dest="ixf_command", required=True, parser_class=_EnvDefaults)
    ixf_list = ixf_sub.add_parser("list", help="list infrastructures and VLANs of an export")
    ixf_list.add_argument("--source", required=True, metavar="URL|FILE")
    ixf_list.add_argument("--cache-dir", help="keep the export here and fetch it conditionally (ETag)")
    ixf_list.set_defaults(impl="ixpect.ixf.cli:list_main")
    render = ixf_sub.add_parser("render", help="render a config from an export")
    render.add_argument("--source", required=True, metavar="URL|FILE")
    render.add_argument("--ixp-id", type=int, required=True)
    render.add_argument("--vlan-id", type=int, required=True)
    render.add_argument("--base", metavar="FILE", help="operator's config merged under the rendered keys")
    render.add_argument("--template", metavar="FILE", help="jinja2 template replacing the built-in one")
    render.add_argument("-o", "--output", required=True, metavar="OUT")
    render.add_argument("--strict", action="store_true", help="treat every schema warning as an error")
    render.add_argument("--force", action="store_true", help="write even if more than --max-drop static entries go")
    render.add_argument("--max-drop", type=float, default=0.3, metavar="SHARE",
                        help="refuse a refresh dropping more than this share of static entries (default %(default)s)")
    render.add_argument("--cache-dir", help="keep the export here and fetch it conditionally (ETag)")
    render.set_defaults(impl="ixpect.ixf.cli:render_main")

    ns = sub.add_parser("netns", help="set up or tear down the isolated capture namespace")
    ns.add_argument("action", choices=["up", "down"])
    ns.add_argument("--name", default="ixpect")
    via = ns.add_mutually_exclusive_group(required=True)
    via.add_argument("--interface", help="physical interface to move into the namespace")
    via.add_argument("--vxlan-vni", type=int, help="create a kernel vxlan device with this VNI")
    ns.add_argument("--vxlan-local", help="local VTEP address (with --vxlan-vni)")
    ns.add_argument("--vxlan-port", type=int, default=4789)
    ns.set_defaults(impl="ixpect.netns:main")

    evpn = sub.add_parser("evpn", help="add or remove the device FRR advertises the VTEP of a VNI from")
    evpn.add_argument("action", choices=["up", "down"])
    evpn.add_argument("--vni", type=int, action="append", required=True, help="VNI (repeatable)")
    evpn.add_argument("--local", help="local VTEP address, as the capture device's (with up)")
    evpn.add_argument("--port", type=int, help="UDP port of the advertisement device, not the capture's (default 4788)")
    evpn.set_defaults(impl="ixpect.evpn:main")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    module, _, func = args.impl.partition(":")
    return getattr(importlib.import_module(module), func)(args)


if __name__ == "__main__":
    sys.exit(main())
