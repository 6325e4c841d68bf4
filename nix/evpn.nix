# services.ixpect.evpn: the monitor joins the VxLAN/EVPN fabric's flood list by itself.
#
#   services.frr    bgpd sessions to the route reflectors, address family l2vpn evpn,
#                   config rendered from ./frr.conf.j2 (the Ansible role renders the
#                   same template): type-3 routes out, nothing in
#   ixpect-evpn     oneshot, CAP_NET_ADMIN: `ixpect evpn up` adds the device FRR
#                   advertises the capture VNI from; bound to ixpect-capture, so the
#                   route exists only while the capture runs. One per VxLAN LAN (the
#                   instance jumbo's is ixpect-jumbo-evpn), one FRR for all.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  inherit (lib) mkEnableOption mkIf mkOption types;

  cfg = config.services.ixpect;
  evpn = cfg.evpn;
  lans = import ./lans.nix { inherit lib cfg; };
  exe = lib.getExe cfg.package;
  hardening = lib.importJSON ./hardening.json;

  # The variables of frr.conf.j2, as the role's _ixpect_evpn. The password is not among
  # them: it would land in the store; ixpect-evpn hands it to bgpd at run time.
  frrVars.evpn = {
    hostname = config.networking.hostName or "ixpect";
    inherit (evpn) asn neighbors keepalive hold;
    router_id = if evpn.routerId != null then evpn.routerId else (builtins.head lans.vxlan).cfg.capture.vxlan.localAddress;
    remote_as = evpn.remoteAs;
    password = null;
    vnis = map (l: {
      inherit (l.cfg.capture.vxlan) vni;
      rd = l.cfg.evpn.rd;
      route_target = l.cfg.evpn.routeTarget;
    }) lans.vxlan;
  };
  frrConfig =
    pkgs.runCommand "frr.conf"
      { nativeBuildInputs = [ (pkgs.python3.withPackages (ps: [ ps.jinja2 ])) ]; }
      ''
        python3 ${./render-jinja.py} ${./frr.conf.j2} ${pkgs.writeText "frr-vars.json" (builtins.toJSON frrVars)} > $out
      '';

  # vtysh commands that set the session password, from a file outside the store.
  passwordScript = pkgs.writeShellScript "ixpect-evpn-password" ''
    set -eu
    umask 077
    password=$(cat "$CREDENTIALS_DIRECTORY/bgp-password")
    {
      echo "router bgp ${toString evpn.asn}"
      for neighbor in ${lib.escapeShellArgs evpn.neighbors}; do
        echo " neighbor $neighbor password $password"
      done
    } > "$RUNTIME_DIRECTORY/password.conf"
    ${pkgs.frr}/bin/vtysh -f "$RUNTIME_DIRECTORY/password.conf"
    rm "$RUNTIME_DIRECTORY/password.conf"
  '';

  # The advertisement device of one VxLAN LAN, up only while the LAN's capture runs.
  evpnUnit =
    l:
    let
      vxlan = l.cfg.capture.vxlan;
      vni = [
        "--vni"
        (toString vxlan.vni)
      ];
    in
    {
      name = l.unit "evpn";
      value = {
        description = "IXpect EVPN advertisement of VNI ${toString vxlan.vni} (VTEP ${vxlan.localAddress})";
        # The route pulls the LAN's BUM traffic to this host: only while the capture runs.
        wantedBy = [ "${l.unit "capture"}.service" ];
        bindsTo = [ "${l.unit "capture"}.service" ];
        # restarted with FRR, which forgets the password handed to it at run time
        partOf = [ "frr.service" ];
        wants = [ "frr.service" ];
        after = [
          "${l.unit "capture"}.service"
          "frr.service"
        ];
        serviceConfig =
          hardening.ixpect-evpn
          // {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = "${exe} evpn up ${
              utils.escapeSystemdExecArgs (
                vni
                ++ [
                  "--local"
                  vxlan.localAddress
                ]
              )
            }";
            ExecStop = "${exe} evpn down ${utils.escapeSystemdExecArgs vni}";
          }
          // lib.optionalAttrs (evpn.passwordFile != null) {
            LoadCredential = "bgp-password:${evpn.passwordFile}";
            RuntimeDirectory = l.unit "evpn";
            ExecStartPost = "${passwordScript}";
          };
      };
    };

  # rd and route target end up verbatim in frr.conf
  routeFormat = v: v == null || builtins.match "[0-9A-Za-z.:]+" v != null;
