"""The `ixpect` command line: every subcommand, option and environment variable.

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
TRUE = ("1", "true", "yes", "on")


def env_var(flag: str) -> str:
    """`--state-dir` -> `IXPECT_STATE_DIR`."""
    return "IXPECT_" + flag[2:].upper().replace("-", "_")


class _EnvDefaults(argparse.ArgumentParser):
    """An ArgumentParser whose every `--flag` not given on the command line is taken
    from `IXPECT_<FLAG>` if that is set, exactly as if it had been given (so that it
    satisfies a required option or group, and is checked like one)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def _add_action(self, action):
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long and action.help is not argparse.SUPPRESS and long not in ("--help", "--version"):
            action.help = f"{action.help or ''} [${env_var(long)}]".lstrip()
        return super()._add_action(action)

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        taken = {a for a in self._actions if given & set(a.option_strings)}
        for group in self._mutually_exclusive_groups:
            if taken & set(group._group_actions):
                taken.update(group._group_actions)  # the command line chose within the group
        from_env = []
        for action in self._actions:
            long = next((o for o in action.option_strings if o.startswith("--")), None)
            value = os.environ.get(env_var(long)) if long and long not in ("--help", "--version") else None
            if value is None or action in taken:
                continue
            if action.nargs == 0:  # store_true
                from_env += [long] if value.lower() in TRUE else []
            else:
                from_env += [long, *(value.split() if action.nargs in ("+", "*") else [value])]
            for group in self._mutually_exclusive_groups:
                if action in group._group_actions:
                    taken.update(group._group_actions)  # the first variable set in a group wins
        return super().parse_known_args(from_env + args, namespace)


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")


def _log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log this level and above (default %(default)s)")


def _netns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--netns", metavar="NS", help="network namespace the capture interface lives in")


def _state_dir(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--state-dir", metavar="DIR", help=f"directory for {what}; created if missing, "
                   "it must be writable by the user the process runs as (--user)")


def _user(p: argparse.ArgumentParser, when: str = "once the capture socket is open") -> None:
    p.add_argument("--user", help=f"when started as root: become this user {when}, with no capabilities")


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="URL|FILE",
                   help="the IX-F Member Export: an https:// URL or a local file")
    p.add_argument("--cache-dir", metavar="DIR", help="keep the export here and fetch it conditionally (ETag)")


