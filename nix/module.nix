# services.ixpect: the split deployment (capture in an isolated namespace, notify outside) as NixOS units.
#
#   ixpect-netns    oneshot, root, CAP_NET_ADMIN+CAP_SYS_ADMIN: moves the capture
#                   interface (or a new kernel vxlan device) into an address-less netns
#                   and drops its egress with nftables
#   ixpect-capture  inside that netns, CAP_NET_RAW only, AF_PACKET+AF_UNIX only
#   ixpect-notify   management namespace, no capabilities, sends the notifications
#   ixpect-ixf      (+ timer) renders the config from the IX-F export and reloads the
#                   two daemons only when the rendered config changed
#
# These are the units of the top level's LAN; each of `instances.<name>` (a further LAN on
# the same host) gets the same ones as ixpect-<name>-*, from the same function (lanConfig).
#
# The hardening of every unit lives in ./hardening.json, shared with the Ansible role.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  inherit (lib)
    escapeShellArgs
    literalExpression
    mapAttrsToList
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optional
    recursiveUpdate
    types
    ;

  cfg = config.services.ixpect;
  lans = import ./lans.nix { inherit lib cfg; };
  yaml = pkgs.formats.yaml { };
  hardening = lib.importJSON ./hardening.json;
  exe = lib.getExe cfg.package;

  # A positive systemd time span ("1h", "30min", "1h 30min", "90"): a typo would otherwise
  # surface only as a timer that systemd refuses on the running host.
  timeSpan =
    let
      unit = "(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)";
    in
    types.addCheck (types.strMatching " *([0-9]+(\\.[0-9]+)? *${unit}? *)+") (s: builtins.match ".*[1-9].*" s != null)
    // {
      description = "positive systemd time span (e.g. \"1h\", \"30min\")";
    };

  # Build-time validation: a config that `ixpect check-config` rejects fails the build
  # (the secrets and templates it names are the running system's: checked at start).
  validated =
    name: value:
    let
      file = yaml.generate name value;
    in
    pkgs.runCommand name { nativeBuildInputs = [ cfg.package ]; } ''
      ixpect check-config --skip-files ${file}
      cp ${file} $out
    '';

  # The namespace unit runs ixpect from the system profile, so that its unit file does
  # not change with the package: a package update restarts the daemons (new code) but
  # only reloads this unit (`netns up` again, in place: the port does not flap).
  profileExe = "/run/current-system/sw/bin/ixpect";

  # The options of one LAN: the top level's (name null) and each instance's.
  lanOptions =
    { name, config }:
    let
      inherit (lans.named name) option prefix unit;
    in
    {
      settings = mkOption {
        type = yaml.type;
        default = { };
        description = ''
          IXpect configuration (see schema/ixpect.conf.schema.json), checked with
          `ixpect check-config` at build time. Used as is unless {option}`ixf.url` is set.
        '';
        example = literalExpression ''
          {
            probes.arp_neighbor = {
              enable = true;
              prefixes = [ "192.0.2.0/24" ];
            };
            event.notifiers.log.channels = [ { } ];
          }
        '';
      };

      capture = {
        netns = mkOption {
          type = types.str;
          default = prefix;
          description = "Network namespace that holds the capture interface.";
        };

        interface = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "enp3s0f1";
          description = ''
            Physical interface on the peering LAN. It is moved into the namespace without
            addresses, with ARP and IPv6 off; do not configure it anywhere else.
          '';
        };

        vxlan = mkOption {
          default = null;
          description = ''
            Receive the peering LAN's BUM traffic over VxLAN instead: a kernel vxlan
            device `vxlan<vni>` is created in the host namespace (its UDP socket stays
            there) and moved into the capture namespace. Its VTEP is advertised by
            {option}`services.ixpect.evpn`, or by the host's own BGP speaker.
          '';
          type = types.nullOr (
            types.submodule {
              options = {
                vni = mkOption {
                  type = types.ints.between 0 16777215;
                  description = "VxLAN network identifier.";
                };
                localAddress = mkOption {
                  type = types.str;
                  example = "198.51.100.7";
                  description = "Local VTEP address, configured on a host interface.";
                };
                port = mkOption {
                  type = types.port;
                  default = 4789;
                  description = "UDP port of the VTEP.";
                };
              };
            }
          );
        };
      };

      ixf = {
        url = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "https://www.example-ix.net/ixf/member-export.json";
          description = ''
            IX-F Member Export (URL or file). When set, a timer renders the config from
            it and {option}`ixf.baseSettings`, and reloads the daemons only when the
            result changed; a failed fetch keeps the last good config.
          '';
        };
        ixpId = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "`ixp_id` of the exchange in the export (`ixpect ixf list` shows it).";
        };
        vlanId = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "`id` of the peering VLAN in the export.";
        };
        interval = mkOption {
          type = timeSpan;
          default = "1h";
          description = "How long to wait after one render before the next (systemd time span).";
        };
        baseSettings = mkOption {
          type = yaml.type;
          default = config.settings;
          defaultText = literalExpression "config.${option}.settings";
          description = ''
            Operator's settings merged under the rendered keys (notifiers, thresholds,
            extra prefixes); checked with `ixpect check-config` at build time.
          '';
        };
      };

      templateDir = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          Directory of notification templates replacing the packaged ones, file by
          file; set as `event.templates_dir` in the config.
        '';
      };

      credentials = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = {
          smtp-pass = "/run/secrets/ixpect-smtp";
        };
        description = ''
          Secret files of the notifier (SMTP password, Matrix token, webhook URL) as
          credential name = path of a file on the host, which may stay readable by root
          only (sops-nix, agenix). systemd passes each (`LoadCredential=`) to ${unit "notify"}
          as `/run/credentials/${unit "notify"}.service/<name>`; name that path in
          {option}`settings`, e.g. `event.notifiers.email.auth.pass_file`. A string, not a
          Nix path: a path would copy the secret into the world-readable store.
        '';
      };

      # Per VNI, so here; the speaker's options are in evpn.nix.
      evpn = {
        rd = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "198.51.100.7:100";
          description = "Route distinguisher of the LAN's VNI; null: FRR's automatic one (router-id:index).";
        };
        routeTarget = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "65000:100";
          description = "Export route target of the LAN's VNI; null: FRR's automatic one (AS:VNI).";
        };
      };
    };

  reload = {
    ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
    Restart = "on-failure";
    RestartSec = "5s";
  };

  lanConfigs = map lanConfig lans.all;
  # The operator's settings of a LAN: with IX-F, what the rendered keys are merged over.
  settingsOf = l: if l.cfg.ixf.url != null then l.cfg.ixf.baseSettings else l.cfg.settings;

  # One LAN's assertions, config file (etc), units (services) and timer, from its
  # options (l.cfg) and its names (l, see lans.nix).
  lanConfig =
    l:
    let
      lan = l.cfg;
      useIxf = lan.ixf.url != null;
      stateDir = "/var/lib/${l.prefix}";
      renderedConfig = "${stateDir}/ixpect.conf.yaml";
      # Without IX-F the daemons read /etc (a link to the validated store file), so that a
      # rebuild with new settings is a reload, not a restart. With IX-F they read the
      # rendered file in place, next to the member table the renderer writes beside it.
      configPath = if useIxf then renderedConfig else "/etc/${l.etc}";
      socket = "/run/${l.prefix}/notify.sock";
      flags = "/run/${l.unit "ixf"}";
      daemons = "${l.unit "capture"}.service ${l.unit "notify"}.service";

      # templateDir is the config key event.templates_dir, so check-config sees it too.
      withTemplates =
        settings:
        if lan.templateDir == null then
          settings
        else
          recursiveUpdate settings { event.templates_dir = "${lan.templateDir}"; };
      staticConfig = validated (baseNameOf l.etc) (withTemplates lan.settings);
      baseConfig = validated "${l.prefix}-base.conf.yaml" (withTemplates lan.ixf.baseSettings);

      # Name of the capture interface inside the netns; `ixpect netns up --vxlan-vni N`
      # creates the vxlan device under exactly this name.
      captureInterface =
        if lan.capture.interface != null then
          lan.capture.interface
        else
          "vxlan${toString lan.capture.vxlan.vni}";

      netnsArgs =
        [
          "--name"
          lan.capture.netns
        ]
        ++ (
          if lan.capture.interface != null then
            [
              "--interface"
              lan.capture.interface
            ]
          else
            [
              "--vxlan-vni"
              (toString lan.capture.vxlan.vni)
              "--vxlan-local"
              lan.capture.vxlan.localAddress
              "--vxlan-port"
              (toString lan.capture.vxlan.port)
            ]
        );
      device = [ "sys-subsystem-net-devices-${utils.escapeSystemdPath lan.capture.interface}.device" ];

      renderScript = pkgs.writeShellScript "${l.unit "ixf"}-render" ''
        set -eu
        # No config yet: the daemons wait for this first one (ConditionPathExists).
        if [ ! -e ${renderedConfig} ]; then
          touch ${flags}/first
        fi
        if ! result=$(${exe} ixf render ${
          escapeShellArgs [
            "--source"
            lan.ixf.url
            "--ixp-id"
            (toString lan.ixf.ixpId)
            "--vlan-id"
            (toString lan.ixf.vlanId)
            "--base"
            "${baseConfig}"
            "--output"
            renderedConfig
            "--cache-dir"
            "/var/cache/${l.prefix}"
          ]
        }); then
          # 75 (EX_TEMPFAIL): the unit retries a failed first render soon; 1 waits for the timer.
          if [ -e ${flags}/first ]; then
            exit 75
          fi
          exit 1
        fi
        echo "ixpect ixf render: $result"
        if [ "$result" = changed ]; then
          touch ${flags}/changed
        fi
      '';

      # Runs as root ("+" prefix) after a successful render; the renderer itself cannot
      # talk to systemd, and an unchanged export must not disturb the daemons.
      reloadScript = pkgs.writeShellScript "${l.unit "ixf"}-reload" ''
        if [ -e ${flags}/first ]; then
          rm -f ${flags}/first ${flags}/changed
          ${config.systemd.package}/bin/systemctl --no-block start ${daemons}
        elif [ -e ${flags}/changed ]; then
          rm ${flags}/changed
          ${config.systemd.package}/bin/systemctl --no-block try-reload-or-restart ${daemons}
        fi
      '';

      # Until the first render there is no config: the daemons wait for it (the render starts them).
      waitForConfig = lib.optionalAttrs useIxf { ConditionPathExists = renderedConfig; };

      # What every daemon unit of the LAN shares: the sandbox, the (dynamic) user, the state dir.
      daemon =
        hardening.sandbox
        // {
          User = cfg.user;
          Group = cfg.group;
          DynamicUser = cfg.dynamicUser;
          StateDirectory = l.prefix;
          StateDirectoryMode = "0750";
        };
    in
    {
      assertions = [
        {
          assertion = (lan.capture.interface == null) != (lan.capture.vxlan == null);
          message = "${l.option}.capture: set exactly one of `interface` and `vxlan`.";
        }
        {
          assertion = useIxf -> (lan.ixf.ixpId != null && lan.ixf.vlanId != null);
          message = "${l.option}.ixf: `url` needs `ixpId` and `vlanId`.";
        }
        {
          assertion = lib.all (
            name: builtins.match "[A-Za-z0-9_.-]{1,64}" name != null
              && builtins.match "/[^:\n]*" lan.credentials.${name} != null
          ) (builtins.attrNames lan.credentials);
          message = "${l.option}.credentials: names may only contain letters, digits, '_', '.', '-', paths must be absolute.";
        }
      ];

      etc.${l.etc}.source = if useIxf then renderedConfig else staticConfig;

      services.${l.unit "netns"} = {
        description = "IXpect capture namespace ${lan.capture.netns}";
        wantedBy = [ "multi-user.target" ];
        # Not BindsTo the device: it leaves the host namespace (and udev's view) on purpose.
        wants = if lan.capture.interface != null then device else [ "network-online.target" ];
        after = if lan.capture.interface != null then device else [ "network-online.target" ];
        path = [ "/run/current-system/sw" ];
        reloadTriggers = [ cfg.package ];
        # No mount sandboxing here: a private mount namespace would hide /run/netns/<name>.
        serviceConfig = hardening.ixpect-netns // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${profileExe} netns up ${utils.escapeSystemdExecArgs netnsArgs}";
          ExecReload = "${profileExe} netns up ${utils.escapeSystemdExecArgs netnsArgs}";
          ExecStop = "${profileExe} netns down ${utils.escapeSystemdExecArgs netnsArgs}";
        };
      };

      services.${l.unit "capture"} = {
        description = "IXpect capture on ${captureInterface} in namespace ${lan.capture.netns}";
        wantedBy = [ "multi-user.target" ];
        bindsTo = [ "${l.unit "netns"}.service" ];
        wants = [ "${l.unit "notify"}.service" ] ++ optional useIxf "${l.unit "ixf"}.service";
        after = [
          "${l.unit "netns"}.service"
          "${l.unit "notify"}.service"
        ] ++ optional useIxf "${l.unit "ixf"}.service";
        reloadTriggers = optional (!useIxf) staticConfig;
        unitConfig = waitForConfig;
        serviceConfig =
          daemon
          // hardening.ixpect-capture
          // reload
          // {
            NetworkNamespacePath = "/run/netns/${lan.capture.netns}";
            ExecStart = "${exe} capture ${
              utils.escapeSystemdExecArgs [
                "--config"
                configPath
                "--interface"
                captureInterface
                "--socket"
                socket
                # events notify has not acknowledged yet, and learned neighbors, survive a restart of capture
                "--state-dir"
                stateDir
              ]
            }";
          };
      };

      services.${l.unit "notify"} = {
        description = "IXpect notifier${l.label}";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ] ++ optional useIxf "${l.unit "ixf"}.service";
        after = [ "network-online.target" ] ++ optional useIxf "${l.unit "ixf"}.service";
        reloadTriggers = optional (!useIxf) staticConfig;
        unitConfig = waitForConfig;
        serviceConfig =
          daemon
          // hardening.ixpect-notify
          // reload
          // {
            RuntimeDirectory = l.prefix;
            RuntimeDirectoryMode = "0750";
            LoadCredential = mapAttrsToList (name: file: "${name}:${file}") lan.credentials;
            ExecStart = "${exe} notify ${
              utils.escapeSystemdExecArgs [
                "--config"
                configPath
                "--socket"
                socket
                "--state-dir"
                stateDir
              ]
            }";
          };
      };

      services.${l.unit "ixf"} = mkIf useIxf {
        description = "IXpect config from the IX-F Member Export${l.label}";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        serviceConfig =
          daemon
          // hardening.ixpect-ixf
          // {
            Type = "oneshot";
            RuntimeDirectory = l.unit "ixf";
            # ETag/Last-Modified of the last good export: an unchanged one costs a 304
            CacheDirectory = l.prefix;
            CacheDirectoryMode = "0700";
            # A failed first render exits 75 and is retried soon; a later failed one exits 1
            # and keeps the last good config until the timer fires again.
            Restart = "on-failure";
            RestartPreventExitStatus = 1;
            RestartSec = "30s";
            ExecStart = "${renderScript}";
            ExecStartPost = "+${reloadScript}";
          };
      };

      timers.${l.unit "ixf"} = mkIf useIxf {
        description = "Refresh the IXpect config from the IX-F Member Export${l.label}";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnUnitInactiveSec = lan.ixf.interval;
          # Spread the PoPs' fetches so that they do not hit the export at once.
          RandomizedDelaySec = "2min";
        };
      };
    };
