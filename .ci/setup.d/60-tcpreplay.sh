# tcpreplay floods the monitor's veth in the storm test (tests/test_storm.py) and bench/live.py.
set -euo pipefail
if ! command -v tcpreplay >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpreplay
fi
