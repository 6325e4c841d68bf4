"""The `alertmanager` notifier: every batch becomes an alert posted to Alertmanager's
v2 API, so that the routing, grouping, silences and inhibition an exchange already
runs for Prometheus serve IXpect too.

Labels are what an operator routes and groups by: alertname (the event type),
severity (per event type), the member (ASN, name; the claimed one of a spoof too),
the MAC and IP the event is about, and static labels such as the PoP and LAN.
Counts, times, data and a link go into annotations, so a repeat updates the same
alert. An alert ends `resolve_after` after it was sent; every window that sees the
event again sends it again and so extends it.

A channel may name several Alertmanagers (a cluster): like Prometheus, IXpect posts to
every one of them, since a cluster shares silences and notification state but not
alerts; delivery succeeds when at least one has taken the alerts.

IXPECT_CAPTURE_SILENT fires until IXPECT_CAPTURE_RESUMED, which is sent as the end of
that alert rather than as an alert of its own."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import requests

from ixpect.events import Batch, iso
from ixpect.notify import Notifier, scrub, secret, url_secrets
from ixpect.notify.log import describe
from ixpect.notify.render import Templates

log = logging.getLogger(__name__)

API = "/api/v2/alerts"
#: event data keys that name the subject of an alert, most specific first
_MAC = ("mac_addr", "mac_addr_source")
_IP = ("ip4_addr", "ip6_addr", "ip4_addr_source", "ip6_addr_source", "ip4_addr_target", "ip6_addr_target")
#: Batch attribute -> prefix of its asn/member labels
_MEMBERS = (("member", ""), ("member_claimed", "claimed_"))
#: event type -> the alert it ends. The alert it ends fires until then, not for
#: resolve_after: a blind monitor stays blind without saying so again.
ENDS = {"IXPECT_CAPTURE_RESUMED": "IXPECT_CAPTURE_SILENT"}
UNTIL_ENDED = 365 * 86400.0


def endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(API) else url + API


class AlertmanagerNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        self.labels = {"source": "ixpect", "instance": socket.gethostname(), **cfg.get("labels", {})}
        self.severity = cfg.get("severity", {})
        self.resolve_after = float(cfg.get("resolve_after", 300.0))
        self.link = templates.env.from_string(cfg["link"]) if cfg.get("link") else None
        self.urls = [endpoint(u) for u in channel.get("urls") or [channel["url"]]]
        self.timeout = float(channel.get("timeout", 10.0))
        self.session = requests.Session()
        for key in ("ca_file", "cert_file", "key_file"):  # unreadable: an error at start, not at every send
            if channel.get(key):
                Path(channel[key]).open("rb").close()
        # per request: a Session's own `verify` loses to REQUESTS_CA_BUNDLE
        self.verify = channel.get("ca_file") or channel.get("verify_tls", True)
        if channel.get("cert_file"):
            self.session.cert = (channel["cert_file"], channel.get("key_file") or channel["cert_file"])
        basic, token = channel.get("basic_auth"), secret(channel, "bearer_token")
        password = secret(basic, "password") if basic else None
        if basic:
            self.session.auth = (basic["username"], password)
        elif token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.secrets = (*(s for u in self.urls for s in url_secrets(u) if s != API),  # the path is no secret
                        *(s for s in (password, token) if s))

    def alert(self, b: Batch, now: float) -> dict:
        name = ENDS.get(b.type, b.type)
        labels = {"alertname": name, **self.labels}
        severity = self.severity.get(name, self.severity.get("default"))
        if severity:
            labels["severity"] = severity
        for label, keys in (("mac", _MAC), ("ip", _IP)):
            value = next((b.data[k] for k in keys if k in b.data), None)
            if value is not None:
                labels[label] = str(value)
        for attr, prefix in _MEMBERS:
            if m := getattr(b, attr, None):
                owners = (m, *m.get("shared_with", ()))
                labels[prefix + "asn"] = "/".join(str(o["asn"]) for o in owners)
                labels[prefix + "member"] = " / ".join(str(o["name"]) for o in owners)
        annotations = {"summary": describe(b), "count": str(b.count), "first": iso(b.first), "last": iso(b.last),
                       "batch_id": b.id, "data": json.dumps(b.data)}
        if name != b.type:
            ends = b.first
        else:
            ends = max(b.last, now) + (UNTIL_ENDED if name in ENDS.values() else self.resolve_after)
        out = {"labels": labels, "annotations": annotations, "startsAt": iso(min(b.first, now)), "endsAt": iso(ends)}
        if self.link is not None:
            try:
                annotations["link"] = out["generatorURL"] = self.link.render(
                    type=b.type, data=b.data, member=b.member, labels=labels, batch=b.to_json()).strip()
            except Exception as exc:  # noqa: BLE001 - a link that fails must not hold the alert back
                log.warning("alertmanager: link template failed for %s, sent without link: %s: %s",
                            b.type, type(exc).__name__, exc)
        return out

    def send(self, batches: list[Batch]) -> None:
        now = time.time()
        body = [self.alert(b, now) for b in batches]
        errors = []
        for url in self.urls:
            try:
                self.session.post(url, json=body, verify=self.verify, timeout=self.timeout).raise_for_status()
            except (requests.RequestException, OSError) as exc:  # OSError: a TLS file gone since start
                errors.append(exc)
        if len(errors) == len(self.urls):
            raise errors[0]
        for exc in errors:  # the others have the alerts; this one may lack them until the next window
            log.warning("alertmanager: one of %d Alertmanagers refused: %s: %s", len(self.urls),
                        type(exc).__name__, scrub(str(exc), self.secrets))
