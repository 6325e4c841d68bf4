#!/bin/sh
# A real Matrix homeserver for the matrix notifier test, in its own venv (it is heavy and
# pins its own dependencies); tests/test_notify_matrix.py looks for it here, or at $IXPECT_SYNAPSE_VENV.
set -eu
venv=${IXPECT_SYNAPSE_VENV:-/var/cache/ixpect-ci/synapse-venv}
if "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    exit 0
fi
if ! mkdir -p "$(dirname "$venv")" 2>/dev/null || ! [ -w "$(dirname "$venv")" ]; then
    echo "Cannot install matrix-synapse into $venv: run this as root, or set IXPECT_SYNAPSE_VENV" >&2
    exit 1
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet matrix-synapse
