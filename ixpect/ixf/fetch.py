"""Get an export from a URL or a file and parse it as JSON.

URLs are fetched with requests (timeout, at most 5 redirects). An export may have at most
MAX_BODY bytes (on the wire and decompressed) and MAX_DEPTH levels of nesting, so that no
document exhausts the memory or the stack of what reads it. With a cache directory the last
good body is kept with its ETag/Last-Modified, so a refresh timer sends conditional requests and
an unchanged export costs the IXP's portal a 304.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import requests

from ixpect import __version__
from ixpect.atomic import write_atomic
from ixpect.ixf import IxfError

_SECRET = re.compile(r"key|token|secret|pass|auth", re.I)
TIMEOUT = (10, 60)  # connect, read (seconds)
MAX_REDIRECTS = 5
#: largest export accepted, on the wire and decompressed (real ones are a few MB)
MAX_BODY = 64 << 20
#: deepest nesting of JSON objects and arrays accepted (an export has about 10 levels)
MAX_DEPTH = 64


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load(source: str, cache_dir: str | None = None) -> dict:
    """The export as a dict; IxfError with the source named on any failure."""
    if not is_url(source):
        try:
            with open(source, "rb") as f:
                body = f.read(MAX_BODY + 1)
        except OSError as e:
            raise IxfError(f"{source}: cannot read: {e.strerror}") from None
        if len(body) > MAX_BODY:
            raise IxfError(f"{source}: the export is larger than {MAX_BODY >> 20} MiB")
        return parse(source, body)
    cache = _Cache(cache_dir, source) if cache_dir else None
    try:
        body = _get(source, cache)
        doc = parse(source, body)
    except IxfError as e:
        raise IxfError(scrub(str(e), source)) from None
    if cache:
        try:
            cache.store(body)
        except OSError as e:
            raise IxfError(f"{e.filename}: cannot write the cache: {e.strerror}") from None
    return doc


def scrub(text: str, url: str) -> str:
    """`text` without the URL's password and API keys (`?apikey=...`), since errors end up in logs."""
    parts = urlsplit(url)
    secrets = [v for k, v in parse_qsl(parts.query) if _SECRET.search(k)] + [parts.password or ""]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


def parse(source: str, body: bytes) -> dict:
    if not body.strip():
        raise IxfError(f"{source}: empty response")
    if body.lstrip()[:1] == b"<":
        raise IxfError(f"{source}: got HTML or XML, not JSON (a login or error page?)")
    try:
        text = body.decode("utf-8-sig")
        doc = json.loads(text)
    except UnicodeDecodeError as e:
        raise IxfError(f"{source}: not UTF-8 text at byte {e.start}") from None
    except json.JSONDecodeError as e:
        early = e.msg.startswith("Unterminated") or e.pos >= len(text.rstrip())
        hint = "; the document ends early: truncated?" if early else ""
        raise IxfError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
                       f" ({len(body)} bytes{hint})") from None
    except RecursionError:
        raise IxfError(f"{source}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # an integer longer than Python converts
        raise IxfError(f"{source}: invalid JSON: {str(e).partition(';')[0]}") from None
    if not isinstance(doc, dict):
        raise IxfError(f"{source}: top level is a JSON {type(doc).__name__}, not an object")
    if _depth(doc) > MAX_DEPTH:
        raise IxfError(f"{source}: JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def _depth(doc) -> int:
    """Nesting depth of a parsed JSON document, walked without recursion."""
    deepest, level = 0, [doc]
    while level:
        deepest += 1
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c)
                 if isinstance(v, (dict, list))]
        if deepest > MAX_DEPTH:
            break
    return deepest


def _get(url: str, cache: _Cache | None) -> bytes:
    headers = {"User-Agent": f"ixpect/{__version__}", "Accept": "application/json"}
    if cache:
        headers.update(cache.validators())
    with requests.Session() as s:
        s.max_redirects = MAX_REDIRECTS
        try:
            with s.get(url, headers=headers, timeout=TIMEOUT, stream=True) as r:
                if r.status_code == 304 and cache:
                    return cache.body()
                if r.status_code != 200:
                    via = f" (redirected to {r.url})" if r.url != url else ""
                    raise IxfError(f"{url}: HTTP {r.status_code} {r.reason}{via}")
                body = _body(r, url)  # a short read raises here
        except requests.exceptions.SSLError as e:
            raise IxfError(f"{url}: TLS error: {e}") from None
        except requests.exceptions.Timeout:
            raise IxfError(f"{url}: timed out (connect {TIMEOUT[0]}s, read {TIMEOUT[1]}s)") from None
        except requests.exceptions.TooManyRedirects:
            raise IxfError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
        except requests.RequestException as e:
            raise IxfError(f"{url}: {type(e).__name__}: {e}") from None
    if cache:
        cache.pending = {k: r.headers[h] for k, h in (("etag", "ETag"), ("last_modified", "Last-Modified"))
                         if h in r.headers}
    return body


def _body(r: requests.Response, url: str) -> bytes:
    """The whole body, refused as soon as it exceeds MAX_BODY on the wire or decoded
    (a gzip bomb inflates a thousandfold)."""
    body = bytearray()
    for chunk in r.iter_content(1 << 16):
        body += chunk
        if len(body) > MAX_BODY or r.raw.tell() > MAX_BODY:
            raise IxfError(f"{url}: the export is larger than {MAX_BODY >> 20} MiB")
    return bytes(body)


class _Cache:
    """One URL's last good body plus the validators the server sent with it."""

    def __init__(self, directory: str, url: str):
        key = hashlib.sha256(url.encode()).hexdigest()[:24]
        self.dir = Path(directory)
        self.body_path = self.dir / f"{key}.json"
        self.meta_path = self.dir / f"{key}.meta.json"
        self.url = url
        self.pending: dict | None = None

    def validators(self) -> dict:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        if meta.get("url") != self.url or not self.body_path.exists():
            return {}
        out = {}
        if meta.get("etag"):
            out["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            out["If-Modified-Since"] = meta["last_modified"]
        return out

    def body(self) -> bytes:
        try:
            return self.body_path.read_bytes()
        except OSError as e:
            raise IxfError(f"{self.url}: 304 Not Modified but the cached copy is unreadable: {e}") from None

    def store(self, body: bytes) -> None:
        """Keep a body that parsed; only after a 200 (a 304 body is already cached)."""
        if self.pending is None:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the URL may carry an API key
        self.meta_path.unlink(missing_ok=True)  # never pair new validators with an old body
        for path, data in ((self.body_path, body),
                           (self.meta_path, json.dumps({"url": self.url, **self.pending}).encode())):
            write_atomic(path, data)
