"""Debian's FRR (zebra and bgpd) in a network namespace, for the EVPN tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import wait_for
from livenet import stop

FRR = Path("/usr/lib/frr")


def sh(*argv, ns: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    done = subprocess.run([str(a) for a in cmd], capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stderr}"
    return done.stdout


def reflector_config(hostname: str, router_id: str, asn: int, client: str, vnis: bool = False) -> str:
    """An iBGP l2vpn evpn route reflector for `client`, with 1/3 s timers; with `vnis` it is
    also a leaf that originates its own VNIs."""
    originate = "  advertise-all-vni\n" if vnis else ""
    return f"""\
frr defaults traditional
hostname {hostname}
router bgp {asn}
 bgp router-id {router_id}
 no bgp default ipv4-unicast
 timers bgp 1 3
 neighbor {client} remote-as internal
 address-family l2vpn evpn
  neighbor {client} activate
  neighbor {client} route-reflector-client
{originate} exit-address-family
exit
"""


class Frr:
    """zebra and bgpd of one FRR instance in namespace `ns`, with config, pid, vty and
    zserv paths in a directory of their own (so that several run side by side), stopped
    by `stop()`. They run as FRR's user, as packaged: the directory is theirs."""

    def __init__(self, ns: str, config: str):
        self.ns = ns
        self.run = run = Path(tempfile.mkdtemp(prefix="ixpect-frr-"))
        shutil.chown(run, "frr", "frr")
        (run / "empty.conf").touch()
        self.procs: dict[str, subprocess.Popen] = {}
        try:
            self._start(config)
        except BaseException:
            self.stop()
            raise

    def _start(self, config: str) -> None:
        run, ns = self.run, self.ns
        for daemon in ("zebra", "bgpd"):
            with open(run / f"{daemon}.log", "w") as log:
                self.procs[daemon] = subprocess.Popen(
                    ["ip", "netns", "exec", ns, FRR / daemon, "-f", run / "empty.conf", "-i", run / f"{daemon}.pid",
                     "-z", run / "zserv.api", "--vty_socket", run, "-A", "127.0.0.1", "-P", "0"],
                    stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: (run / f"{daemon}.vty").exists() or self.procs[daemon].poll() is not None,
                     what=f"{daemon} in {ns}")
            assert self.procs[daemon].poll() is None, (run / f"{daemon}.log").read_text()
        # as frrinit.sh does with the integrated config: vtysh hands each daemon its part
        (run / "frr.conf").write_text(config)
        sh("vtysh", "--vty_socket", run, "-f", run / "frr.conf", ns=ns)

    def vtysh(self, *commands: str) -> str:
        return sh("vtysh", "--vty_socket", self.run, *[a for c in commands for a in ("-c", c)], ns=self.ns)

    def json(self, command: str):
        return json.loads(self.vtysh(command + " json"))

    def evpn_routes_from(self, peer: str) -> list[tuple[str, str]]:
        """(prefix, extended communities) of every EVPN path received from `peer`, sorted."""
        routes = self.json("show bgp l2vpn evpn route")
        return sorted((prefix, path["extendedCommunity"]["string"])
                      for rd in routes.values() if isinstance(rd, dict)
                      for prefix, entry in rd.items() if isinstance(entry, dict)
                      for paths in entry["paths"] for path in paths if path["peerId"] == peer)

    def stop_bgpd(self) -> None:
        stop(self.procs["bgpd"])

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            stop(proc)
        shutil.rmtree(self.run)
