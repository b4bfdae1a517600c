#!/usr/bin/python3
"""SMTP sandbox: a real SMTP server (Debian's python3-aiosmtpd) for the demo
and the tests.

It speaks ESMTP with optional STARTTLS (required when a certificate is given)
and optional AUTH PLAIN/LOGIN (required when a user is given, and only over
TLS), stores every accepted message in a Maildir with the SMTP envelope added
as X-Sandbox-Envelope-From / X-Sandbox-Envelope-To headers, and answers the
end of DATA with "250 2.0.0 Ok: queued as <id>" (the id is also stored as
X-Sandbox-Queue-Id), the way Postfix does.

Scripted failures: with --fail-rcpt-prefix fail, a recipient whose local part
starts with "fail" followed by a 4xx or 5xx code ("fail550-ana@example.com",
"fail451@example.com") is refused at RCPT TO with that code.

Scripted slowness: with --slow-rcpt-prefix slow, a message to a recipient
whose local part starts with "slow" followed by milliseconds
("slow3000-ana@example.com") gets its end-of-DATA reply that much later, so
tests can catch a client in the middle of a transfer.

Prints one line "smtp-sandbox ready on HOST:PORT" once it accepts
connections, and exits 0 on SIGTERM or SIGINT.

Usage:
  smtp_sandbox.py --port 2525 --maildir var/maildir \
      [--host 127.0.0.1] [--tls-cert server.pem --tls-key server.key] \
      [--auth-user demo --auth-password secret] [--fail-rcpt-prefix fail]
      [--slow-rcpt-prefix slow]
The password may also come from the SMTP_SANDBOX_PASSWORD environment
variable, which keeps it out of the process list.
"""

import argparse
import asyncio
import hmac
import logging
import mailbox
import os
import re
import secrets
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class SandboxHandler:
    """aiosmtpd handler: scripted RCPT refusals and Maildir delivery."""

    def __init__(self, maildir_path, fail_prefix, slow_prefix, sink=False):
        # mailbox.Maildir(create=True) makes tmp/, new/ and cur/ only when it
        # creates the top directory itself; callers (crmctl dev up) may have
        # made an empty one already.
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir_path, sub), exist_ok=True)
        self.maildir = mailbox.Maildir(maildir_path, create=False)
        self.lock = threading.Lock()
        self.sink = sink
        self.received = 0
        self.fail_re = None
        self.slow_re = None
        if fail_prefix:
            self.fail_re = re.compile(re.escape(fail_prefix) + r"([45][0-9][0-9])", re.IGNORECASE)
        if slow_prefix:
            self.slow_re = re.compile(re.escape(slow_prefix) + r"([0-9]{1,6})", re.IGNORECASE)

    def delay_seconds(self, envelope):
        """The longest scripted delay among the message's recipients."""
        delay = 0.0
        for rcpt in envelope.rcpt_tos:
            match = self.slow_re.match(rcpt.rsplit("@", 1)[0]) if self.slow_re else None
            if match:
                delay = max(delay, int(match.group(1)) / 1000.0)
        return delay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0]
        match = self.fail_re.match(local) if self.fail_re else None
        if match:
            code = match.group(1)
            if code.startswith("5"):
                return f"{code} 5.1.1 Mailbox unavailable (sandbox scripted failure)"
            return f"{code} 4.3.0 Try again later (sandbox scripted failure)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        queue_id = secrets.token_hex(6).upper()
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        # The envelope goes first, as trace headers do; the message bytes
        # follow untouched (CRLF line endings included) so tests see exactly
        # what the client sent.
        head = (
            f"X-Sandbox-Queue-Id: {queue_id}\r\n"
            f"X-Sandbox-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Sandbox-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("ascii", "replace")
        delay = self.delay_seconds(envelope)
        if delay > 0:
            await asyncio.sleep(delay)
        with self.lock:
            self.received += 1
            if not self.sink:
                self.maildir.add(head + content)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class QuietDeprecation(logging.Filter):
    """Drops aiosmtpd 1.4's warning about Session.login_data, which it logs
    from its own AUTH code on every login (this script never touches it)."""

    def filter(self, record):
        return "login_data is deprecated" not in record.getMessage()


def make_authenticator(user, password):
    """aiosmtpd authenticator accepting exactly one user (PLAIN and LOGIN)."""
    want_user = user.encode()
    want_pass = password.encode()

    def authenticate(server, session, envelope, mechanism, auth_data):
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, want_user) and hmac.compare_digest(auth_data.password, want_pass)
        return AuthResult(success=ok, handled=False)

    return authenticate


def parse_args(argv):
    p = argparse.ArgumentParser(description="SMTP sandbox on aiosmtpd: Maildir storage, STARTTLS, AUTH.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True, help="Maildir directory (created when missing)")
    p.add_argument("--tls-cert", help="PEM certificate chain; enables and requires STARTTLS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--auth-user", help="require AUTH PLAIN/LOGIN as this user (over TLS only)")
    p.add_argument("--auth-password", help="password of --auth-user (or SMTP_SANDBOX_PASSWORD)")
    p.add_argument("--fail-rcpt-prefix", default="", help='e.g. "fail": fail550-x@... gets 550, fail451@... gets 451')
    p.add_argument("--slow-rcpt-prefix", default="", help='e.g. "slow": slow3000-x@... waits 3 s before the DATA reply')
    p.add_argument("--data-size-limit", type=int, default=33554432)
    p.add_argument("--sink", action="store_true",
                   help="accept and count messages without storing them (benchmarks: measures the client, not the disk)")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.auth_password is None:
        args.auth_password = os.environ.get("SMTP_SANDBOX_PASSWORD")
    if args.auth_user and not args.auth_password:
        p.error("--auth-user needs --auth-password or SMTP_SANDBOX_PASSWORD")
    if args.auth_user and not args.tls_cert:
        p.error("--auth-user needs --tls-cert: AUTH is only offered over TLS")
    return args


def main(argv):
    args = parse_args(argv)
    logging.getLogger("mail.log").addFilter(QuietDeprecation())
    handler = SandboxHandler(args.maildir, args.fail_rcpt_prefix, args.slow_rcpt_prefix, args.sink)
    smtp_kwargs = {"data_size_limit": args.data_size_limit}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        smtp_kwargs["tls_context"] = ctx
        smtp_kwargs["require_starttls"] = True
    if args.auth_user:
        smtp_kwargs["authenticator"] = make_authenticator(args.auth_user, args.auth_password)
        smtp_kwargs["auth_required"] = True
        smtp_kwargs["auth_require_tls"] = True

    controller = Controller(handler, hostname=args.host, port=args.port, server_hostname="smtp-sandbox.localhost",
                            **smtp_kwargs)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller.start()
    print(f"smtp-sandbox ready on {args.host}:{args.port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()
        print(f"smtp-sandbox stopped after receiving {handler.received} messages", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
