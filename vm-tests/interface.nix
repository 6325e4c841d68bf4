# The monitor has a port on the peering LAN, without an address.
{ module }:
let
  lan = import ./lan.nix { inherit module; };
in
{
  name = "ixpect-interface";

  nodes = lan.nodes // {
    monitor = {
      imports = [ lan.monitor ];
      virtualisation.interfaces.peering = {
        vlan = 2;
        assignIP = false;
      };
      services.ixpect.capture.interface = "peering";
    };
  };

  testScript = lan.testScript + ''

    facts = start_lan()
    monitor.start()
    monitor_mac = check_monitor("peering")
    run_violations(facts)
    check_ixf_refresh(facts)
    check_silence(monitor_mac, facts)
  '';
}
