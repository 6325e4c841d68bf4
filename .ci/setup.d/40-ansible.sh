# tests/test_ansible_e2e.py: debootstrap builds the Debian 12 root, systemd-nspawn
# (systemd-container) boots it, nsenter (util-linux) drives it.
set -euo pipefail
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
