#!/usr/bin/env python3
"""Independent checks of what the email sandbox received, for the C tests.

Python's standard email package parses the messages, so the engine's MIME
builder is judged by a parser we did not write.

  mime_inspect.py message FILE        -> JSON summary of one message
  mime_inspect.py find MAILDIR ADDR   -> JSON summary of every message to ADDR
"""
import email
import email.policy
import json
import os
import sys


def summarize(raw: bytes) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    text = html = None
    for part in msg.walk():
        ctype = part.get_content_type()
        parts.append(ctype)
        if part.is_multipart():
            continue
        if ctype == "text/plain" and text is None:
            text = part.get_content()
        elif ctype == "text/html" and html is None:
            html = part.get_content()
    defects = [type(d).__name__ for part in msg.walk() for d in part.defects]
    return {
        "subject": str(msg["Subject"] or ""),
        "from": str(msg["From"] or ""),
        "from_name": msg["From"].addresses[0].display_name if msg["From"] else "",
        "to": str(msg["To"] or ""),
        "message_id": str(msg["Message-ID"] or ""),
        "date": str(msg["Date"] or ""),
        "mime_version": str(msg["MIME-Version"] or ""),
        "content_type": msg.get_content_type(),
        "parts": parts,
        "text": text or "",
        "html": html or "",
        "envelope_to": str(msg["X-Sandbox-Envelope-To"] or ""),
        "defects": defects,
        "bare_lf": b"\n" in raw.replace(b"\r\n", b""),
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "message":
        with open(sys.argv[2], "rb") as f:
            print(json.dumps(summarize(f.read())))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "find":
        maildir, addr = sys.argv[2], sys.argv[3].lower()
        found = []
        for sub in ("new", "cur"):
            d = os.path.join(maildir, sub)
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    raw = f.read()
                s = summarize(raw)
                if addr in s["envelope_to"].lower() or addr in s["to"].lower():
                    found.append(s)
        print(json.dumps({"count": len(found), "messages": found}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
