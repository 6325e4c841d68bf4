"""The Ansible role, fast: ansible-lint (production profile) and syntax check pass, bad
variables are refused (so is a LAN that takes what another LAN on the host holds), and the
units it renders are the NixOS module's units with exactly the hardening of nix/hardening.json,
named for the LAN (the slow, real-systemd test is test_ansible_e2e.py)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "nix"))
sys.path.insert(0, str(ROOT / "tests" / "ansible"))
import render_units  # noqa: E402
import units  # noqa: E402
from conftest import require_tool

ANSIBLE = ROOT / "ansible"
ROLE = ANSIBLE / "roles" / "ixpect"
BIN = Path(sys.executable).parent
VENV = BIN.parent
ENV = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")}

# The deployments of tests/test_nix.py's INTERFACE_IXF, VXLAN_STATIC and STATIC_USER (here with
# credentials), and one with EVPN.
VARIANTS = {
    "ixf": ('''{ services.ixpect = { enable = true; capture.interface = "enp3s0f1";
               ixf = { url = "https://ix.example.net/ixf.json"; ixpId = 0; vlanId = 2; };
               settings.event.collection_window = "1min"; }; }''',
            {"ixpect_capture_interface": "enp3s0f1", "ixpect_ixf_url": "https://ix.example.net/ixf.json",
             "ixpect_ixf_ixp_id": 0, "ixpect_ixf_vlan_id": 2,
             "ixpect_settings": {"event": {"collection_window": "1min"}}}),
    "vxlan": ('''{ services.ixpect = { enable = true; templateDir = "/etc/ixpect/templates";
                 capture = { netns = "ixp-lan"; vxlan = { vni = 4711; localAddress = "198.51.100.7"; }; };
                 settings.probes.stp.enable = true; }; }''',
              {"ixpect_netns": "ixp-lan", "ixpect_capture_vxlan_vni": 4711,
               "ixpect_capture_vxlan_local": "198.51.100.7", "ixpect_template_dir": "/etc/ixpect/templates",
               "ixpect_settings": {"probes": {"stp": {"enable": True}}}}),
    "evpn": ('''{ services.ixpect = { enable = true; capture.vxlan = { vni = 100; localAddress = "198.51.100.7"; };
                evpn = { enable = true; asn = 65000; neighbors = [ "198.51.100.1" "198.51.100.2" ]; }; }; }''',
             {"ixpect_capture_vxlan_vni": 100, "ixpect_capture_vxlan_local": "198.51.100.7", "ixpect_settings": {},
              "ixpect_evpn": {"asn": 65000, "neighbors": ["198.51.100.1", "198.51.100.2"]}}),
    "static-user": ('''{ services.ixpect = { enable = true; dynamicUser = false; capture.interface = "eth9";
                      credentials = { smtp-pass = "/run/secrets/smtp"; matrix = "/run/agenix/matrix"; }; }; }''',
                    {"ixpect_dynamic_user": False, "ixpect_capture_interface": "eth9", "ixpect_settings": {},
                     "ixpect_credentials": {"smtp-pass": "/run/secrets/smtp", "matrix": "/run/agenix/matrix"}}),
}


def ansible(tool: str, *args: str, cwd: Path = ANSIBLE) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)




# ---------------------------------------------------------------- lint and syntax


def test_ansible_lint_production_profile_passes():
    proc = ansible("ansible-lint", "--profile", "production", "--offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_ansible_lint_catches_what_it_should(tmp_path):
    """The lint test can fail: a copy of the role with one bare module name does not pass."""
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy, symlinks=True, ignore=shutil.ignore_patterns(".cache"))
    (copy / "roles/ixpect/files/hardening.json").unlink()
    shutil.copy(ROOT / "nix" / "hardening.json", copy / "roles/ixpect/files/hardening.json")
    preflight = copy / "roles/ixpect/tasks/preflight.yml"
    preflight.write_text(preflight.read_text().replace("ansible.builtin.assert:", "assert:", 1))
    proc = ansible("ansible-lint", "--profile", "production", "--offline", cwd=copy)
    assert proc.returncode != 0
    assert "fqcn[action-core]" in proc.stdout + proc.stderr


def test_site_playbook_syntax():
    proc = ansible("ansible-playbook", "--syntax-check", "playbooks/site.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: playbooks/site.yml" in proc.stdout


def test_example_inventory_has_one_group_per_pop_and_a_capture_source_per_host():
    proc = ansible("ansible-inventory", "--list")
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    pops = inventory["ixpect"]["children"]
    assert pops and all(p.startswith("pop_") and len(inventory[p]["hosts"]) >= 1 for p in pops)
    for host, hostvars in inventory["_meta"]["hostvars"].items():
        assert ("ixpect_capture_interface" in hostvars) != ("ixpect_capture_vxlan_vni" in hostvars), host
        assert {"ixpect_settings", "ixpect_ixf_url"} <= set(hostvars), host


def test_role_layout():
    for path in ("defaults/main.yml", "meta/argument_specs.yml", "handlers/main.yml", "tasks/main.yml",
                 "tasks/preflight.yml", "tasks/install.yml", "tasks/configure.yml", "tasks/service.yml"):
        assert (ROLE / path).is_file(), path
    # One source of truth: the role reads nix/hardening.json itself, not a copy.
    assert (ROLE / "files/hardening.json").resolve() == ROOT / "nix" / "hardening.json"
    spec = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    assert all(name.startswith("ixpect_") for name in spec)
    assert set(defaults) <= set(spec)
    for name, option in spec.items():
        assert (name in defaults) == ("default" in option), name
        if "default" in option:
            assert defaults[name] == option["default"], name
    assert "default" not in spec["ixpect_settings"] and spec["ixpect_settings"]["required"]


# ---------------------------------------------------------------- bad variables


@pytest.fixture
def localhost_inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"ixpect": {"children": {"pop_test": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    return path


@pytest.mark.parametrize("extra, message", [
    ({"ixpect_capture_interface": "eth1"}, "missing required arguments: ixpect_settings"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": "many"},
     "argument 'ixpect_capture_vxlan_vni' is of type str and we were unable to convert to int"),
    ({"ixpect_settings": {}}, "Set exactly one of ixpect_capture_interface and ixpect_capture_vxlan_vni"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth1", "ixpect_capture_vxlan_vni": 1,
      "ixpect_capture_vxlan_local": "192.0.2.1"}, "Set exactly one of"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": 1}, "Set exactly one of"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth1", "ixpect_ixf_url": "x.json"},
     "ixpect_ixf_url needs ixpect_ixf_ixp_id and ixpect_ixf_vlan_id"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth 1"}, "may only contain letters"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth1", "ixpect_instance": "Jumbo"},
     "ixpect_instance lower-case letters, digits and '-'"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth1", "ixpect_instance": "-x"},
     "ixpect_instance lower-case letters, digits and '-'"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": 16777216, "ixpect_capture_vxlan_local": "192.0.2.1"},
     "the VNI must be 0..16777215"),
    ({"ixpect_settings": {}, "ixpect_capture_interface": "eth1", "ixpect_evpn": {"asn": 65000, "neighbors": ["192.0.2.1"]}},
     "ixpect_evpn advertises the VTEP of a VxLAN capture"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": 1, "ixpect_capture_vxlan_local": "192.0.2.7",
      "ixpect_evpn": {"asn": 65000, "neighbors": ["192.0.2.1\n redistribute connected"]}},
     "ixpect_evpn advertises the VTEP of a VxLAN capture"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": 1, "ixpect_capture_vxlan_local": "192.0.2.7",
      "ixpect_evpn": {"asn": 65000, "neighbors": ["192.0.2.1"], "password": "two words"}},
     "ixpect_evpn advertises the VTEP of a VxLAN capture"),
    ({"ixpect_settings": {}, "ixpect_capture_vxlan_vni": 1, "ixpect_capture_vxlan_local": "192.0.2.7",
      "ixpect_evpn": {"neighbors": ["192.0.2.1"]}}, "missing required arguments: asn found in ixpect_evpn"),
])
def test_bad_variables_are_refused_before_anything_changes(localhost_inventory, extra, message):
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(extra))
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout
    assert "changed=0" in proc.stdout


# These pass the variable checks and fail on what the host says (this machine, in
# --check: the checks run there, nothing is installed).
HOST_CHECKED = {"ixpect_settings": {}, "ixpect_system_packages": [], "ixpect_python": sys.executable,
                "ixpect_ixf_url": "x.json", "ixpect_ixf_ixp_id": 1, "ixpect_ixf_vlan_id": 1}


@pytest.mark.parametrize("extra, message", [
    ({"ixpect_capture_interface": 5}, "ixpect_capture_interface must be a string, not int: quote it"),
    ({"ixpect_capture_interface": "lo", "ixpect_netns": 7}, "ixpect_netns must be a string, not int"),
    ({"ixpect_capture_interface": "lo", "ixpect_ixf_interval": "1 fortnight"},
     'ixpect_ixf_interval "1 fortnight" is not a positive systemd time span'),
    ({"ixpect_capture_interface": "lo", "ixpect_ixf_interval": "0"}, "is not a positive systemd time span"),
    ({"ixpect_capture_interface": "ixt-nosuch9"},
     "interface ixt-nosuch9 exists neither on the host nor in a network namespace; nothing was changed."),
    ({"ixpect_capture_vxlan_vni": 7, "ixpect_capture_vxlan_local": "198.51.100.254"},
     "the VTEP address 198.51.100.254 is not configured on the host; nothing was changed."),
    ({"ixpect_capture_interface": "lo", "ixpect_credentials": {"smtp": "relative/path"}},
     "ixpect_credentials: smtp: the name may only contain"),
])
def test_what_the_host_refuses_stops_before_anything_changes(localhost_inventory, extra, message):
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(HOST_CHECKED | extra))
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout
    assert "changed=0" in proc.stdout
    assert "TASK [ixpect : Install IXpect" not in proc.stdout


@pytest.fixture
def another_lan():
    """Another LAN on this host, as the role leaves it (/etc/ixpect-NAME/lan.json), with
    names nothing else uses; removed afterwards."""
    name = "kt" + secrets.token_hex(4)
    lan = {"name": f"ixpect-{name}", "netns": name, "interface": name, "vni": 16_000_000 + secrets.randbelow(700_000),
           "evpn": {"session": {"hostname": "localhost", "asn": 65000, "router_id": "127.0.0.1", "keepalive": 60,
                                "hold": 180, "password": None, "neighbors": ["192.0.2.1"], "remote_as": "internal"},
                    "vni": {"vni": 1, "rd": None, "route_target": None}}}
    etc = Path("/etc") / lan["name"]
    etc.mkdir()
    (etc / "lan.json").write_text(json.dumps(lan) + "\n")
    yield lan
    shutil.rmtree(etc)


@pytest.mark.needs("root")
@pytest.mark.parametrize("taken", ["netns", "interface", "vni"])
def test_a_lan_that_takes_what_another_holds_is_refused(localhost_inventory, another_lan, taken):
    mine = {"ixpect_instance": "jumbo", "ixpect_netns": "ixpect-kt-jumbo"}
    if taken == "netns":
        mine |= {"ixpect_netns": another_lan["netns"], "ixpect_capture_interface": "lo"}
    elif taken == "interface":
        mine |= {"ixpect_capture_interface": another_lan["interface"]}
    else:
        mine |= {"ixpect_capture_vxlan_vni": another_lan["vni"], "ixpect_capture_vxlan_local": "127.0.0.1"}
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(HOST_CHECKED | mine))
    assert proc.returncode != 0
    what = {"netns": "namespace", "interface": "interface", "vni": "VNI"}[taken]
    assert (f'LAN ixpect-jumbo (ixpect_instance "jumbo") collides with LAN {another_lan["name"]} on this host: '
            f"both use {what} {another_lan[taken]};") in " ".join(proc.stdout.split()), proc.stdout
    assert "changed=0" in proc.stdout


@pytest.mark.needs("root")
def test_lans_with_evpn_must_give_one_session(localhost_inventory, another_lan):
    """FRR is one per host; the other LAN's session with another ASN and hold time is refused,
    the same session on another VNI passes."""
    session = another_lan["evpn"]["session"]
    mine = {"ixpect_instance": "jumbo", "ixpect_capture_vxlan_vni": 2, "ixpect_capture_vxlan_local": "127.0.0.1",
            "ixpect_evpn": {"asn": 65001, "neighbors": session["neighbors"], "hold": 90}}
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(HOST_CHECKED | mine))
    assert proc.returncode != 0 and "changed=0" in proc.stdout
    assert (f"ixpect_evpn of LAN ixpect-jumbo and of LAN {another_lan['name']} must give the same session, "
            "but they differ in asn, hold (router_id") in " ".join(proc.stdout.split()), proc.stdout
    mine["ixpect_evpn"] = {"asn": 65000, "neighbors": session["neighbors"], "hostname": "localhost"}
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(HOST_CHECKED | mine))
    assert re.search(r"TASK \[ixpect : Assert that the LANs with EVPN on the host give one BGP session\][^\n]*\nok:",
                     proc.stdout), proc.stdout


def test_unknown_variables_are_named(localhost_inventory):
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps({"ixpect_settings": {}, "ixpect_capture_interfce": "eth1", "ixpect_stae": "x"}))
    assert "Unknown variable(s), a typo? ixpect_capture_interfce, ixpect_stae" in proc.stdout, proc.stdout


def test_a_good_interval_passes(localhost_inventory):
    """The interval and capture checks pass for what is right (up to the install, which
    --check cannot do on this machine)."""
    proc = ansible("ansible-playbook", "--check", "-i", str(localhost_inventory), "playbooks/site.yml",
                   "-e", json.dumps(HOST_CHECKED | {"ixpect_capture_interface": "lo",
                                                    "ixpect_ixf_interval": "2h 30min"}))
    assert "TASK [ixpect : Assert that the capture source exists]" in proc.stdout
    assert "Unknown variable" not in proc.stdout
    for task in ("Assert that the IX-F interval is a systemd time span", "Assert that the capture source exists"):
        assert re.search(rf"TASK \[ixpect : {task}\][^\n]*\nok:", proc.stdout), proc.stdout


# ---------------------------------------------------------------- the units


def render_role(variables: dict, outdir: Path) -> dict[str, Path]:
    """The role's units (and IX-F scripts) for these variables, with its own templates."""
    outdir.mkdir(parents=True, exist_ok=True)
    extra = variables | {"ixpect_venv": str(VENV), "out": str(outdir), "_ixpect_libexec": str(outdir)}
    proc = ansible("ansible-playbook", str(ROOT / "tests/ansible/render_units.yml"), "-e", json.dumps(extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {p.name: p for p in outdir.iterdir()}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory):
    label = request.param
    return label, render_role(VARIANTS[label][1], tmp_path_factory.mktemp(f"role-{label}"))


def test_units_carry_exactly_the_shared_hardening(variant):
    label, files = variant
    services = {name.removesuffix(".service") for name in files if name.endswith(".service")}
    expected = ({"ixpect-netns", "ixpect-capture", "ixpect-notify"} | ({"ixpect-ixf"} if label == "ixf" else set())
                | ({"ixpect-evpn"} if label == "evpn" else set()))
    assert services == expected
    for unit in services:
        service = units.parse(files[f"{unit}.service"].read_text())["Service"]
        for key, values in units.expected_hardening(unit).items():
            assert service.get(key) == values, (unit, key)
        if unit == "ixpect-netns":
            assert not set(service) & (set(units.HARDENING["sandbox"]) - set(units.HARDENING[unit]))


def test_units_verify(variant):
    label, files = variant
    require_tool("systemd-analyze")
    unit_files = [str(p) for n, p in files.items() if n.endswith((".service", ".timer"))]
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *unit_files], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_a_second_lan_has_its_own_units_and_paths(tmp_path):
    """ixpect_instance: every unit, directory, socket and cross-reference carries the LAN's
    name, nothing points at the first LAN's, and the units verify together."""
    variables = VARIANTS["evpn"][1] | VARIANTS["ixf"][1] | {"ixpect_instance": "jumbo"}
    del variables["ixpect_capture_interface"]
    files = render_role(variables, tmp_path)
    assert set(files) == {"ixpect-jumbo-" + u for u in ("netns.service", "capture.service", "notify.service",
                                                         "ixf.service", "ixf.timer", "evpn.service")} | {
        "ixpect-ixf-render", "ixpect-ixf-reload", "frr.conf"}
    parsed = {name: units.parse(path.read_text()) for name, path in files.items() if name.startswith("ixpect-jumbo-")}
    capture = parsed["ixpect-jumbo-capture.service"]
    assert capture["Unit"]["BindsTo"] == ["ixpect-jumbo-netns.service"]
    assert capture["Unit"]["ConditionPathExists"] == ["/var/lib/ixpect-jumbo/ixpect.conf.yaml"]
    assert capture["Service"]["NetworkNamespacePath"] == ["/run/netns/ixpect-jumbo"]
    assert units.argv(capture["Service"]["ExecStart"][0])[2:] == [
        "--config", "/var/lib/ixpect-jumbo/ixpect.conf.yaml", "--interface", "vxlan100",
        "--socket", "/run/ixpect-jumbo/notify.sock", "--state-dir", "/var/lib/ixpect-jumbo"]
    notify = parsed["ixpect-jumbo-notify.service"]["Service"]
    assert (notify["RuntimeDirectory"], notify["StateDirectory"]) == (["ixpect-jumbo"], ["ixpect-jumbo"])
    ixf = parsed["ixpect-jumbo-ixf.service"]["Service"]
    assert (ixf["RuntimeDirectory"], ixf["CacheDirectory"]) == (["ixpect-jumbo-ixf"], ["ixpect-jumbo"])
    assert parsed["ixpect-jumbo-evpn.service"]["Install"]["WantedBy"] == ["ixpect-jumbo-capture.service"]
    assert "--name ixpect-jumbo " in parsed["ixpect-jumbo-netns.service"]["Service"]["ExecStart"][0]
    reload = files["ixpect-ixf-reload"].read_text()
    assert "/run/ixpect-jumbo-ixf/changed" in reload and "ixpect-jumbo-capture.service ixpect-jumbo-notify.service" in reload
    first = re.compile(r"\bixpect-(netns|capture|notify|ixf|evpn)\b(?!-re)|/(run|var/lib|var/cache|etc)/ixpect\b(?!-)")
    for name, path in files.items():
        assert not first.search(path.read_text()), (name, first.search(path.read_text()))
    require_tool("systemd-analyze")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(files[n]) for n in parsed)],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def comparable(path: Path, scripts: dict[str, str]) -> dict:
    """A unit as data with the parts that must differ between NixOS and Ansible named."""
    parsed = units.parse(path.read_text())
    parsed["Unit"].pop("X-Reload-Triggers", None)  # NixOS reloads on config change; the role's handlers do
    if "Service" in parsed:  # NixOS sets PATH from `path`; Debian's default PATH has /usr/sbin (nft)
        env = [e for e in parsed["Service"].pop("Environment", []) if not e.strip('"').startswith("PATH=")]
        if env:
            parsed["Service"]["Environment"] = env
    for key, values in parsed.get("Service", {}).items():
        if key.startswith("Exec"):
            argvs = [units.argv(v.lstrip("+")) for v in values]
            for a in argvs:  # store path vs libexec path: compared by behaviour below
                if Path(a[0]).name in scripts:
                    a[0] = Path(a[0]).name
            parsed["Service"][key] = [(v.startswith("+"), a) for v, a in zip(values, argvs)]
    return parsed


def test_units_are_the_nixos_modules_units(variant, tmp_path):
    """Directive by directive, the role writes what nix/module.nix makes NixOS write."""
    require_tool("nix-instantiate")
    label, files = variant
    nix = render_units.render(VARIANTS[label][0], str(VENV), tmp_path / "nix")
    assert sorted(n for n in files if n.endswith((".service", ".timer"))) == sorted(nix)
    scripts = {n: p for n, p in files.items() if "." not in n}
    for name in nix:
        assert comparable(files[name], scripts) == comparable(nix[name], scripts), name
    if label == "ixf":
        for i, (result, first) in enumerate([("changed", False), ("unchanged", False), ("changed", True),
                                             (None, True), (None, False)]):
            role = render_units.run_ixf_scripts(files["ixpect-capture.service"].parent, tmp_path / f"role{i}",
                                                str(VENV), result, first)
            store = render_units.run_ixf_scripts(nix["ixpect-capture.service"].parent / "store", tmp_path / f"nix{i}",
                                                 str(VENV), result, first)
            assert "--base /etc/ixpect/ixpect-base.conf.yaml --output" in role[1][0]
            base = re.compile(r"--base \S+")  # a store path on NixOS
            assert (role[0], [base.sub("--base B", c) for c in role[1]]) == (
                store[0], [base.sub("--base B", c) for c in store[1]])
