# The LANs of services.ixpect, each with the names of what it owns: the top level
# (units ixpect-*, /var/lib/ixpect, /run/ixpect) and every `instances.<name>` (units
# ixpect-<name>-*, /var/lib/ixpect-<name>, /run/ixpect-<name>). module.nix and evpn.nix
# build one LAN's units from this, the same way for all of them.
{ lib, cfg }:

rec {
  # The names of what the LAN `name` (null: the top level's) owns.
  named = name: rec {
    prefix = if name == null then "ixpect" else "ixpect-${name}";
    # where the LAN's options are, for messages
    option = if name == null then "services.ixpect" else "services.ixpect.instances.${name}";
    # appended to the top level's descriptions, so that its units stay as they are
    label = if name == null then "" else " (${name})";
    unit = role: "${prefix}-${role}";
    etc = "ixpect/${if name == null then "ixpect" else name}.conf.yaml";
    # the paths the LAN's name alone decides (state and cache directories are named
    # `prefix`, distinct by construction)
    paths = [
      "/etc/${etc}"
      "/run/${prefix}"
      "/run/${unit "ixf"}"
      "/run/${unit "evpn"}"
    ];
  };

  # Every LAN: its names, and its options as `cfg`.
  all =
    [ (named null // { inherit cfg; }) ]
    ++ map (name: named name // { cfg = cfg.instances.${name}; }) (builtins.attrNames cfg.instances);

  vxlan = builtins.filter (l: l.cfg.capture.vxlan != null) all;

  # One assertion per LAN: none of the values `of` gives it (a list) is another LAN's.
  # `message` gets the LAN, the other LAN and the shared value.
  distinct =
    of: message:
    map (
      l:
      let
        shared = o: builtins.filter (v: builtins.elem v (of o)) (of l);
        other = lib.findFirst (o: o.prefix != l.prefix && shared o != [ ]) null all;
      in
      {
        assertion = other == null;
        message = message l other (builtins.head (shared other));
      }
    ) all;
}
