# The NixOS options nix/module.nix defines, declared as NixOS declares them: no
# freeform attribute sets, so a misspelt option (`wantedby`) fails the evaluation as
# it would on NixOS. Written against nixpkgs' lib API: tests/nix/harness.nix evaluates
# it with its stand-in, and `lib.evalModules` of the real nixpkgs lib accepts it too.
# Types are NixOS's where the harness has them, simplified where only the shape matters.
{ lib, ... }:

let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-unit-options.nix: a directive's value, or a list of them.
  atom = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
  ];
  unitOption = types.oneOf [
    atom
    (types.listOf atom)
  ];
  units = types.listOf types.str;
  list = type: mkOption {
    inherit type;
    default = [ ];
  };
  flag = default: mkOption {
    type = types.bool;
    inherit default;
  };
  section = mkOption {
    type = types.attrsOf unitOption;
    default = { };
  };
  unit =
    options:
    types.attrsOf (
      types.submodule {
        options = {
          description = mkOption {
            type = types.str;
            default = "";
          };
          wantedBy = list units;
          wants = list units;
          requires = list units;
          bindsTo = list units;
          partOf = list units;
          after = list units;
          before = list units;
          restartTriggers = list (types.listOf unitOption);
          reloadTriggers = list (types.listOf unitOption);
          unitConfig = section;
        } // options;
      }
    );
in
{
  options = {
    assertions = list (types.listOf types.unspecified);

    environment = {
      systemPackages = list (types.listOf types.package);
      etc = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options.source = mkOption { type = types.path; };
          }
        );
      };
    };

    users = {
      users = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              description = mkOption {
                type = types.str;
                default = "";
              };
            };
          }
        );
      };
      groups = mkOption {
        default = { };
        type = types.attrsOf (types.submodule { options = { }; });
      };
    };

    services.frr = {
      bgpd.enable = flag false;
      configFile = mkOption {
        type = types.nullOr types.path;
        default = null;
      };
    };

    systemd = {
      package = mkOption { type = types.package; };
      services = mkOption {
        default = { };
        type = unit {
          path = list (
            types.listOf (
              types.oneOf [
                types.package
                types.str
              ]
            )
          );
          environment = mkOption {
            type = types.attrsOf types.str;
            default = { };
          };
          restartIfChanged = flag true;
          reloadIfChanged = flag false;
          serviceConfig = section;
        };
      };
      timers = mkOption {
        default = { };
        type = unit { timerConfig = section; };
      };
    };
  };
}
