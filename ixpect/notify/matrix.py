"""The `matrix` notifier: one message per event type per window into a room, an HTML
table for clients that render it and plain text for those that do not."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import requests

from ixpect.events import Batch
from ixpect.notify import Notifier, by_type, secret
from ixpect.notify.render import Templates, render

TIMEOUT = 10.0


class MatrixNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        self.homeserver = cfg["homeserver"].rstrip("/")
        self.token = secret(cfg, "access_token")
        self.secrets = (self.token,)
        self.room = channel["room_id"]
        self.text, self.html = templates.get("summary.txt"), templates.get("table.html")

    messages = staticmethod(by_type)

    def send(self, batches: list[Batch]) -> None:
        # the transaction id is derived from the message, so that a retry after a lost
        # response is recognised by the homeserver and not posted twice
        txn = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.room}/{batches[0].id}").hex
        url = (f"{self.homeserver}/_matrix/client/v3/rooms/{quote(self.room, safe='')}"
               f"/send/m.room.message/{txn}")
        content = {"msgtype": "m.text",
                   "body": render(self.text, batches),
                   "format": "org.matrix.custom.html",
                   "formatted_body": render(self.html, batches)}
        r = requests.put(url, json=content, headers={"Authorization": f"Bearer {self.token}"},
                         timeout=TIMEOUT)
        r.raise_for_status()
