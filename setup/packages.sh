#!/bin/sh
# What `make run` needs from the system, and with `test` what `make test` needs too:
# each line is a Debian/Ubuntu package and the check that it is there. Only what
# fails its check is installed (apt-get runs only then, so a second run is a no-op);
# without root or without apt-get, stop with the command to run.
set -eu

requirements() {
    cat <<'LIST'
python3       command -v python3
python3-venv  python3 -c 'import ensurepip'
python3-dev   python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))'
gcc           command -v gcc
LIST
    [ "${1:-run}" = test ] || return 0
    cat <<'LIST'
iproute2           command -v ip
tcpreplay          command -v tcpreplay
nix-bin            command -v nix-instantiate
systemd            command -v systemd-analyze
systemd-container  command -v systemd-nspawn
debootstrap        command -v debootstrap
util-linux         command -v nsenter
prometheus-alertmanager  command -v prometheus-alertmanager
prometheus         command -v promtool
frr                test -x /usr/lib/frr/bgpd && command -v vtysh
nftables           command -v nft
LIST
}

missing=$(requirements "${1:-run}" | while read -r package check; do
    sh -c "$check" >/dev/null 2>&1 || printf ' %s' "$package"
done)
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Not Debian/Ubuntu: install your distribution's equivalents of:$missing" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "Missing system packages; as root run:  apt-get install -y$missing" >&2
    exit 1
fi
echo "Installing:$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
