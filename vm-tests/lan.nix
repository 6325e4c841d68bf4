# What both VM tests share: a simulated peering LAN (vlan 2) with two peer routers and
# an observer, a management network (vlan 1) with a mail sink and an IX-F export server,
# and the monitor's IXpect configuration. The variants only differ in how the monitor
# receives the LAN: a port on it (interface.nix) or VxLAN from a switch (vxlan.nix).
{ module }:
let
  peer =
    { pkgs, ... }:
    {
      virtualisation.vlans = [ 2 ];
      environment.systemPackages = [
        (pkgs.writers.writePython3Bin "lan-violate" {
          libraries = [ pkgs.python3Packages.scapy ];
          flakeIgnore = [ "E501" ];
        } (builtins.readFile ./violate.py))
      ];
    };
in
{
  nodes = {
    peer1 = peer;
    peer2 = peer;

    # Records every frame on the LAN from before the monitor boots.
    observer =
      { pkgs, ... }:
      {
        virtualisation.vlans = [ ];
        virtualisation.interfaces.lan = {
          vlan = 2;
          assignIP = false;
        };
        networking.useDHCP = false;
        environment.systemPackages = [ pkgs.tcpdump ];
      };

    mail =
      { pkgs, ... }:
      {
        virtualisation.vlans = [ 1 ];
        networking.firewall.allowedTCPPorts = [ 25 ];
        environment.systemPackages = [
          (pkgs.writers.writePython3Bin "mail-dump" { flakeIgnore = [ "E501" ]; } (
            builtins.readFile ./mail_dump.py
          ))
        ];
        systemd.services.mail-sink = {
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            ExecStart = "${
              pkgs.python3.withPackages (p: [ p.aiosmtpd ])
            }/bin/python -m aiosmtpd -n -l 0.0.0.0:25 -c aiosmtpd.handlers.Mailbox /var/lib/mail-sink";
            StateDirectory = "mail-sink";
          };
        };
      };

    ixf =
      { pkgs, ... }:
      {
        virtualisation.vlans = [ 1 ];
        networking.firewall.allowedTCPPorts = [ 80 ];
        systemd.tmpfiles.rules = [ "d /srv/ixf 0755 root root -" ];
        systemd.services.ixf-export = {
          wantedBy = [ "multi-user.target" ];
          serviceConfig.ExecStart = "${pkgs.python3}/bin/python -m http.server 80 --directory /srv/ixf";
        };
      };
  };

  # Imported by the monitor of each variant, which adds services.ixpect.capture.
  monitor = {
    imports = [ module ];
    virtualisation.vlans = [ 1 ];
    networking.useDHCP = false;
    services.ixpect = {
      enable = true;
      ixf = {
        url = "http://ixf/export.json";
        ixpId = 1;
        vlanId = 2;
      };
      settings = {
        probes = {
          arp_bogon.enable = true;
          arp_neighbor.enable = true;
          ether_type.enable = true;
          ipv6_router.enable = true;
          stp.enable = true;
        };
        event = {
          collection_window = "2s";
          notifiers.email = {
            # The mail sink speaks plain SMTP (no STARTTLS), like a relay on a management LAN.
            smtp = {
              host = "mail";
              port = 25;
              encryption = "none";
            };
            from = "ixpect@monitor";
            channels = [ { to = [ "noc@example.net" ]; } ];
          };
        };
      };
    };
  };

  testScript = builtins.readFile ./lan.py;
}
