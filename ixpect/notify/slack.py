"""The `slack` notifier: an incoming webhook, one message per event type per window
as a mrkdwn list (Slack renders no tables)."""

from __future__ import annotations

import requests

from ixpect.events import Batch
from ixpect.notify import Notifier, by_type, secret, url_secrets
from ixpect.notify.render import Templates, render

TIMEOUT = 10.0


class SlackNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        self.url = secret(channel, "webhook_url")
        self.secrets = url_secrets(self.url)
        self.template = templates.get("slack.txt")

    messages = staticmethod(by_type)

    def send(self, batches: list[Batch]) -> None:
        text = render(self.template, batches)
        r = requests.post(self.url, json={"text": text}, timeout=TIMEOUT)
        r.raise_for_status()