in
{
  options.services.ixpect.evpn = {
    enable = mkEnableOption ''
      the EVPN speaker: FRR advertises one type-3 (IMET) route for the VNI of every
      VxLAN LAN ({option}`capture.vxlan` here and in {option}`instances`) with its VTEP
      address to the fabric's route reflectors, advertises nothing else and accepts no
      route. Needs at least one VxLAN LAN; FRR's config on this host is this module's'';
    asn = mkOption {
      type = types.ints.between 1 4294967295;
      example = 65000;
      description = "Local AS number of the speaker.";
    };
    neighbors = mkOption {
      type = types.listOf types.str;
      example = [
        "198.51.100.1"
        "198.51.100.2"
      ];
      description = "Addresses of the fabric's route reflectors (or leaves) to peer with.";
    };
    remoteAs = mkOption {
      type = types.str;
      default = "internal";
      example = "65001";
      description = "AS of the neighbors: `internal` (iBGP), `external` or a number.";
    };
    routerId = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        BGP router id; null: the VTEP address of the first VxLAN LAN
        ({option}`capture.vxlan.localAddress`, else the first instance's by name).
      '';
    };
    keepalive = mkOption {
      type = types.ints.between 0 65535;
      default = 60;
      description = "BGP keepalive interval in seconds.";
    };
    hold = mkOption {
      type = types.ints.between 0 65535;
      default = 180;
      description = "BGP hold time in seconds (0, or at least 3).";
    };
    passwordFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/ixpect-bgp";
      description = ''
        File with the TCP MD5 password of the sessions (read at run time with systemd's
        LoadCredential=, never copied to the store).
      '';
    };
  };

  config = mkIf (cfg.enable && evpn.enable) {
    assertions =
      [
        {
          assertion = lans.vxlan != [ ];
          message = "services.ixpect.evpn advertises a VxLAN capture's VTEP: set services.ixpect.capture.vxlan (or an instance's).";
        }
        {
          assertion = evpn.neighbors != [ ];
          message = "services.ixpect.evpn.neighbors: name at least one route reflector.";
        }
        # each of these ends up verbatim in frr.conf
        {
          assertion =
            lib.all (n: builtins.match "[0-9A-Fa-f:.]+" n != null) evpn.neighbors
            && builtins.match "internal|external|[0-9]+" evpn.remoteAs != null
            && (evpn.routerId == null || builtins.match "[0-9.]+" evpn.routerId != null);
          message = ''
            services.ixpect.evpn: neighbors must be IP addresses, remoteAs internal, external or
            a number, routerId an IPv4 address.'';
        }
      ]
      ++ map (l: {
        assertion = routeFormat l.cfg.evpn.rd && routeFormat l.cfg.evpn.routeTarget;
        message = "${l.option}.evpn: rd and routeTarget must be like 65000:100.";
      }) lans.all;

    services.frr = {
      bgpd.enable = true;
      configFile = frrConfig;
    };
    # A reload (frr-reload) would drop the password that is not in the file; a restart
    # restarts the ixpect-*evpn units too (partOf), which hand it over again.
    systemd.services = builtins.listToAttrs (map evpnUnit lans.vxlan) // {
      frr = mkIf (evpn.passwordFile != null) { reloadIfChanged = lib.mkForce false; };
    };
  };
}
