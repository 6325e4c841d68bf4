# Evaluates nix/module.nix without nixpkgs, for CI (Debian's nix-bin, no nixpkgs).
#
# This is a deliberately small stand-in for nixpkgs' lib, pkgs and module system:
# only the functions the module uses, with the same semantics where it matters
# (option defaults, submodules, type checks, mkIf/mkMerge, assertions, shell
# escaping). What the module defines is checked against ./nixos-options.nix, the
# NixOS options it uses declared as NixOS declares them (no freeform): an option NixOS
# does not have, or a value of the wrong type, fails here as it fails on NixOS. It is
# not nixpkgs; docs/development.md says what it cannot prove.
#
#   nix-instantiate --eval --strict --json tests/nix/harness.nix \
#     --arg definitions '{ services.ixpect = { ... }; }' --argstr package /path/to/venv
{
  definitions,
  # prefix with bin/ixpect standing in for the package's store path
  package,
  module ? ../../nix/module.nix,
}:

let
  inherit (builtins)
    all
    attrNames
    concatLists
    concatMap
    filter
    head
    isAttrs
    isList
    listToAttrs
    mapAttrs
    typeOf
    ;

  mkType = name: check: {
    _type = "type";
    inherit name check;
  };

  # A type's `check` looks at the value itself; `elemType` (listOf, attrsOf, nullOr)
  # and `options` (submodule) let checkValue go into it.
  types = rec {
    str = mkType "str" builtins.isString;
    bool = mkType "bool" builtins.isBool;
    int = mkType "signed integer" builtins.isInt;
    unspecified = mkType "unspecified value" (_: true);
    port = mkType "port" (v: builtins.isInt v && v >= 0 && v <= 65535);
    path = mkType "path" (
      v: builtins.isPath v || (builtins.isString v && builtins.substring 0 1 v == "/")
    );
    package = mkType "package" (v: isAttrs v && v ? outPath);
    ints = {
      unsigned = mkType "unsigned integer" (v: builtins.isInt v && v >= 0);
      between =
        lo: hi: mkType "integer between ${toString lo} and ${toString hi}" (v: builtins.isInt v && v >= lo && v <= hi);
    };
    nullOr = t: mkType "null or ${t.name}" (v: v == null || t.check v) // { elemType = t; wraps = true; };
    listOf = t: mkType "list of ${t.name}" isList // { elemType = t; };
    attrsOf = t: mkType "attribute set of ${t.name}" (v: isAttrs v && !(v ? outPath)) // { elemType = t; };
    strMatching = re: mkType "string matching the pattern ${re}" (v: builtins.isString v && builtins.match re v != null);
    addCheck = t: check: t // { check = v: t.check v && check v; };
    oneOf = ts: mkType (builtins.concatStringsSep " or " (map (t: t.name) ts)) (v: builtins.any (t: t.check v) ts);
    # `options` of a submodule value at a path: a module function gets the value's name
    # (its attribute in an attrsOf) and its resolved config.
    submodule =
      m:
      mkType "submodule" isAttrs
      // {
        optionsAt = name: config: if builtins.isFunction m then (m { inherit name config lib; }).options else m.options;
      };
    # pkgs.formats.yaml's type: anything JSON can hold (YAML is a superset).
    json = mkType "YAML value" (
      v:
      v == null
      || builtins.elem (typeOf v) [
        "bool"
        "int"
        "float"
        "string"
        "path"
      ]
      || (isList v && all json.check v)
      || (isAttrs v && all (n: json.check v.${n}) (attrNames v))
    );
  };

  # nixpkgs lib/strings.nix semantics.
  escapeShellArg =
    arg:
    let
      s = toString arg;
    in
    if builtins.match "[[:alnum:],._+:@%/-]+" s == null then
      "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'"
    else
      s;

  lib = {
    inherit types all;
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: lib.mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkPackageOption = pkgs: name: _: lib.mkOption {
      type = types.package;
      default = pkgs.${name};
    };
    # the only definition the module makes of these options: its priority cannot matter
    mkForce = content: content;
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    findFirst =
      pred: default: list:
      let
        found = builtins.filter pred list;
      in
      if found == [ ] then default else head found;
    # nixpkgs lib/modules.nix: the option stays declared (hidden), defining it fails an
    # assertion with nixpkgs' wording.
    mkRemovedOptionModule =
      path: instructions:
      { config, ... }:
      {
        options = lib.setAttrByPath path (lib.mkOption {
          type = types.json;
          default = null;
        });
        config.assertions = [
          {
            assertion = lib.attrByPath path null config == null;
            message = "The option definition `${builtins.concatStringsSep "." path}' no longer has any effect; please remove it.\n${instructions}";
          }
        ];
      };
    setAttrByPath =
      path: value:
      if path == [ ] then value else { ${head path} = lib.setAttrByPath (builtins.tail path) value; };
    attrByPath =
      path: default: set:
      if path == [ ] then
        set
      else if isAttrs set && set ? ${head path} then
        lib.attrByPath (builtins.tail path) default set.${head path}
      else
        default;
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    inherit escapeShellArg;
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
    getExe = p: "${p}/bin/${p.meta.mainProgram}";
    importJSON = f: builtins.fromJSON (builtins.readFile f);
    optional = c: x: if c then [ x ] else [ ];
    mapAttrsToList = f: a: map (n: f n a.${n}) (attrNames a);
    optionalAttrs = c: a: if c then a else { };
    recursiveUpdate =
      lhs: rhs:
      lhs
      // builtins.mapAttrs (
        name: value:
        if builtins.isAttrs value && builtins.isAttrs (lhs.${name} or null) then
          lib.recursiveUpdate lhs.${name} value
        else
          value
      ) rhs;
  };

  # Store objects the units refer to. Files are real (builtins.toFile); a build
  # (runCommand) is recorded as JSON and run by render_units.py, PATH from its inputs.
  pkgs = {
    formats.yaml = _: {
      type = types.json;
      generate = name: value: builtins.toFile name (builtins.toJSON value);
    };
    runCommand =
      name: env: script:
      builtins.toFile "${name}.stub-build" (
        builtins.toJSON {
          inherit name script;
          path = map (p: "${p}/bin") (env.nativeBuildInputs or [ ]);
        }
      );
    writeShellScript = name: text: builtins.toFile name "#!/bin/bash\n${text}";
    writeText = builtins.toFile;
    # the venv has python3 with jinja2, and Debian's vtysh is in /usr/bin
    python3.withPackages = _: { outPath = package; };
    frr.outPath = "/usr";
    # Debian's /usr/bin stands in for these store paths.
    coreutils.outPath = "/usr";
    systemd.outPath = "/usr";
    nftables.outPath = "/usr";
  };

  utils = {
    # nixos/lib/utils.nix semantics: JSON-quoted, systemd's % and $ doubled.
    escapeSystemdExecArgs = args: builtins.concatStringsSep " " (
      map (a: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString a))) args
    );
    # nixos/lib/utils.nix, reduced to interface names ([A-Za-z0-9._-]): only "-" is escaped.
    escapeSystemdPath =
    s:
    builtins.replaceStrings [ "/" ] [ "-" ] (
      builtins.replaceStrings [ "-" ] [ "\\x2d" ] (
        builtins.elemAt (builtins.match "/*(.*[^/])/*" s) 0
      )
    );
  };

  at = path: name: if path == "" then name else "${path}.${name}";
  # the attribute name of a value in an attrsOf submodule (names without dots)
  lastName =
    path:
    let
      parts = builtins.split "\\." path;
    in
    builtins.elemAt parts (builtins.length parts - 1);
  isOption = decl: decl._type or null == "option";

  # Definitions against declarations: every name declared, every value of its type,
  # into lists, attribute sets and submodules. True, or a throw with NixOS's message.
  check =
    path: decls: defs:
    let
      unknown = filter (n: !(decls ? ${n})) (attrNames defs);
    in
    if unknown != [ ] then
      throw "The option `${at path (head unknown)}' does not exist."
    else
      all (
        n:
        if isOption decls.${n} then
          checkValue (at path n) decls.${n}.type defs.${n}
        else
          check (at path n) decls.${n} defs.${n}
      ) (attrNames defs);

  checkValue =
    path: t: v:
    if !(t.check v) then
      throw "The option `${path}' is not of type `${t.description or t.name}' (got a ${typeOf v})."
    else if t ? optionsAt then
      check path (t.optionsAt (lastName path) (throw "a submodule's options may not depend on its config")) v
    else if !(t ? elemType) || v == null then
      true
    else if t.wraps or false then
      checkValue path t.elemType v
    else if isList v then
      all (checkValue path t.elemType) v
    else if isAttrs v && !(v ? outPath) then
      all (n: checkValue "${path}.${n}" t.elemType v.${n}) (attrNames v)
    else
      checkValue path t.elemType v;

  # The module's own options as the module reads them: checked definitions, defaults
  # filled in, submodules too.
  resolveOptions =
    path: decls: defs:
    assert check path decls defs;
    mapAttrs (
      name: decl:
      if isOption decl then
        resolveValue (at path name) decl (if defs ? ${name} then [ defs.${name} ] else [ ])
      else
        resolveOptions (at path name) decl (defs.${name} or { })
    ) decls;

  resolveValue =
    path: decl: def:
    resolveTyped path decl.type (
      if def != [ ] then
        head def
      else if decl ? default then
        decl.default
      else
        throw "The option `${path}' is used but not defined."
    );

  # Into submodules (their defaults filled in, from their own resolved config), through
  # nullOr and into each value of an attrsOf.
  resolveTyped =
    path: t: value:
    if value == null then
      null
    else if t ? optionsAt then
      let
        self = resolveOptions path (t.optionsAt (lastName path) self) value;
      in
      self
    else if t.wraps or false then
      resolveTyped path t.elemType value
    else if t ? elemType && isAttrs value && !(value ? outPath) then
      mapAttrs (n: resolveTyped "${path}.${n}" t.elemType) value
    else
      value;

  # Definitions: mkIf dropped or unwrapped, mkMerge flattened, attrsets merged, lists concatenated.
  defsOf =
    d:
    if d._type or null == "if" then
      (if d.condition then defsOf d.content else [ ])
    else if d._type or null == "merge" then
      concatMap defsOf d.contents
    else
      [ d ];

  isNode = d: isAttrs d && !(d ? outPath) && !(d ? _type);

  merge =
    path: ds:
    if all isNode ds then
      let
        names = attrNames (builtins.foldl' (a: d: a // d) { } ds);
        defsFor = n: concatMap (d: if d ? ${n} then defsOf d.${n} else [ ]) ds;
      in
      listToAttrs (
        concatMap (
          n:
          let
            sub = defsFor n;
          in
          if sub == [ ] then
            [ ]
          else
            [
              {
                name = n;
                value = merge (at path n) sub;
              }
            ]
        ) names
      )
    else if all isList ds then
      concatLists ds
    else if all (d: d == head ds) ds then
      head ds
    else
      throw "The option `${path}' has conflicting definitions.";

  # The module and its imports (functions of the module arguments, or attrsets).
  args = { inherit config lib pkgs utils; };
  top = import module args;
  modules =
    [ top ]
    ++ map (
      i:
      let
        m = if builtins.isPath i then import i else i;
      in
      if builtins.isFunction m then m args else m
    ) (top.imports or [ ]);
  m = {
    options = builtins.foldl' (acc: mod: lib.recursiveUpdate acc (mod.options or { })) nixosOptions modules;
    config = concatMap (mod: defsOf (mod.config or { })) modules;
  };

  # NixOS options outside the module that it reads: other modules' unit definitions.
  nixosOptions.systemd.services = lib.mkOption {
    type = types.json;
    default = { };
  };
  nixos = import ./nixos-options.nix { inherit lib; };

  # The package option points at a real ixpect (a venv), so the units' ExecStart exist.
  withPackage = definitions // {
    services.ixpect = definitions.services.ixpect // {
      package = {
        outPath = package;
        meta.mainProgram = "ixpect";
      };
    };
  };

  resolved = resolveOptions "" m.options withPackage;
  config = resolved // {
    systemd = resolved.systemd // {
      package = pkgs.systemd;
    };
  };

  out = merge "" (concatMap defsOf m.config);
  failed = filter (a: !a.assertion) (out.assertions or [ ]);
in
if failed != [ ] then
  throw "Failed assertions:\n- ${builtins.concatStringsSep "\n- " (map (a: a.message) failed)}"
else
  assert check "" nixos.options out;
  {
    services = out.systemd.services or { };
    timers = out.systemd.timers or { };
    etc = mapAttrs (_: e: e.source) (out.environment.etc or { });
    users = out.users or { };
    packages = out.environment.systemPackages or [ ];
    frr = out.services.frr or { };
  }