def parser() -> argparse.ArgumentParser:
    top = _EnvDefaults(prog="ixpect", description="IXpect: a passive monitor of an Internet Exchange's peering LAN.",
                       epilog="Every --flag also reads the environment variable shown in brackets, "
                              "when it is not given on the command line.")
    top.add_argument("--version", action="version", version=f"ixpect {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_EnvDefaults)

    run = sub.add_parser("run", help="capture, probe and notify in one process")
    _config(run)
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--interface", metavar="IF", help="capture from this interface (AF_PACKET)")
    src.add_argument("--vxlan", metavar="[ADDR]:PORT", help="receive VxLAN-encapsulated frames on this UDP address")
    src.add_argument("--pcap", nargs="+", metavar="FILE", help="replay pcap/pcapng files (or a pipe; - is standard input), flush, exit")
    _netns(run)
    run.add_argument("--vni", type=int, help="accept only this VNI (with --vxlan)")
    run.add_argument("--jsonl", metavar="PATH|-", help="write every event as one JSON line")
    _state_dir(run, "learned state and the event spool")
    _user(run)
    _log_level(run)
    run.set_defaults(impl="ixpect.daemon:run")

    cap = sub.add_parser("capture", help="capture and probe; hand events to `ixpect notify`")
    _config(cap)
    cap.add_argument("--interface", required=True, metavar="IF", help="capture from this interface (AF_PACKET)")
    _netns(cap)
    cap.add_argument("--socket", required=True, metavar="PATH", help="unix socket path of `ixpect notify`")
    _state_dir(cap, "learned state and the events notify has not yet acknowledged")
    _user(cap)
    _log_level(cap)
    cap.set_defaults(impl="ixpect.daemon:capture")

    notify = sub.add_parser("notify", help="batch events from `ixpect capture` and notify")
    _config(notify)
    notify.add_argument("--socket", required=True, metavar="PATH",
                        help="unix socket path to listen on; its directory must be writable by this user")
    _state_dir(notify, "the event spool")
    _user(notify, "once the config is read")
    _log_level(notify)
    notify.set_defaults(impl="ixpect.daemon:notify")

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", metavar="FILE", help="the config file; exit 0 if valid, else 1 with every error")
    check.add_argument("--skip-files", action="store_true",
                       help="do not read the secret files and the member table the config names: "
                            "for a build sandbox or a copy of the config where they are not present")
    check.set_defaults(impl="ixpect.config:check_config_main")

    ixf = sub.add_parser("ixf", help="IX-F Member Export tools")
    ixf_sub = ixf.add_subparsers(dest="ixf_command", required=True, parser_class=_EnvDefaults)
    ixf_list = ixf_sub.add_parser("list", help="list infrastructures and VLANs of an export")
    _source(ixf_list)
    ixf_list.set_defaults(impl="ixpect.ixf.cli:list_main")
    render = ixf_sub.add_parser("render", help="render a config from an export")
    _source(render)
    render.add_argument("--ixp-id", type=int, required=True, metavar="N",
                        help="the infrastructure to monitor (`ixpect ixf list` shows the ids)")
    render.add_argument("--vlan-id", type=int, required=True, metavar="M", help="its peering LAN's VLAN id")
    render.add_argument("--base", metavar="FILE", help="operator's config merged under the rendered keys")
    render.add_argument("--template", metavar="FILE", help="jinja2 template replacing the built-in one")
    render.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the config to write (atomically; the member table goes beside it)")
    render.add_argument("--strict", action="store_true", help="treat every schema warning as an error")
    render.add_argument("--force", action="store_true", help="write even if more than --max-drop static entries go")
    render.add_argument("--max-drop", type=float, default=0.3, metavar="SHARE",
                        help="refuse a refresh dropping more than this share of static entries (default %(default)s)")
    render.add_argument("--dry-run", action="store_true",
                        help="write nothing: print what would change as a diff, then changed/unchanged")
    render.set_defaults(impl="ixpect.ixf.cli:render_main")

    ns = sub.add_parser("netns", help="set up or tear down the isolated capture namespace")
    ns.add_argument("action", choices=["up", "down"], help="create (idempotently) or remove the namespace")
    ns.add_argument("--name", default="ixpect", metavar="NS", help="the namespace (default %(default)s)")
    via = ns.add_mutually_exclusive_group(required=True)
    via.add_argument("--interface", metavar="IF", help="physical interface to move into the namespace")
    via.add_argument("--vxlan-vni", type=int, metavar="N", help="create a kernel vxlan device with this VNI")
    ns.add_argument("--vxlan-local", metavar="ADDR", help="local VTEP address (with --vxlan-vni)")
    ns.add_argument("--vxlan-port", type=int, default=4789, metavar="PORT",
                    help="UDP port of the vxlan device (default %(default)s)")
    _log_level(ns)
    ns.set_defaults(impl="ixpect.netns:main")

    evpn = sub.add_parser("evpn", help="add or remove the device FRR advertises the VTEP of a VNI from")
    evpn.add_argument("action", choices=["up", "down"], help="add (idempotently) or remove the device")
    evpn.add_argument("--vni", type=int, action="append", required=True, metavar="N", help="VNI (repeatable)")
    evpn.add_argument("--local", metavar="ADDR", help="local VTEP address, as the capture device's (with up)")
    evpn.add_argument("--port", type=int, metavar="PORT",
                      help="UDP port of the advertisement device, not the capture's (default 4788)")
    _log_level(evpn)
    evpn.set_defaults(impl="ixpect.evpn:main")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    module, _, func = args.impl.partition(":")
    return getattr(importlib.import_module(module), func)(args)


if __name__ == "__main__":
    sys.exit(main())
