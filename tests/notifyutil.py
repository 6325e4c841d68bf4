"""Helpers shared by the notifier tests: sample batches, polling, and a real HTTP
server on loopback that records requests and answers with scripted status codes."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scapy.layers.l2 import ARP, Ether

from ixpect.events import Batch

RETRY = {"retry_initial": 0.02, "retry_max": 0.1}


def arp_batch(ip: str = "192.0.2.1", type: str = "ARP_NEIGHBOR_SPOOFED_STATIC", count: int = 3) -> Batch:
    frame = bytes(Ether(src="aa:bb:cc:dd:ee:ff", dst="ff:ff:ff:ff:ff:ff")
                  / ARP(hwsrc="aa:bb:cc:dd:ee:ff", psrc=ip, pdst="192.0.2.254"))
    return Batch(type, {"ip4_addr": ip, "mac_addr": "aa:bb:cc:dd:ee:ff",
                        "mac_addr_expected": ["00:11:22:33:44:55"]},
                 {"asn": 64500, "name": "Example & Co"}, 1761426013.123456, 1761426020.5, count, frame)




def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """HTTP server recording every request; `statuses` are answered in order, then 200
    (400 for any body containing `reject`)."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0, reject: bytes | None = None,
                 cert: tuple[Path, Path] | None = None, client_ca: Path | None = None):
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with recorder.lock:
                    status = recorder.statuses.pop(0) if recorder.statuses else 200
                    if reject is not None and reject in body:
                        status = 400
                    recorder.requests.append({"time": time.monotonic(), "method": self.command, "path": self.path, "status": status,
                                              "headers": dict(self.headers), "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
            if client_ca is not None:  # mutual TLS: only clients with a certificate it signed
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        scheme = "https" if cert is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def delivered(self, path: str | None = None) -> list[dict]:
        """Bodies (parsed JSON) of the requests answered 2xx, optionally for one path."""
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests
                    if r["status"] < 300 and (path is None or r["path"] == path)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
