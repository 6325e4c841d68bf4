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
  yaml = pkgs.formats.yaml { };
  hardening = lib.importJSON ./hardening.json;
  exe = lib.getExe cfg.package;

  useIxf = cfg.ixf.url != null;
  stateDir = "/var/lib/ixpect";
  renderedConfig = "${stateDir}/ixpect.conf.yaml";
  # Without IX-F the daemons read /etc (a link to the validated store file), so that a
  # rebuild with new settings is a reload, not a restart. With IX-F they read the
  # rendered file in place, next to the member table the renderer writes beside it.
  configPath = if useIxf then renderedConfig else "/etc/ixpect/ixpect.conf.yaml";
  socket = "/run/ixpect/notify.sock";

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

  # templateDir is the config key event.templates_dir, so check-config sees it too.
  withTemplates =
    settings:
    if cfg.templateDir == null then
      settings
    else
      recursiveUpdate settings { event.templates_dir = "${cfg.templateDir}"; };
  staticConfig = validated "ixpect.conf.yaml" (withTemplates cfg.settings);
  baseConfig = validated "ixpect-base.conf.yaml" (withTemplates cfg.ixf.baseSettings);

  # Name of the capture interface inside the netns; `ixpect netns up --vxlan-vni N`
  # creates the vxlan device under exactly this name.
  captureInterface =
    if cfg.capture.interface != null then
      cfg.capture.interface
    else
      "vxlan${toString cfg.capture.vxlan.vni}";

  netnsArgs =
    [
      "--name"
      cfg.capture.netns
    ]
    ++ (
      if cfg.capture.interface != null then
        [
          "--interface"
          cfg.capture.interface
        ]
      else
        [
          "--vxlan-vni"
          (toString cfg.capture.vxlan.vni)
          "--vxlan-local"
          cfg.capture.vxlan.localAddress
          "--vxlan-port"
          (toString cfg.capture.vxlan.port)
        ]
    );

  # What every daemon unit shares: the sandbox, the (dynamic) user and the state dir.
  daemon =
    hardening.sandbox
    // {
      User = cfg.user;
      Group = cfg.group;
      DynamicUser = cfg.dynamicUser;
      StateDirectory = "ixpect";
      StateDirectoryMode = "0750";
    };

  reload = {
    ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
    Restart = "on-failure";
    RestartSec = "5s";
  };

  renderScript = pkgs.writeShellScript "ixpect-ixf-render" ''
    set -eu
    # No config yet: the daemons wait for this first one (ConditionPathExists).
    if [ ! -e ${renderedConfig} ]; then
      touch /run/ixpect-ixf/first
    fi
    if ! result=$(${exe} ixf render ${
      escapeShellArgs [
        "--source"
        cfg.ixf.url
        "--ixp-id"
        (toString cfg.ixf.ixpId)
        "--vlan-id"
        (toString cfg.ixf.vlanId)
        "--base"
        "${baseConfig}"
        "--output"
        renderedConfig
        "--cache-dir"
        "/var/cache/ixpect"
      ]
    }); then
      # 75 (EX_TEMPFAIL): the unit retries a failed first render soon; 1 waits for the timer.
      if [ -e /run/ixpect-ixf/first ]; then
        exit 75
      fi
      exit 1
    fi
    echo "ixpect ixf render: $result"
    if [ "$result" = changed ]; then
      touch /run/ixpect-ixf/changed
    fi
  '';

  # Runs as root ("+" prefix) after a successful render; the renderer itself cannot
  # talk to systemd, and an unchanged export must not disturb the daemons.
  reloadScript = pkgs.writeShellScript "ixpect-ixf-reload" ''
    if [ -e /run/ixpect-ixf/first ]; then
      rm -f /run/ixpect-ixf/first /run/ixpect-ixf/changed
      ${config.systemd.package}/bin/systemctl --no-block start ixpect-capture.service ixpect-notify.service
    elif [ -e /run/ixpect-ixf/changed ]; then
      rm /run/ixpect-ixf/changed
      ${config.systemd.package}/bin/systemctl --no-block try-reload-or-restart ixpect-capture.service ixpect-notify.service
    fi
  '';

  # Until the first render there is no config: the daemons wait for it (the render starts them).
  waitForConfig = lib.optionalAttrs useIxf { ConditionPathExists = renderedConfig; };

  # The namespace unit runs ixpect from the system profile, so that its unit file does
  # not change with the package: a package update restarts the daemons (new code) but
  # only reloads this unit (`netns up` again, in place: the port does not flap).
  profileExe = "/run/current-system/sw/bin/ixpect";
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

  options.services.ixpect = {
    enable = mkEnableOption "IXpect, the passive monitor for an IXP peering LAN";

    package = mkPackageOption pkgs "ixpect" { };

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
        default = "ixpect";
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
          there) and moved into the capture namespace. Advertising the VTEP (EVPN
          type-3 route) is the job of the host's BGP speaker.
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
          IX-F Member Export (URL or file). When set, `ixpect-ixf.timer` renders the
          config from it and {option}`ixf.baseSettings`, and reloads the daemons only
          when the result changed; a failed fetch keeps the last good config.
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
        default = cfg.settings;
        defaultText = literalExpression "config.services.ixpect.settings";
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

    user = mkOption {
      type = types.str;
      default = "ixpect";
      description = "User the daemons run as (shared by capture, notify and ixf).";
    };
    group = mkOption {
      type = types.str;
      default = "ixpect";
      description = "Group the daemons run as.";
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
        only (sops-nix, agenix). systemd passes each (`LoadCredential=`) to ixpect-notify
        as `/run/credentials/ixpect-notify.service/<name>`; name that path in
        {option}`settings`, e.g. `event.notifiers.email.auth.pass_file`. A string, not a
        Nix path: a path would copy the secret into the world-readable store.
      '';
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

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = (cfg.capture.interface == null) != (cfg.capture.vxlan == null);
        message = "services.ixpect.capture: set exactly one of `interface` and `vxlan`.";
      }
      {
        assertion = useIxf -> (cfg.ixf.ixpId != null && cfg.ixf.vlanId != null);
        message = "services.ixpect.ixf: `url` needs `ixpId` and `vlanId`.";
      }
      {
        assertion = lib.all (
          name: builtins.match "[A-Za-z0-9_.-]{1,64}" name != null
            && builtins.match "/[^:\n]*" cfg.credentials.${name} != null
        ) (builtins.attrNames cfg.credentials);
        message = "services.ixpect.credentials: names may only contain letters, digits, '_', '.', '-', paths must be absolute.";
      }
    ];

    # nft for the egress drop of `ixpect netns up`, which runs from the system profile.
    environment.systemPackages = [
      cfg.package
      pkgs.nftables
    ];
    environment.etc."ixpect/ixpect.conf.yaml".source = if useIxf then renderedConfig else staticConfig;

    users.users = mkIf (!cfg.dynamicUser && cfg.user == "ixpect") {
      ixpect = {
        isSystemUser = true;
        group = cfg.group;
        description = "IXpect daemons";
      };
    };
    # Any group, not just the default: an empty definition merges with one made elsewhere.
    users.groups = mkIf (!cfg.dynamicUser) { ${cfg.group} = { }; };

    systemd.services.ixpect-netns = {
      description = "IXpect capture namespace ${cfg.capture.netns}";
      wantedBy = [ "multi-user.target" ];
      # Not BindsTo the device: it leaves the host namespace (and udev's view) on purpose.
      wants =
        if cfg.capture.interface != null then
          [ "sys-subsystem-net-devices-${utils.escapeSystemdPath cfg.capture.interface}.device" ]
        else
          [ "network-online.target" ];
      after =
        if cfg.capture.interface != null then
          [ "sys-subsystem-net-devices-${utils.escapeSystemdPath cfg.capture.interface}.device" ]
        else
          [ "network-online.target" ];
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

    systemd.services.ixpect-capture = {
      description = "IXpect capture on ${captureInterface} in namespace ${cfg.capture.netns}";
      wantedBy = [ "multi-user.target" ];
      bindsTo = [ "ixpect-netns.service" ];
      wants = [ "ixpect-notify.service" ] ++ optional useIxf "ixpect-ixf.service";
      after = [
        "ixpect-netns.service"
        "ixpect-notify.service"
      ] ++ optional useIxf "ixpect-ixf.service";
      reloadTriggers = optional (!useIxf) staticConfig;
      unitConfig = waitForConfig;
      serviceConfig =
        daemon
        // hardening.ixpect-capture
        // reload
        // {
          NetworkNamespacePath = "/run/netns/${cfg.capture.netns}";
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

    systemd.services.ixpect-notify = {
      description = "IXpect notifier";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ optional useIxf "ixpect-ixf.service";
      after = [ "network-online.target" ] ++ optional useIxf "ixpect-ixf.service";
      reloadTriggers = optional (!useIxf) staticConfig;
      unitConfig = waitForConfig;
      serviceConfig =
        daemon
        // hardening.ixpect-notify
        // reload
        // {
          RuntimeDirectory = "ixpect";
          RuntimeDirectoryMode = "0750";
          LoadCredential = mapAttrsToList (name: file: "${name}:${file}") cfg.credentials;
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

    systemd.services.ixpect-ixf = mkIf useIxf {
      description = "IXpect config from the IX-F Member Export";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      serviceConfig =
        daemon
        // hardening.ixpect-ixf
        // {
          Type = "oneshot";
          RuntimeDirectory = "ixpect-ixf";
          # ETag/Last-Modified of the last good export: an unchanged one costs a 304
          CacheDirectory = "ixpect";
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

    systemd.timers.ixpect-ixf = mkIf useIxf {
      description = "Refresh the IXpect config from the IX-F Member Export";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnUnitInactiveSec = cfg.ixf.interval;
        # Spread the PoPs' fetches so that they do not hit the export at once.
        RandomizedDelaySec = "2min";
      };
    };
  };
}
