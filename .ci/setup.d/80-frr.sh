# Debian's FRR (bgpd, zebra, vtysh) for tests/test_evpn.py: a fabric leaf and the
# monitor's EVPN speaker in network namespaces. The package's own service stays unused.
set -euo pipefail
if [ ! -x /usr/lib/frr/bgpd ] || ! command -v vtysh >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends frr
fi
