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

Storms: with --storm "451=0.20,drop=0.05" (or SMTP_SANDBOX_STORM), each
recipient draws one number in [0, 1): the first share is refused at RCPT TO
with "451 4.3.0" (a transient failure the client retries), the next share
has its connection dropped at the end of DATA without an answer and without
keeping the message (a network failure). --storm-seed N (or
SMTP_SANDBOX_STORM_SEED) makes the sequence of outcomes the same on every
run. Neither outcome keeps the message, so a storm alone never makes a
duplicate.

Accepted log: with --accepted-log FILE, every accepted message appends one
line "<queue id> <recipient>[,<recipient>...]" to FILE (also in --sink
mode), which the chaos tests read to count provider-side duplicates.

Prints one line "smtp-sandbox ready on HOST:PORT" once it accepts
connections, and exits 0 on SIGTERM or SIGINT.

Usage:
  smtp_sandbox.py --port 2525 --maildir var/maildir \
      [--host 127.0.0.1] [--tls-cert server.pem --tls-key server.key] \
      [--auth-user demo --auth-password secret] [--fail-rcpt-prefix fail]
      [--slow-rcpt-prefix slow] [--storm 451=0.2,drop=0.05] [--storm-seed 1]
      [--accepted-log FILE]
The password may also come from the SMTP_SANDBOX_PASSWORD environment
variable, which keeps it out of the process list.
"""

import argparse
import asyncio
import hmac
import logging
import mailbox
import os
import random
import re
import secrets
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def parse_storm(spec):
    """Parses "451=0.20,drop=0.05" into {"451": 0.2, "drop": 0.05}; raises
    ValueError naming the problem."""
    shares = {"451": 0.0, "drop": 0.0}
    if not spec:
        return shares
    seen = set()
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"'{item}' is not KEY=SHARE")
        if key not in shares:
            raise ValueError(f"unknown key '{key}' (451 or drop)")
        if key in seen:
            raise ValueError(f"key '{key}' given twice")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"{key}: '{value}' is not a share between 0 and 1") from None
        if not 0.0 <= share <= 1.0 or value.strip() != value:
            raise ValueError(f"{key}: '{value}' is not a share between 0 and 1")
        shares[key] = share
        seen.add(key)
    if shares["451"] + shares["drop"] > 1.0 + 1e-9:
        raise ValueError("shares add up to more than 1")
    return shares


class Storm:
    """Seeded draws of storm outcomes, shared by every connection."""

    def __init__(self, shares, seed):
        self.shares = shares
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def draw(self):
        """"451", "drop" or None."""
        if self.shares["451"] <= 0 and self.shares["drop"] <= 0:
            return None
        with self.lock:
            u = self.rng.random()
        if u < self.shares["451"]:
            return "451"
        if u < self.shares["451"] + self.shares["drop"]:
            return "drop"
        return None


class SandboxHandler:
    """aiosmtpd handler: scripted RCPT refusals and Maildir delivery."""

    def __init__(self, maildir_path, fail_prefix, slow_prefix, sink=False, storm=None, accepted_log=None):
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
        self.storm = storm
        self.accepted_log = accepted_log
        self.storm_counts = {"451": 0, "drop": 0}
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
        outcome = self.storm.draw() if self.storm else None
        if outcome == "451":
            self.storm_counts["451"] += 1
            return "451 4.3.0 Try again later (sandbox storm)"
        if outcome == "drop":
            # Remembered for the end of DATA, where the connection is cut.
            envelope.sandbox_drop = True
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
        if getattr(envelope, "sandbox_drop", False):
            # The whole message came, but no answer ever will: the client
            # cannot know whether it was kept (it was not).
            self.storm_counts["drop"] += 1
            server.transport.abort()
            return "421 4.4.2 Connection dropped (sandbox storm)"
        with self.lock:
            self.received += 1
            if not self.sink:
                self.maildir.add(head + content)
            if self.accepted_log:
                with open(self.accepted_log, "a", encoding="utf-8") as log:
                    log.write(f"{queue_id} {','.join(envelope.rcpt_tos)}\n")
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
    p.add_argument("--storm", default=os.environ.get("SMTP_SANDBOX_STORM", ""),
                   help='e.g. "451=0.20,drop=0.05": shares of recipients refused with 451 and of connections dropped')
    p.add_argument("--storm-seed", type=int, default=int(os.environ.get("SMTP_SANDBOX_STORM_SEED", "1")))
    p.add_argument("--accepted-log", help="append one line per accepted message: queue id and recipients")
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
    try:
        args.storm_shares = parse_storm(args.storm)
    except ValueError as err:
        p.error(f"--storm: {err}")
    return args


def main(argv):
    args = parse_args(argv)
    logging.getLogger("mail.log").addFilter(QuietDeprecation())
    storm = Storm(args.storm_shares, args.storm_seed)
    handler = SandboxHandler(args.maildir, args.fail_rcpt_prefix, args.slow_rcpt_prefix, args.sink, storm,
                             args.accepted_log)
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
        print(f"smtp-sandbox stopped after receiving {handler.received} messages "
              f"(storm: {handler.storm_counts['451']} refused with 451, {handler.storm_counts['drop']} dropped)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
