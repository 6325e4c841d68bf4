# A real Alertmanager (with amtool) and Prometheus (with promtool) for tests/test_fleet.py:
# the alertmanager notifier, the metrics exposition, the shipped rules, the dashboard.
set -euo pipefail
need=()
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
