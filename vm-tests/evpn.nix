# The monitor joins the flood lists of two LANs by itself: the switch is a fabric leaf
# running FRR (bgpd, advertise-all-vni, route reflector for the monitor) with no static
# flood entry, bridging the peering LAN into VNI 100 and a jumbo LAN (vlan 3, one member)
# into VNI 200; the monitor captures the first as services.ixpect and the second as
# services.ixpect.instances.jumbo, and one FRR advertises its VTEP's type-3 route for each.
{ module }:
let
  lan = import ./lan.nix { inherit module; };
in
{
  name = "ixpect-evpn";

  nodes = lan.nodes // {
    # the jumbo LAN's member
    jumbo =
      { lib, ... }:
      {
        imports = [ lan.nodes.peer1 ];
        virtualisation.vlans = lib.mkForce [ 3 ];
      };

    switch =
      { config, ... }:
      {
        virtualisation.vlans = [ 1 ];
        virtualisation.interfaces.lan = {
          vlan = 2;
          assignIP = false;
        };
        virtualisation.interfaces.jumbo = {
          vlan = 3;
          assignIP = false;
        };
        networking.useDHCP = false;
        networking.firewall.allowedTCPPorts = [ 179 ];
        networking.firewall.allowedUDPPorts = [ 4789 ];
        services.frr = {
          bgpd.enable = true;
          config = ''
            router bgp 65000
             bgp router-id ${config.networking.primaryIPAddress}
             no bgp default ipv4-unicast
             timers bgp 1 3
             neighbor monitors peer-group
             neighbor monitors remote-as internal
             bgp listen range 192.168.1.0/24 peer-group monitors
             address-family l2vpn evpn
              neighbor monitors activate
              neighbor monitors route-reflector-client
              advertise-all-vni
             exit-address-family
          '';
        };
      };

    monitor =
      { config, nodes, ... }:
      {
        imports = [ lan.monitor ];
        services.ixpect.capture.vxlan = {
          vni = 100;
          localAddress = config.networking.primaryIPAddress;
        };
        # its own namespace, units, config and recipients; the same VTEP address
        services.ixpect.instances.jumbo = {
          capture.vxlan = {
            vni = 200;
            localAddress = config.networking.primaryIPAddress;
          };
          settings = {
            probes.ether_type.enable = true;
            event = {
              collection_window = "2s";
              notifiers.email = lan.monitor.services.ixpect.settings.event.notifiers.email // {
                channels = [ { to = [ "jumbo-noc@example.net" ]; } ];
              };
            };
          };
        };
        services.ixpect.evpn = {
          enable = true;
          asn = 65000;
          neighbors = [ nodes.switch.networking.primaryIPAddress ];
          keepalive = 1;
          hold = 3;
        };
        networking.firewall.allowedTCPPorts = [ 179 ];
        networking.firewall.allowedUDPPorts = [ 4789 ];
        # counts every VxLAN packet the monitor sends on the underlay
        networking.nftables.enable = true;
        networking.nftables.tables.vxlan-out = {
          family = "netdev";
          content = ''
            chain out {
              type filter hook egress device eth1 priority 0;
              udp dport { 4788, 4789 } counter
            }
          '';
        };
      };
  };

  testScript = lan.testScript + ''

    facts = start_lan()
    jumbo.start()
    switch.start()
    switch.wait_for_unit("multi-user.target")
    switch_ip = switch.succeed("ip -4 -o addr show dev eth1").split()[3].split("/")[0]
    for port, vni, bridge in (("lan", 100, "br0"), ("jumbo", 200, "br1")):
        switch.succeed(
            f"ip link add {bridge} type bridge stp_state 0 mcast_snooping 0",
            f"ip link add vxlan{vni} type vxlan id {vni} local {switch_ip} dstport 4789 nolearning",
            f"ip link set {port} master {bridge}",
            f"ip link set vxlan{vni} master {bridge}",
            f"ip link set {port} up",
            f"ip link set vxlan{vni} up",
            f"ip link set {bridge} up",
        )
    monitor.start()
    monitor_mac = check_monitor("vxlan100")
    monitor_ip = switch.succeed("getent ahostsv4 monitor").split()[0]

    def flooded_to_monitor(vni):
        return f"bridge fdb show dev vxlan{vni} | grep -q '^00:00:00:00:00:00 dst {monitor_ip} '"

    # The jumbo LAN has units, namespace and socket of its own.
    for unit in ("netns", "notify", "capture"):
        monitor.wait_for_unit(f"ixpect-jumbo-{unit}.service")
    monitor.succeed("ip netns exec ixpect-jumbo ip link show vxlan200", "test -S /run/ixpect-jumbo/notify.sock")
    monitor.fail("ip netns exec ixpect-jumbo ip link show vxlan100", "ip netns exec ixpect ip link show vxlan200")

    # The monitor's IMET routes put its VTEP in both flood lists; nothing else came.
    monitor.wait_for_unit("ixpect-evpn.service")
    monitor.wait_for_unit("ixpect-jumbo-evpn.service")
    for vni in (100, 200):
        switch.wait_until_succeeds(flooded_to_monitor(vni))
        monitor.succeed(f"vtysh -c 'show evpn vni {vni}' | grep -q 'No remote VTEPs'")
    routes = switch.succeed("vtysh -c 'show bgp l2vpn evpn route' | grep -A1 '^[*]>i'")
    assert routes.count("[3]:[0]:[32]:[" + monitor_ip + "]") == 2 and "[2]:" not in routes, routes

    peer1.succeed(f"ping -c 3 -W 1 {facts['peer2'][1]} || true")
    monitor.wait_until_succeeds("ip netns exec ixpect ip -s link show vxlan100 | awk '/RX:/{getline; exit !($2 > 0)}'")
    run_violations(facts)
    # The jumbo member's violation reaches the jumbo LAN's recipients.
    jumbo.succeed("lan-violate ether-type")
    expect_mail("ETHER_TYPE_VIOLATION", "jumbo-noc@example.net")
    check_ixf_refresh(facts)
    check_silence(monitor_mac, facts)
    monitor.succeed("nft list table netdev vxlan-out | grep -q 'counter packets 0 '")

    # A capture stops: its LAN's advertisement goes with it, and so does its flood entry only.
    monitor.systemctl("stop ixpect-jumbo-capture.service")
    switch.wait_until_fails(flooded_to_monitor(200))
    switch.succeed(flooded_to_monitor(100))
    monitor.systemctl("stop ixpect-capture.service")
    switch.wait_until_fails(flooded_to_monitor(100))
  '';
}
