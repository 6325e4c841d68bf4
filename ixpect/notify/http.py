"""The `http` notifier: one request per window with a body rendered from a template
(by default JSON with every batch), for webhooks and ticket systems."""

from __future__ import annotations

import requests

from ixpect.events import Batch
from ixpect.notify import Notifier, url_secrets
from ixpect.notify.render import Templates, render


class HttpNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        self.url = channel["url"]
        self.method = channel.get("method", "POST").upper()
        headers = {k: str(v) for k, v in (channel.get("headers") or {}).items()}
        self.headers = {"Content-Type": channel.get("content_type", "application/json"), **headers}
        self.verify = channel.get("verify_tls", True)
        self.timeout = float(channel.get("timeout", 10.0))
        path = channel.get("template")
        self.template = templates.load(path) if path else templates.get("http.json")
        # header values carry tokens (Authorization, X-Api-Key ...), the URL may too;
        # very short values are left alone, scrubbing them would garble every message
        self.secrets = (*url_secrets(self.url), *(v for v in headers.values() if len(v) >= 6))

    def send(self, batches: list[Batch]) -> None:
        body = render(self.template, batches).encode()
        r = requests.request(self.method, self.url, data=body, headers=self.headers,
                             verify=self.verify, timeout=self.timeout)
        r.raise_for_status()
