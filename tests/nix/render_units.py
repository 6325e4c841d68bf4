"""Render nix/module.nix's systemd units without nixpkgs, for `systemd-analyze`.

harness.nix evaluates the module against a small stand-in for nixpkgs' lib; this turns
the result into unit files the way nixos/lib/systemd-lib.nix writes them (lists become
repeated lines, booleans true/false, Wants=/After= space-joined), adds the [Install]
section that NixOS expresses as symlinks instead, and copies the store files the units
that Exec*= lines run into a directory of its own (and the system profile's ixpect
to the package), so that `systemd-analyze verify` finds every executable; `build` runs
a recorded runCommand (the config check).

    python tests/nix/render_units.py DEFINITIONS OUTDIR   # e.g. '{ services.ixpect = {...}; }'
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).with_name("harness.nix")
#: the system profile, where NixOS links every package of environment.systemPackages
PROFILE = "/run/current-system/sw/"
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s\"'/;]+")
DEPENDENCIES = {"wants": "Wants", "requires": "Requires", "bindsTo": "BindsTo", "partOf": "PartOf",
                "after": "After", "before": "Before"}
TRIGGERS = {"restartTriggers": "X-Restart-Triggers", "reloadTriggers": "X-Reload-Triggers"}


class NixError(Exception):
    """Evaluation or stub build failed; the message is Nix's or the builder's output."""


def evaluate(definitions: str, package: str) -> dict:
    """The module's services, timers, /etc entries and users for these definitions."""
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", str(HARNESS),
         "--arg", "definitions", definitions, "--argstr", "package", package],
        capture_output=True, text=True)
    if proc.returncode:
        raise NixError(proc.stderr.strip())
    return json.loads(proc.stdout)


def _value(v) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def _section(name: str, directives: dict) -> str:
    lines = [f"[{name}]"]
    for key, v in directives.items():
        lines += [f"{key}={_value(item)}" for item in (v if isinstance(v, list) else [v])]
    return "\n".join(lines) + "\n"


def unit_text(kind: str, unit: dict) -> str:
    head = {"Description": unit["description"]} if "description" in unit else {}
    for attrs in (DEPENDENCIES, TRIGGERS):
        head |= {directive: " ".join(unit[key]) for key, directive in attrs.items() if unit.get(key)}
    head |= unit.get("unitConfig", {})
    if kind == "service":
        env = unit.get("environment", {})
        if unit.get("path"):  # what NixOS makes of `path` (its own defaults left out)
            env = env | {"PATH": ":".join(f"{p}/{d}" for d in ("bin", "sbin") for p in unit["path"])}
        body = {"Environment": [json.dumps(f"{k}={v}") for k, v in env.items()]}
        text = _section("Unit", head) + "\n" + _section("Service", body | unit.get("serviceConfig", {}))
    else:
        text = _section("Unit", head) + "\n" + _section("Timer", unit.get("timerConfig", {}))
    if unit.get("wantedBy"):
        text += "\n" + _section("Install", {"WantedBy": " ".join(unit["wantedBy"])})
    return text


def build(recipe_path: str, store: Path) -> Path:
    """Run a recorded runCommand: bash -eu, PATH from its nativeBuildInputs, $out in store."""
    recipe = json.loads(Path(recipe_path).read_text())
    out = store / recipe["name"]
    env = {"PATH": ":".join(recipe["path"] + ["/usr/bin", "/bin"]), "out": str(out)}
    proc = subprocess.run(["bash", "-eu", "-c", recipe["script"]], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise NixError(f"builder for {recipe['name']} failed:\n{proc.stdout}{proc.stderr}")
    return out


def materialize(path: str, store: Path) -> Path:
    """A local, runnable copy of one store object (scripts are syntax-checked like nixpkgs does)."""
    if path.endswith(".stub-build"):
        return build(path, store)
    dst = store / Path(path).name.split("-", 1)[1]
    shutil.copyfile(path, dst)
    if dst.read_bytes().startswith(b"#!"):
        dst.chmod(0o755)
        proc = subprocess.run(["bash", "-n", str(dst)], capture_output=True, text=True)
        if proc.returncode:
            raise NixError(f"{dst.name}: {proc.stderr}")
    return dst


def render(definitions: str, package: str, outdir: Path) -> dict[str, Path]:
    """Write every unit to outdir (store copies under outdir/store); returns name -> file."""
    result = evaluate(definitions, package)
    store = outdir / "store"
    store.mkdir(parents=True, exist_ok=True)

    def runnable(line: str) -> str:  # Exec*= lines only: triggers stay opaque store paths
        if not line.startswith("Exec"):
            return line
        line = line.replace(PROFILE, package.rstrip("/") + "/")  # the package is all the profile holds here
        return STORE_PATH.sub(lambda m: str(materialize(m.group(0), store)), line)

    files = {}
    for kind, units in (("service", result["services"]), ("timer", result["timers"])):
        for name, unit in units.items():
            path = outdir / f"{name}.{kind}"
            path.write_text("\n".join(map(runnable, unit_text(kind, unit).split("\n"))))
            files[path.name] = path
    return files


def run_ixf_scripts(directory: Path, workdir: Path, venv: str, result: str | None,
                    first: bool, lan: str = "ixpect") -> tuple[int, list[str]]:
    """Run the IX-F render script of the LAN whose units are `lan`-* (ixpect, or
    ixpect-<instance>), then (as systemd does after a success) its reload script, with
    `ixpect` (printing `result`, or failing when None) and `systemctl` replaced by
    recorders and the rendered config existing unless `first`; (exit status of the
    render, the calls with `workdir` written WORKDIR)."""
    log, fake, flag, state = workdir / "calls", workdir / "bin", workdir / "run", workdir / "state"
    for d in (fake, flag, state):
        d.mkdir(parents=True, exist_ok=True)
    if not first:
        (state / "ixpect.conf.yaml").touch()
    outcome = f"echo {result}" if result else "exit 1"
    (fake / "ixpect").write_text(f"#!/bin/sh\necho ixpect \"$@\" >> {log}\n{outcome}\n")
    (fake / "systemctl").write_text(f"#!/bin/sh\necho systemctl \"$@\" >> {log}\n")
    for tool in ("ixpect", "systemctl"):
        (fake / tool).chmod(0o755)
    status = 0
    for script in (f"{lan}-ixf-render", f"{lan}-ixf-reload"):
        text = (directory / script).read_text().replace(f"{venv}/bin/ixpect", str(fake / "ixpect"))
        text = text.replace("/usr/bin/systemctl", str(fake / "systemctl")).replace(f"/run/{lan}-ixf", str(flag))
        text = text.replace(f"/var/lib/{lan}/ixpect.conf.yaml", str(state / "ixpect.conf.yaml"))
        status = subprocess.run(["sh", "-c", text], capture_output=True).returncode
        if status:
            break
    return status, log.read_text().replace(str(workdir), "WORKDIR").splitlines()


if __name__ == "__main__":
    venv = Path(sys.executable).parent.parent
    for unit in render(sys.argv[1], str(venv), Path(sys.argv[2])).values():
        print(unit)
