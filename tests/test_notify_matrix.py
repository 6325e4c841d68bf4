"""The matrix notifier against a real Synapse homeserver on loopback (SQLite, no
federation), installed in its own venv by setup/synapse.sh (`make test` runs it)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml
from notifyutil import RETRY, arp_batch, free_port

from conftest import missing, wait_for

from ixpect.events import Batch
from ixpect.notify import channels
from ixpect.notify.delivery import Delivery

VENV = Path(os.environ.get("IXPECT_SYNAPSE_VENV", "/var/cache/ixpect-ci/synapse-venv"))

pytestmark = pytest.mark.slow


def synapse_python() -> Path:
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import synapse"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        missing(f"matrix-synapse in {VENV} (setup/synapse.sh)")
    return python


@pytest.fixture(scope="module")
def synapse(tmp_path_factory):
    python = synapse_python()
    home = tmp_path_factory.mktemp("synapse")
    config = home / "homeserver.yaml"
    subprocess.run([str(python), "-m", "synapse.app.homeserver", "--server-name", "localhost",
                    "--config-path", str(config), "--data-directory", str(home),
                    "--generate-config", "--report-stats=no"], check=True, capture_output=True, cwd=home)
    cfg = yaml.safe_load(config.read_text())
    port = free_port()
    unlimited = {"per_second": 1000, "burst_count": 1000}
    cfg.update(
        listeners=[{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                    "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        trusted_key_servers=[], suppress_key_server_warning=True, federation_domain_whitelist=[],
        presence={"enabled": False}, rc_message=unlimited, rc_registration=unlimited,
        rc_login={"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
    )
    config.write_text(yaml.safe_dump(cfg))
    url = f"http://127.0.0.1:{port}"
    with open(home / "stdout.log", "wb") as out:
        proc = subprocess.Popen([str(python), "-m", "synapse.app.homeserver", "-c", str(config)],
                                cwd=home, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"synapse exited: {(home / 'stdout.log').read_text()[-2000:]}")
            try:
                return requests.get(url + "/_matrix/client/versions", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=180, what="synapse to listen")
        # register a user through the shared-secret admin API (what register_new_matrix_user does)
        api = url + "/_synapse/admin/v1/register"
        nonce = requests.get(api, timeout=10).json()["nonce"]
        user, password = "ixpect", "ixpect-matrix-pass"
        mac = hmac.new(cfg["registration_shared_secret"].encode(),
                       b"\0".join([nonce.encode(), user.encode(), password.encode(), b"notadmin"]),
                       hashlib.sha1).hexdigest()
        r = requests.post(api, json={"nonce": nonce, "username": user, "password": password,
                                     "admin": False, "mac": mac}, timeout=30)
        r.raise_for_status()
        yield {"url": url, "token": r.json()["access_token"], "user_id": r.json()["user_id"]}
    finally:
        proc.terminate()
        proc.wait(30)


def test_message_arrives_in_the_room(synapse, tmp_path):
    auth = {"Authorization": f"Bearer {synapse['token']}"}
    r = requests.post(synapse["url"] + "/_matrix/client/v3/createRoom", json={"name": "ixpect alerts"},
                      headers=auth, timeout=30)
    r.raise_for_status()
    room = r.json()["room_id"]
    token_file = tmp_path / "matrix-token"
    token_file.write_text(synapse["token"] + "\n")
    d = Delivery(channels({"matrix": {"homeserver": synapse["url"], "access_token_file": str(token_file),
                                      "channels": [{"room_id": room, "events": []}]}}), **RETRY)
    spoof = arp_batch()
    stp = Batch("STP_PACKET_FOUND", {"mac_addr_source": "02:00:00:00:00:01",
                                     "mac_addr_destination": "01:80:c2:00:00:00"}, None, 1.0, 1.0)
    d([spoof, stp])
    wait_for(lambda: d.pending() == 0, timeout=30, what="delivery to synapse")
    d.close(1)

    r = requests.get(f"{synapse['url']}/_matrix/client/v3/rooms/{quote(room, safe='')}/messages",
                     params={"dir": "b", "limit": 50}, headers=auth, timeout=30)
    r.raise_for_status()
    msgs = {e["content"]["body"].splitlines()[0]: e for e in r.json()["chunk"] if e["type"] == "m.room.message"}
    assert set(msgs) == {"[IXpect] ARP_NEIGHBOR_SPOOFED_STATIC triggered in 1 batches (3 events)",
                         "[IXpect] STP_PACKET_FOUND triggered in 1 batches (1 events)"}
    event = msgs["[IXpect] ARP_NEIGHBOR_SPOOFED_STATIC triggered in 1 batches (3 events)"]
    content = event["content"]
    assert event["sender"] == synapse["user_id"]
    assert content["msgtype"] == "m.text" and content["format"] == "org.matrix.custom.html"
    assert f"id {spoof.id}" in content["body"] and "member: AS64500 (Example & Co)" in content["body"]
    assert "<table>" in content["formatted_body"]
    assert f"<tr><td>3</td><td>2025-10-25T21:00:13.123456Z</td><td><code>{spoof.id}</code></td>" \
        in content["formatted_body"]

    # a retry of the same message (response lost) reuses its transaction id: no duplicate
    d = Delivery(channels({"matrix": {"homeserver": synapse["url"], "access_token": synapse["token"],
                                      "channels": [{"room_id": room}]}}), **RETRY)
    d.workers[0].channel.notifier.send([stp])
    d.close(1)
    r = requests.get(f"{synapse['url']}/_matrix/client/v3/rooms/{quote(room, safe='')}/messages",
                     params={"dir": "b", "limit": 50}, headers=auth, timeout=30)
    assert sum(e["type"] == "m.room.message" for e in r.json()["chunk"]) == 2
