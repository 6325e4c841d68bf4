# System packages the test suite uses (iproute2 for netns tests, tcpdump corpus tools).
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi
