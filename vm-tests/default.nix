# The NixOS VM tests, as flake checks: `nix flake check` or `nix build .#checks.x86_64-linux.vm-interface`.
{ pkgs, module }:
{
  vm-interface = pkgs.testers.runNixOSTest (import ./interface.nix { inherit module; });
  vm-vxlan = pkgs.testers.runNixOSTest (import ./vxlan.nix { inherit module; });
  vm-evpn = pkgs.testers.runNixOSTest (import ./evpn.nix { inherit module; });
}
