#!/usr/bin/env python3
"""Independent checks of the engine's email tracking, for the C tests.

The token format of crm/track.h is decoded here from its description, with
Python's base64, hmac and hashlib, and the message with Python's email and
html.parser packages, so the tests do not judge the C code with itself.

  track_inspect.py token KEY TOKEN       -> JSON of the token's fields, or {"error": ...}
  track_inspect.py message KEY BASE FILE -> JSON: List-Unsubscribe URIs and their
                                            tokens, every <a href> of the HTML
                                            part with its click token, the open
                                            pixels, the text part
"""
import base64
import email
import email.policy
import hashlib
import hmac
import html.parser
import json
import re
import sys
import uuid

LABEL = b"crm tracking token v1"
KINDS = {1: "open", 2: "click", 3: "unsubscribe"}
ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")
TOKEN_IN = re.compile(r"[A-Za-z0-9_-]+")


def decode(key: str, token: str) -> dict:
    """The fields of a token, or {"error": reason}."""
    if not token or not ALPHABET.match(token) or len(token) % 4 == 1:
        return {"error": "malformed"}
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        return {"error": "non-canonical base64url"}
    if raw[0] != 1:
        return {"error": "version"}
    if len(raw) < 24 + 4 + 16:
        return {"error": "short"}
    body, mac = raw[:-16], raw[-16:]
    k = hmac.new(key.encode(), LABEL, hashlib.sha256).digest()
    if not hmac.compare_digest(hmac.new(k, body, hashlib.sha256).digest()[:16], mac):
        return {"error": "bad signature"}
    out = {
        "version": body[0],
        "kind": KINDS.get(body[1], body[1]),
        "channel": body[2],
        "hop": body[3] - 1 if body[3] else None,
        "communication_id": str(uuid.UUID(bytes=bytes(body[4:20]))),
        "expires_at": int.from_bytes(body[20:24], "big"),
    }
    off = 24
    for name in ("tenant_id", "client_id"):
        n = body[off]
        out[name] = body[off + 1:off + 1 + n].decode("ascii")
        off += 1 + n
    if out["kind"] == "click":
        link = int.from_bytes(body[off:off + 2], "big")
        n = int.from_bytes(body[off + 2:off + 4], "big")
        out["link_index"] = link - 1 if link else None
        out["target"] = body[off + 4:off + 4 + n].decode("ascii")
        off += 4 + n
    if off != len(body):
        return {"error": "trailing bytes"}
    return out


class Links(html.parser.HTMLParser):
    """Every <a href> and <img src> as a browser would read them
    (character references decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img" and "src" in a:
            self.imgs.append(a["src"])


def token_after(url: str, prefix: str):
    if not url.startswith(prefix):
        return None
    m = TOKEN_IN.match(url[len(prefix):])
    return m.group(0) if m and len(m.group(0)) == len(url) - len(prefix) else None


def message(key: str, base: str, path: str) -> dict:
    with open(path, "rb") as f:
        m = email.message_from_bytes(f.read(), policy=email.policy.default)
    lu = str(m["List-Unsubscribe"] or "")
    uris = re.findall(r"<([^<>]*)>", lu)
    unsub = {"https": None, "mailto": None, "https_token": None, "mailto_token": None}
    for u in uris:
        t = token_after(u, base + "/u/")
        if t is not None:
            unsub["https"], unsub["https_token"] = u, decode(key, t)
        elif u.startswith("mailto:"):
            mt = re.match(r"^mailto:([^?]+)\?subject=unsubscribe-([A-Za-z0-9_-]+)$", u)
            unsub["mailto"] = u
            unsub["mailto_address"] = mt.group(1) if mt else None
            unsub["mailto_token"] = decode(key, mt.group(2)) if mt else {"error": "no token"}
    plain = m.get_body(("plain",))
    htm = m.get_body(("html",))
    links = Links()
    if htm is not None:
        links.feed(htm.get_content())
    hrefs = []
    for h in links.hrefs:
        t = token_after(h, base + "/t/c/")
        hrefs.append({"href": h, "click": decode(key, t) if t is not None else None})
    pixels = []
    for s in links.imgs:
        t = token_after(s, base + "/t/o/")
        if t is not None:
            pixels.append(decode(key, t))
    return {
        "list_unsubscribe_raw": lu,
        "list_unsubscribe": uris,
        "list_unsubscribe_post": str(m["List-Unsubscribe-Post"] or ""),
        "unsubscribe": unsub,
        "links": hrefs,
        "pixels": pixels,
        "html": htm.get_content() if htm is not None else None,
        "text": plain.get_content() if plain is not None else None,
        "defects": [str(d) for p in m.walk() for d in p.defects],
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "token":
        print(json.dumps(decode(sys.argv[2], sys.argv[3])))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "message":
        print(json.dumps(message(sys.argv[2], sys.argv[3].rstrip("/"), sys.argv[4])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