in
{
  # DD-IX's IXpect module: `settings`, `templateDir`, `user`, `group`, `enable`, `package`
  # and `capture.interface` mean the same here. What it has and this module has not gets
  # an evaluation error that says what to do instead.
  imports = [
    ./evpn.nix
    (lib.mkRemovedOptionModule [ "services" "ixpect" "packetPoolSize" ] ''
      Frames are read from a TPACKET_V3 ring (64 blocks of 1 MiB) that the kernel fills;
      there is no packet pool to size. Remove the option.
    '')
    (lib.mkRemovedOptionModule [ "services" "ixpect" "redisUrl" ] ''
      Learned neighbors and undelivered notifications are kept in files under
      /var/lib/ixpect; no Redis is needed. Remove the option (and the Redis server, if it
      served only IXpect).
    '')
    (
      { config, ... }:
      {
        config.assertions = lib.mkIf config.services.ixpect.enable [
          {
            assertion = !(config.systemd.services ? ixpect);
            message = ''
              services.ixpect runs as ixpect-capture.service (in the capture namespace) and
              ixpect-notify.service (notifications); there is no ixpect.service. Move what
              systemd.services.ixpect sets to systemd.services.ixpect-notify (or -capture).
            '';
          }
        ];
      }
    )
  ];

  options.services.ixpect =
    lanOptions {
      name = null;
      config = cfg;
    }
    // {
      enable = mkEnableOption "IXpect, the passive monitor for an IXP peering LAN";

      package = mkPackageOption pkgs "ixpect" { };

      instances = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, config, ... }:
            {
              options = lanOptions { inherit name config; };
            }
          )
        );
        default = { };
        example = literalExpression ''
          {
            jumbo = {
              capture.vxlan = { vni = 200; localAddress = "198.51.100.7"; };
              settings.probes.stp.enable = true;
            };
          }
        '';
        description = ''
          Further LANs on this host (a jumbo LAN beside the peering LAN, say), each with
          the per-LAN options of {option}`services.ixpect` and its own units
          `ixpect-<name>-netns`, `-capture`, `-notify`, `-ixf` and `-evpn`, state in
          `/var/lib/ixpect-<name>`, config `/etc/ixpect/<name>.conf.yaml` and namespace
          `ixpect-<name>`. They share {option}`package`, {option}`user`, {option}`group`,
          {option}`dynamicUser` and the EVPN speaker. Names: lower-case letters, digits, `-`.
        '';
      };

      user = mkOption {
        type = types.str;
        default = "ixpect";
        description = "User the daemons of every LAN run as (shared by capture, notify and ixf).";
      };
      group = mkOption {
        type = types.str;
        default = "ixpect";
        description = "Group the daemons run as.";
      };

      dynamicUser = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Allocate {option}`user` dynamically (systemd `DynamicUser=`). When false, the
          group {option}`group` is declared (merging with a definition made elsewhere) and
          a system user `ixpect` is created if {option}`user` is left at its default.
        '';
      };
    };

  # The merge of the LANs' parts is per option: a config whose own structure depended on
  # the instances would be an infinite recursion for the module system.
  config = mkIf cfg.enable {
    assertions =
      [
        {
          assertion = lib.all (name: builtins.match "[a-z0-9-]+" name != null) (builtins.attrNames cfg.instances);
          message = "services.ixpect.instances: names may only contain lower-case letters, digits and '-'.";
        }
      ]
      # Two LANs cannot share a namespace, a port, or a VNI: `netns up` creates the vxlan
      # device as vxlan<VNI> in the host namespace before it moves it, whatever its UDP port.
      ++ lans.distinct (l: [ l.cfg.capture.netns ]) (
        l: o: v:
        "${l.option}.capture.netns: namespace ${v} is ${o.option}'s too; every LAN needs its own."
      )
      ++ lans.distinct (l: optional (l.cfg.capture.interface != null) l.cfg.capture.interface) (
        l: o: v:
        "${l.option}.capture.interface: ${v} is ${o.option}'s too; a port captures one LAN."
      )
      ++ lans.distinct (l: optional (l.cfg.capture.vxlan != null) l.cfg.capture.vxlan.vni) (
        l: o: v:
        "${l.option}.capture.vxlan.vni: VNI ${toString v} is ${o.option}'s too; every LAN needs its own."
      )
      # each notify serves its own /metrics
      ++ lans.distinct (l: optional (settingsOf l ? metrics.listen) (settingsOf l).metrics.listen) (
        l: o: v:
        "${l.option}: metrics.listen ${v} is ${o.option}'s too; each LAN's notify needs its own address."
      )
      ++ lans.distinct (l: l.paths) (
        l: o: v:
        "${l.option}: ${v} is ${o.option}'s too; choose another instance name."
      )
      ++ builtins.concatMap (c: c.assertions) lanConfigs;

    environment.etc = lib.mkMerge (map (c: c.etc) lanConfigs);
    systemd.services = lib.mkMerge (map (c: c.services) lanConfigs);
    systemd.timers = lib.mkMerge (map (c: c.timers) lanConfigs);

    # nft for the egress drop of `ixpect netns up`, which runs from the system profile.
    environment.systemPackages = [
      cfg.package
      pkgs.nftables
    ];

    users.users = mkIf (!cfg.dynamicUser && cfg.user == "ixpect") {
      ixpect = {
        isSystemUser = true;
        group = cfg.group;
        description = "IXpect daemons";
      };
    };
    # Any group, not just the default: an empty definition merges with one made elsewhere.
    users.groups = mkIf (!cfg.dynamicUser) { ${cfg.group} = { }; };
  };
}
