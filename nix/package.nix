# The ixpect Python application, built from this checkout with its pyproject.toml.
{
  lib,
  python3Packages,
}:

let
  version = builtins.head (
    builtins.match ".*__version__ = \"([^\"]+)\".*" (builtins.readFile ../ixpect/__init__.py)
  );
in
python3Packages.buildPythonApplication {
  pname = "ixpect";
  inherit version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../ixpect
    ];
  };

  build-system = [ python3Packages.setuptools ];

  dependencies = with python3Packages; [
    jinja2
    jsonschema
    prometheus-client
    pyroute2
    pyyaml
    requests
    urllib3
  ];

  # The pytest suite needs root, network namespaces and test data outside the package; it runs
  # with `make test` (CI: .ci/run) and the VM tests (flake checks) exercise the installed package.
  doCheck = false;
  pythonImportsCheck = [
    "ixpect"
    "ixpect.cli"
    "ixpect._frames" # the C extension was built
  ];

  meta = {
    description = "Passive hygiene monitor for Internet Exchange peering LANs";
    license = lib.licenses.mit;
    mainProgram = "ixpect";
    platforms = lib.platforms.linux;
  };
}
