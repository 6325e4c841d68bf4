# Shared part of the IXpect VM test scripts. The NixOS test driver provides the
# machines (monitor, peer1, peer2, observer, mail, ixf, ...) as globals.
import json

PEERS = {"peer1": (64501, "Peer One Networks"), "peer2": (64502, "Peer Two Transit")}
CAPTURE_NETNS = "ixpect"


def lan_facts(peer):
    """MAC, IPv4 and IPv6 of a peer's port on the LAN, as the VM really has them."""
    mac = peer.succeed("cat /sys/class/net/eth1/address").strip()
    ip4 = peer.succeed("ip -4 -o addr show dev eth1").split()[3].split("/")[0]
    ip6 = peer.succeed("ip -6 -o addr show dev eth1 scope global").split()[3].split("/")[0]
    return mac, ip4, ip6


def ixf_export(facts, extra_members=()):
    members = [
        {
            "asnum": asn,
            "name": name,
            "member_type": "peering",
            "connection_list": [
                {
                    "ixp_id": 1,
                    "state": "active",
                    "if_list": [{"switch_id": 1, "if_speed": 10000}],
                    "vlan_list": [
                        {
                            "vlan_id": 2,
                            "ipv4": {"address": ip4, "mac_addresses": [mac]},
                            "ipv6": {"address": ip6, "mac_addresses": [mac]},
                        }
                    ],
                }
            ],
        }
        for (asn, name), (mac, ip4, ip6) in [(PEERS[p], facts[p]) for p in sorted(facts)]
    ]
    return {
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00Z",
        "ixp_list": [
            {
                "shortname": "TEST-IX",
                "ixp_id": 1,
                "ixf_id": 999,
                "vlan": [
                    {
                        "id": 2,
                        "name": "peering",
                        "ipv4": {"prefix": "192.168.2.0", "mask_length": 24},
                        "ipv6": {"prefix": "2001:db8:2::", "mask_length": 64},
                    }
                ],
                "switch": [{"id": 1, "name": "sw1"}],
            }
        ],
        "member_list": members + list(extra_members),
    }


def publish(export):
    ixf.succeed(f"cat > /srv/ixf/export.json.new <<'EOF'\n{json.dumps(export)}\nEOF")
    ixf.succeed("mv /srv/ixf/export.json.new /srv/ixf/export.json")


def start_lan():
    """Boot everything but the monitor, publish the export, start recording the LAN."""
    for m in (peer1, peer2, observer, mail, ixf):
        m.start()
    for m in (peer1, peer2, observer, mail, ixf):
        m.wait_for_unit("multi-user.target")
    mail.wait_for_unit("mail-sink.service")
    ixf.wait_for_unit("ixf-export.service")
    facts = {"peer1": lan_facts(peer1), "peer2": lan_facts(peer2)}
    publish(ixf_export(facts))
    observer.succeed(
        "sysctl -w net.ipv6.conf.lan.disable_ipv6=1",
        "ip link set lan arp off up",
        "systemd-run --unit=lan-record tcpdump -i lan -U -Z root -w /tmp/lan.pcap",
    )
    observer.wait_until_succeeds("journalctl -u lan-record -o cat | grep -q 'listening on lan'")
    return facts


