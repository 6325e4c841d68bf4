"""The `alertmanager` notifier: every batch becomes an alert posted to Alertmanager's
v2 API, so that existing Prometheus routing (per PoP, per team, silences, inhibition)
serves IXpect too.

Labels identify the alert (alertname = event type, instance = this host so that one
Alertmanager serves many PoPs, plus the MAC, IP and member it is about); counts and times go into annotations so that a repeat updates the same alert.
No endsAt is sent: Alertmanager resolves the alert after its resolve_timeout."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import requests

from ixpect.events import Batch, iso
from ixpect.notify import Notifier
from ixpect.notify.log import describe
from ixpect.notify.render import Templates

API = "/api/v2/alerts"
#: event data keys that name the subject of an alert, most specific first
_MAC = ("mac_addr", "mac_addr_source")
_IP = ("ip4_addr", "ip6_addr", "ip4_addr_source", "ip6_addr_source", "ip4_addr_target", "ip6_addr_target")


def alert(b: Batch) -> dict:
    labels = {"alertname": b.type, "source": "ixpect", "instance": socket.gethostname()}
    for label, keys in (("mac", _MAC), ("ip", _IP)):
        value = next((b.data[k] for k in keys if k in b.data), None)
        if value is not None:
            labels[label] = str(value)
    if b.member:
        labels["asn"] = str(b.member["asn"])
        labels["member"] = str(b.member["name"])
    return {"labels": labels,
            "annotations": {"summary": describe(b), "count": str(b.count), "first": iso(b.first),
                            "last": iso(b.last), "batch_id": b.id, "data": json.dumps(b.data)},
            "startsAt": iso(b.first)}


class AlertmanagerNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        url = channel["url"].rstrip("/")
        self.url = url if url.endswith(API) else url + API
        self.timeout = float(channel.get("timeout", 10.0))
        password = urlsplit(self.url).password  # basic auth in the URL
        self.secrets = (password,) if password else ()

    def send(self, batches: list[Batch]) -> None:
        r = requests.post(self.url, json=[alert(b) for b in batches], timeout=self.timeout)
        r.raise_for_status()
