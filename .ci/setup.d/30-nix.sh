# tests/test_nix.py: nix-instantiate (Debian's nix-bin; no nixpkgs, no binary cache needed)
# and systemd-analyze for the rendered units.
set -euo pipefail
need=()
command -v nix-instantiate >/dev/null || need+=(nix-bin)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
