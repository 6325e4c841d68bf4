"""`ixpect ixf render` against a real HTTP server on loopback: success, conditional requests,
and failures that must leave the rendered config and member table byte-for-byte untouched."""

from __future__ import annotations

import functools
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SHARED
from ixpect.cli import main

pytestmark = pytest.mark.needs("test data")


@functools.cache
def export() -> bytes:
    return (SHARED / "ixf" / "franceix-mrs-2016-10-v0.5.json").read_bytes()


ETAG = '"mrs-2016-10"'
LAST_MODIFIED = "Sat, 22 Oct 2016 19:46:50 GMT"


def half_members(body: bytes) -> bytes:
    doc = json.loads(body)
    doc["member_list"] = doc["member_list"][: len(doc["member_list"]) // 2]
    return json.dumps(doc).encode()


class Portal(BaseHTTPRequestHandler):
    """An IXP portal whose behaviour the test switches: server.mode is one of the keys below."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(dict(self.headers))
        if self.path == "/old":
            return self._send(301, b"", {"Location": "/members.json"})
        mode = srv.mode
        if mode == "ok" and self.headers.get("If-None-Match") == ETAG:
            return self._send(304, b"", {"ETag": ETAG})
        body = {"ok": export(), "500": b"<h1>Internal Server Error</h1>", "truncated": export()[: len(export()) // 2],
                "half": half_members(export())}[mode]
        self._send(500 if mode == "500" else 200, body,
                   {"Content-Type": "application/json", "ETag": ETAG if mode == "ok" else '"other"',
                    "Last-Modified": LAST_MODIFIED})

    def _send(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def portal():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    srv.mode, srv.requests = "ok", []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def render(capsys, url, out, *extra):
    code = main(["ixf", "render", "--source", url, "--ixp-id", "5", "--vlan-id", "5", "-o", str(out), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_render_from_server_then_failures_leave_files_untouched(portal, tmp_path, capsys):
    out_dir = tmp_path / "etc"
    out_dir.mkdir()
    out = out_dir / "ixpect.conf.yaml"
    url = portal.url + "/old"  # a redirect first, as portals move
    assert main(["ixf", "list", "--source", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ixp_id 5  France-IX MRS",
        "  vlan_id 5  Peering  37.49.232.0/24 2001:7f8:54:5::/64  members 29  ipv4 29  ipv6 29  macs 28"]
    assert render(capsys, url, out)[:2] == (0, "changed\n")
    good = snapshot(out_dir)
    assert set(good) == {"ixpect.conf.yaml", "ixpect.conf.members.json", "ixpect.conf.status.json"}

    failures = {
        "500": f"error: {url}: HTTP 500 Internal Server Error (redirected to {portal.url}/members.json)",
        "truncated": f"error: {url}: invalid JSON at line 554 column 15: Unterminated string starting at "
                     f"({len(export()) // 2} bytes; the document ends early: truncated?)",
        # 15 of the 28 MACs go: 15 ARP, 15 ND and 15 EUI-64 link-local entries of 84
        "half": "error: refusing to drop 45 of 84 static entries (54%, limit --max-drop 30%)",
    }
    for mode, message in failures.items():
        portal.mode = mode
        code, stdout, stderr = render(capsys, url, out)
        assert (code, stdout) == (1, ""), mode
        assert message in stderr, stderr
        now = snapshot(out_dir)
        status = json.loads(now.pop("ixpect.conf.status.json"))
        assert now == {k: v for k, v in good.items() if k != "ixpect.conf.status.json"}, mode
        # the last success is kept beside the failure, for the staleness and failure metrics
        assert status["failed"] and message.removeprefix("error: ") in status["error"], mode
        assert {k: v for k, v in status.items() if k not in ("failed", "error")} == \
            json.loads(good["ixpect.conf.status.json"]), mode

    # the operator looked at the export and accepts the drop
    code, stdout, _ = render(capsys, url, out, "--force")
    assert (code, stdout) == (0, "changed\n")
    assert len(json.loads((out_dir / "ixpect.conf.members.json").read_text())["macs"]) == 28 - 15

    # back to the full export: entries are only added, and the files are what they were
    portal.mode = "ok"
    assert render(capsys, url, out)[:2] == (0, "changed\n")
    now = snapshot(out_dir)
    status, good_status = (json.loads(d.pop("ixpect.conf.status.json")) for d in (now, good))
    assert now == good
    assert status["entries"] == good_status["entries"] and status["refreshed"] > good_status["refreshed"]


def test_conditional_request_with_cache(portal, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    cache = tmp_path / "cache"
    url = portal.url + "/members.json"
    assert render(capsys, url, out, "--cache-dir", str(cache))[:2] == (0, "changed\n")
    assert "If-None-Match" not in portal.requests[0]
    assert cache.stat().st_mode & 0o777 == 0o700  # the cached URL may carry an API key
    code, stdout, _ = render(capsys, url, out, "--cache-dir", str(cache))
    assert (code, stdout) == (0, "unchanged\n")
    assert portal.requests[1]["If-None-Match"] == ETAG
    assert portal.requests[1]["If-Modified-Since"] == LAST_MODIFIED
    # a body that does not parse is never cached, so the next refresh fetches in full
    portal.mode = "truncated"
    assert render(capsys, url, out, "--cache-dir", str(cache))[0] == 1
    portal.mode = "ok"
    assert render(capsys, url, out, "--cache-dir", str(cache))[:2] == (0, "unchanged\n")
    assert portal.requests[3]["If-None-Match"] == ETAG


def test_connection_and_tls_errors_are_named(tmp_path, capsys, portal):
    out = tmp_path / "c.yaml"
    code, _, err = render(capsys, portal.url.replace("http:", "https:") + "/members.json", out)
    assert code == 1 and "TLS error" in err
    portal.shutdown()
    portal.server_close()
    code, _, err = render(capsys, portal.url + "/members.json", out)
    assert code == 1 and f"error: {portal.url}/members.json: ConnectionError" in err
    assert not out.exists()


def test_silent_server_times_out(tmp_path, capsys, monkeypatch):
    from ixpect.ixf import fetch

    monkeypatch.setattr(fetch, "TIMEOUT", (2, 0.5))
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/members.json"
        code, _, err = render(capsys, url, tmp_path / "c.yaml")
    assert code == 1 and err == f"error: {url}: timed out (connect 2s, read 0.5s)\n"


def test_unwritable_output_is_an_error_not_a_traceback(tmp_path, capsys, portal):
    out = tmp_path / "missing-dir" / "c.yaml"
    code, _, err = render(capsys, portal.url + "/members.json", out)
    assert code == 1
    assert err == f"error: {tmp_path / 'missing-dir' / 'c.members.json'}: cannot write: No such file or directory\n"


def test_errors_do_not_leak_api_keys(tmp_path, capsys, portal):
    portal.mode = "500"
    url = f"http://ixpect:pa55word@127.0.0.1:{portal.server_address[1]}/members.json?apikey=s3cr3t&v=1.0"
    code, _, err = render(capsys, url, tmp_path / "c.yaml")
    assert code == 1
    assert err == ("error: http://ixpect:***@127.0.0.1:%d/members.json?apikey=***&v=1.0: HTTP 500 "
                   "Internal Server Error\n" % portal.server_address[1])
    portal.shutdown()
    portal.server_close()
    code, _, err = render(capsys, url, tmp_path / "c.yaml")
    assert code == 1 and "ConnectionError" in err and "s3cr3t" not in err and "pa55word" not in err
