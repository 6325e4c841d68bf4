# The monitor joins the flood list of VNI 100 by itself: the switch is a fabric leaf
# running FRR (bgpd, advertise-all-vni, route reflector for the monitor) with no static
# flood entry; the monitor's services.ixpect.evpn advertises its VTEP's type-3 route.
{ module }:
let
  lan = import ./lan.nix { inherit module; };
in
{
  name = "ixpect-evpn";

  nodes = lan.nodes // {
    switch =
      { config, ... }:
      {
        virtualisation.vlans = [ 1 ];
        virtualisation.interfaces.lan = {
          vlan = 2;
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
    switch.start()
    switch.wait_for_unit("multi-user.target")
    switch_ip = switch.succeed("ip -4 -o addr show dev eth1").split()[3].split("/")[0]
    switch.succeed(
        "ip link add br0 type bridge stp_state 0 mcast_snooping 0",
        f"ip link add vxlan100 type vxlan id 100 local {switch_ip} dstport 4789 nolearning",
        "ip link set lan master br0",
        "ip link set vxlan100 master br0",
        "ip link set lan up",
        "ip link set vxlan100 up",
        "ip link set br0 up",
    )
    monitor.start()
    monitor_mac = check_monitor("vxlan100")
    monitor_ip = switch.succeed("getent ahostsv4 monitor").split()[0]

    # The monitor's IMET route puts its VTEP in the leaf's flood list; nothing else came.
    monitor.wait_for_unit("ixpect-evpn.service")
    switch.wait_until_succeeds(f"bridge fdb show dev vxlan100 | grep -q '^00:00:00:00:00:00 dst {monitor_ip} '")
    routes = switch.succeed("vtysh -c 'show bgp l2vpn evpn route' | grep -A1 '^[*]>i'")
    assert "[3]:[0]:[32]:[" + monitor_ip + "]" in routes and "[2]:" not in routes, routes
    monitor.succeed("vtysh -c 'show evpn vni 100' | grep -q 'No remote VTEPs'")

    peer1.succeed(f"ping -c 3 -W 1 {facts['peer2'][1]} || true")
    monitor.wait_until_succeeds("ip netns exec ixpect ip -s link show vxlan100 | awk '/RX:/{getline; exit !($2 > 0)}'")
    run_violations(facts)
    check_ixf_refresh(facts)
    check_silence(monitor_mac, facts)
    monitor.succeed("nft list table netdev vxlan-out | grep -q 'counter packets 0 '")

    # The capture stops: the advertisement goes with it, and so does the flood entry.
    monitor.systemctl("stop ixpect-capture.service")
    switch.wait_until_fails(f"bridge fdb show dev vxlan100 | grep -q '^00:00:00:00:00:00 dst {monitor_ip} '")
  '';
}
