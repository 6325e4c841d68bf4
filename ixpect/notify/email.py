"""The `email` notifier: one mail per event type per window, plain text and HTML
from templates, each batch's sample frame attached as `<batch id>.pcap`.

`encryption: tls` is DD-IX's `TLS`, which its deployments use on the submission
port 587 as well as on 465: TLS from the first byte on port 465 (RFC 8314's
implicit TLS), required STARTTLS on any other port. `smtps` is implicit TLS on
any port, `starttls` and `none` mean what they say. TLS certificates are verified
against the system trust store (SSL_CERT_FILE points elsewhere, e.g. at an
internal CA)."""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ixpect.events import Batch
from ixpect.notify import Notifier, by_type, secret
from ixpect.notify.render import Templates, render
from ixpect.pcapwrite import pcap

TIMEOUT = 30.0
SMTPS_PORT = 465  # RFC 8314: submission over implicit TLS

log = logging.getLogger(__name__)


def transport(encryption: str, port: int) -> str:
    """How a connection is secured: "smtps" (implicit TLS), "starttls" or "none"."""
    if encryption == "tls":
        return "smtps" if port == SMTPS_PORT else "starttls"
    return encryption


class EmailNotifier(Notifier):
    def __init__(self, cfg: dict, channel: dict, templates: Templates):
        smtp = cfg["smtp"]
        self.host = smtp["host"]
        self.port = int(smtp.get("port", 25))
        self.encryption = transport(smtp.get("encryption", "tls"), self.port)
        auth = smtp.get("auth")
        self.mechanism = (auth or {}).get("mechanism", "plain").upper()
        self.user = auth["user"] if auth else None
        self.password = secret(auth, "pass") if auth else None
        self.secrets = (self.password,) if self.password else ()
        self.sender = cfg["from"]
        self.to = list(channel["to"])
        self.subject, self.text, self.html = map(templates.get, ("subject.txt", "email.txt", "email.html"))
        log.info("email to %s: via %s:%d with %s (encryption: %s)", ", ".join(self.to), self.host, self.port,
                 {"smtps": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[self.encryption],
                 smtp.get("encryption", "tls"))

    messages = staticmethod(by_type)

    def message(self, batches: list[Batch]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = " ".join(render(self.subject, batches).split())  # one header line
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(time.time(), usegmt=True)
        msg["Message-ID"] = make_msgid("ixpect", domain=self.sender.rpartition("@")[2].strip("> ") or None)
        msg.set_content(render(self.text, batches))
        msg.add_alternative(render(self.html, batches), subtype="html")
        for b in batches:
            if b.sample is not None:
                msg.add_attachment(pcap([(b.first, b.sample)]), maintype="application",
                                   subtype="vnd.tcpdump.pcap", filename=f"{b.id}.pcap")
        return msg

    def send(self, batches: list[Batch]) -> None:
        msg = self.message(batches)
        context = ssl.create_default_context()
        if self.encryption == "smtps":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        with conn:
            conn.ehlo()
            if self.encryption == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.user is not None:
                conn.user, conn.password = self.user, self.password
                conn.auth(self.mechanism, getattr(conn, f"auth_{self.mechanism.lower()}"))
            conn.send_message(msg)