def check_monitor(capture_if):
    """Isolation and dropped privileges, checked on the running VM."""
    monitor.wait_for_unit("ixpect-netns.service")
    monitor.wait_for_unit("ixpect-notify.service")
    monitor.wait_for_unit("ixpect-capture.service")
    monitor.fail(f"ip link show {capture_if}")  # gone from the host namespace
    ns = f"ip netns exec {CAPTURE_NETNS} "
    addrs = monitor.succeed(ns + f"ip -o addr show dev {capture_if}")
    assert "inet" not in addrs, f"capture interface has an address: {addrs}"
    flags = monitor.succeed(ns + f"ip -o link show dev {capture_if}")
    assert "NOARP" in flags and "PROMISC" in flags, flags
    assert monitor.succeed(ns + "sysctl -n net.ipv6.conf.all.disable_ipv6").strip() == "1"
    # The bounding set is the guarantee; capture may drop CAP_NET_RAW once its socket is open.
    for unit, allowed in (("ixpect-capture", 1 << 13), ("ixpect-notify", 0)):
        pid = monitor.succeed(f"systemctl show -P MainPID {unit}.service").strip()
        status = monitor.succeed(f"grep ^Cap /proc/{pid}/status").splitlines()
        caps = {key: value for key, value in (ln.split(":\t") for ln in status)}
        assert int(caps["CapBnd"], 16) == allowed, f"{unit}: {caps}"
        for kind in ("CapEff", "CapPrm", "CapAmb"):
            assert int(caps[kind], 16) & ~allowed == 0, f"{unit}: {caps}"
    netns_of = {unit: monitor.succeed(f"readlink /proc/$(systemctl show -P MainPID {unit}.service)/ns/net")
                for unit in ("ixpect-capture", "ixpect-notify")}
    assert netns_of["ixpect-capture"] == monitor.succeed(ns + "readlink /proc/self/ns/net")
    assert netns_of["ixpect-notify"] == monitor.succeed("readlink /proc/1/ns/net")
    # The same exposure bound CI checks offline, here on the real unit.
    monitor.succeed("systemd-analyze security --threshold=20 ixpect-capture.service")
    return monitor.succeed(ns + f"cat /sys/class/net/{capture_if}/address").strip()


def expect_mail(event, member=None):
    args = f"--expect {event}" + (f" '{member}'" if member else "")
    mail.wait_until_succeeds(f"mail-dump {args}", timeout=120)


def run_violations(facts):
    """Each scripted violation must arrive as a mail naming the member who sent it."""
    monitor.succeed("systemctl kill --signal=SIGUSR1 ixpect-capture.service")
    expect_mail("IXPECT_TEST")
    peer2.succeed(f"lan-violate arp-spoof --claim {facts['peer1'][1]}")
    peer1.succeed(f"lan-violate arp-bogon --claim {facts['peer2'][1]}")
    peer1.succeed("lan-violate router-advertisement")
    peer2.succeed("lan-violate stp")
    peer1.succeed("lan-violate ether-type")
    for event, sender in (
        ("ARP_NEIGHBOR_SPOOFED_STATIC", "peer2"),
        ("ARP_BOGON_SOURCE", "peer1"),
        ("IPV6_ROUTER_ADVERTISEMENT", "peer1"),
        ("STP_PACKET_FOUND", "peer2"),
        ("ETHER_TYPE_VIOLATION", "peer1"),
    ):
        expect_mail(event, PEERS[sender][1])


def reloads():
    return int(monitor.succeed("journalctl -b -u ixpect-capture.service -g '^Reload' -o cat | wc -l"))


def check_ixf_refresh(facts):
    """An unchanged export leaves the daemons alone; a changed one reloads them."""
    before = reloads()
    monitor.succeed("systemctl start ixpect-ixf.service")
    assert reloads() == before, "reloaded although the export did not change"
    newcomer = {
        "asnum": 64503,
        "name": "Peer Three Newcomer",
        "connection_list": [
            {
                "ixp_id": 1,
                "vlan_list": [
                    {"vlan_id": 2, "ipv4": {"address": "192.168.2.203", "mac_addresses": ["02:00:00:00:02:03"]}}
                ],
            }
        ],
    }
    publish(ixf_export(facts, [newcomer]))
    monitor.succeed("systemctl start ixpect-ixf.service")
    monitor.wait_until_succeeds(f"test $(journalctl -b -u ixpect-capture.service -g '^Reload' -o cat | wc -l) -gt {before}")
    monitor.succeed("grep -q 02:00:00:00:02:03 /etc/ixpect/ixpect.conf.yaml")
    monitor.succeed("systemctl is-active ixpect-capture.service ixpect-notify.service")


def check_silence(monitor_mac, facts):
    """The observer recorded the LAN since before the monitor booted: not one frame from it."""
    observer.succeed("systemctl stop lan-record.service")
    seen = observer.succeed(f"tcpdump -r /tmp/lan.pcap -nn -e ether src {facts['peer1'][0]} | wc -l")
    assert int(seen) > 0, "the observer recorded nothing; the silence check would prove nothing"
    sent = observer.succeed(f"tcpdump -r /tmp/lan.pcap -nn -e ether src {monitor_mac}")
    assert sent.strip() == "", f"the monitor sent frames into the LAN:\n{sent}"
