# The monitor receives the LAN's BUM traffic over VxLAN (VNI 100) from a switch: a
# Linux bridge joining its LAN port and a vxlan device that floods to the monitor.
{ module }:
let
  lan = import ./lan.nix { inherit module; };
in
{
  name = "ixpect-vxlan";

  nodes = lan.nodes // {
    switch = {
      virtualisation.vlans = [ 1 ];
      virtualisation.interfaces.lan = {
        vlan = 2;
        assignIP = false;
      };
      networking.useDHCP = false;
    };

    monitor =
      { config, ... }:
      {
        imports = [ lan.monitor ];
        services.ixpect.capture.vxlan = {
          vni = 100;
          localAddress = config.networking.primaryIPAddress;
        };
        # The kernel vxlan socket lives in the host namespace, behind the firewall.
        networking.firewall.allowedUDPPorts = [ 4789 ];
      };
  };

  testScript = lan.testScript + ''

    facts = start_lan()
    monitor.start()
    monitor_mac = check_monitor("vxlan100")

    switch.start()
    switch.wait_for_unit("multi-user.target")
    monitor_ip = switch.succeed("getent ahostsv4 monitor").split()[0]
    switch_ip = switch.succeed("ip -4 -o addr show dev eth1").split()[3].split("/")[0]
    switch.succeed(
        "ip link add br0 type bridge stp_state 0 mcast_snooping 0",
        f"ip link add vxlan100 type vxlan id 100 local {switch_ip} dstport 4789 nolearning",
        f"bridge fdb append 00:00:00:00:00:00 dev vxlan100 dst {monitor_ip}",
        "ip link set lan master br0",
        "ip link set vxlan100 master br0",
        "ip link set lan up",
        "ip link set vxlan100 up",
        "ip link set br0 up",
    )
    # Frames from the LAN now reach the capture namespace through the vxlan device.
    peer1.succeed(f"ping -c 3 -W 1 {facts['peer2'][1]} || true")
    monitor.wait_until_succeeds("ip netns exec ixpect ip -s link show vxlan100 | awk '/RX:/{getline; exit !($2 > 0)}'")

    run_violations(facts)
    check_ixf_refresh(facts)
    check_silence(monitor_mac, facts)
  '';
}
