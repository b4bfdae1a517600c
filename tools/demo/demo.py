#!/usr/bin/env python3
"""The demo's client: sends a realistic batch and a handful of scripted
scenarios to the ingest API, shows progress while the fleet works, then prints
a summary from PostgreSQL and checks what it expected.

The scenarios show what the fleet does beyond a plain send: retries that end
dead (with their crm.dlq copy), fallback to email after a permanent SMS
failure, client preferences (an opt-out, WhatsApp consent, quiet hours),
delivery receipts through the webhook receiver, receipt-driven fallback, and
an inbound STOP. Every wait polls PostgreSQL with a timeout; the exit status
is 1 when an expectation fails or a wait times out.

Uses only the standard library plus the psql client, so it runs on a fresh
Debian machine after `make demo` installed the build dependencies."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

INGEST = os.environ["CRM_INGEST_URL"]
DB = os.environ["DATABASE_URL"]
BUILD = os.environ.get("CRM_BUILD_DIR", "build")
CRMCTL = os.path.join(BUILD, "tools", "crmctl", "crmctl")
RUN = time.strftime("%Y%m%d%H%M%S")
TOTAL = int(os.environ.get("DEMO_COUNT", "300"))
MAX_ATTEMPTS = int(os.environ.get("RETRY_MAX_ATTEMPTS", "5"))
# The batch's clients client-1 .. client-CONSENTED have granted WhatsApp
# consent; the others have no preferences, so WhatsApp is never sent to them.
CONSENTED = 90

FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Élodie", "Farid", "Greta", "Hiro", "Inès", "Jonas", "Zoë", "Łukasz"]
LAST = ["García", "Müller", "Dubois", "Rossi", "Nowak", "Svensson", "Tanaka", "O'Brien", "Öztürk"]
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/Berlin", "America/Sao_Paulo"]
LOCALES = ["en", "en-GB", "fr", "fr-CA", "es", "de", "pt-BR"]  # pt-BR falls back to en
TYPES = {
    "appointment_reminder": lambda r: {"appointment": {"date": "2026-12-%02d" % r.randint(1, 28),
                                                         "time": "%02d:%s" % (r.randint(8, 18), r.choice(["00", "30"])),
                                                         "location": "12 rue de la Paix, Paris",
                                                         "manage_url": "https://app.example.com/a/%x" % r.getrandbits(32)},
                                       "company": {"name": "Acme Clinic"}},
    "payment_receipt": lambda r: {"amount": "%d.%02d EUR" % (r.randint(5, 900), r.randint(0, 99)),
                                  "receipt": {"number": "INV-%05d" % r.randint(1, 99999)},
                                  "receipt_url": "https://app.example.com/r/%x" % r.getrandbits(32),
                                  "company": {"name": "Acme"}},
    "event_invitation": lambda r: {"event": {"name": "Winter Gala", "date": "2026-12-12", "time": "19:00",
                                             "location": "Grand Hall"},
                                   "rsvp_url": "https://app.example.com/rsvp/%x" % r.getrandbits(32),
                                   "company": {"name": "Acme Events"}},
    "password_reset": lambda r: {"reset_url": "https://app.example.com/reset?t=%x" % r.getrandbits(64),
                                 "expires_in_minutes": 30, "company": {"name": "Acme"}},
    "welcome": lambda r: {"login_url": "https://app.example.com/login", "company": {"name": "Acme"}},
}
TERMINAL = ("sent", "delivered", "read", "opened", "clicked", "failed", "suppressed", "dead", "rejected")


class Timeout(Exception):
    pass


# ------------------------------------------------------------------ I/O

def http(method, url, body=None, headers=None, form=None):
    """One HTTP exchange; returns (status, decoded JSON or text)."""
    data = None
    hdrs = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, raw.decode(errors="replace")


def post(body):
    return http("POST", INGEST + "/v1/communications", body)


def psql(sql, *args):
    """Runs sql with :'v1', :'v2' ... bound to args as psql variables (quoted
    by psql itself, so no value is ever pasted into the SQL text)."""
    # Unit and record separators: error messages may hold tabs or new lines.
    cmd = ["psql", DB, "-X", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-v", "ON_ERROR_STOP=1"]
    for i, a in enumerate(args, 1):
        cmd += ["-v", "v%d=%s" % (i, a)]
    out = subprocess.run(cmd, input=sql, check=True, capture_output=True, text=True).stdout
    return [rec.split("\x1f") for rec in out.strip("\n").split("\x1e") if rec.strip("\n")]


def metric(url, name, labels):
    """The value of one Prometheus series of a service, 0 when absent."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    pat = re.compile(r"^%s\{([^}]*)\}\s+(\S+)" % re.escape(name), re.M)
    for m in pat.finditer(text):
        if all('%s="%s"' % kv in m.group(1) for kv in labels.items()):
            return float(m.group(2))
    return 0.0


def wait_until(what, check, timeout, interval=0.5):
    """Calls check() until it returns a true value; raises Timeout naming what."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() >= deadline:
            raise Timeout("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)


def secrets():
    """The dev fleet's made-up provider secrets (var/dev/secrets.env), read
    here rather than exported, so they never reach other processes."""
    out = {}
    path = os.environ.get("CRM_DEV_SECRETS", "")
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                m = re.match(r"^([A-Z_]+)='(.*)'$", line.strip())
                if m:
                    out[m.group(1)] = m.group(2)
    return out


def iso_now(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def receipt_settings():
    """The names of this build's receipt settings (the router watches receipts,
    the workers park the watches); none means receipt-driven fallback is not
    built. demo.sh reads them from the services' `--help` (their
    configuration tables) before the fleet starts, to shorten the deadlines;
    run on its own, the demo reads them itself."""
    names = os.environ.get("CRM_DEMO_RECEIPT_SETTINGS")
    if names is None:
        found = set()
        for svc in ("router", "sms-worker", "whatsapp-worker"):
            try:
                out = subprocess.run([os.path.join(BUILD, "services", svc, "crm-" + svc), "--help"],
                                     capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            found.update(re.findall(r"\b(?:[A-Z][A-Z0-9_]*_)?RECEIPT_[A-Z0-9_]+\b", out))
        names = " ".join(sorted(found))
    return names.split()


# ------------------------------------------------------------------ the batch

def build_requests(rnd):
    reqs = []
    for i in range(TOTAL):
        mtype = rnd.choice(list(TYPES))
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        recipient = {"name": "%s %s" % (first, last),
                     "email": "%s.%s.%d@example.com" % (first.lower().encode("ascii", "ignore").decode() or "x",
                                                         "c", i),
                     "timezone": rnd.choice(ZONES), "locale": rnd.choice(LOCALES)}
        # Two clients in three have a French mobile number, one in two on WhatsApp too,
        # so the message types' channel orders spread the batch over all three channels.
        if i % 3:
            recipient["phone"] = "+3361%07d" % i
        if i % 2 == 0:
            recipient["whatsapp"] = "+3361%07d" % i
        channels = None
        if i % 37 == 5:
            # SMS explicitly, but no phone number: the router suppresses it (no_address).
            recipient.pop("phone", None)
            channels = ["sms"]
        elif i % 41 == 7:
            # The SMTP sandbox refuses fail550-* recipients: a real permanent SMTP failure.
            recipient["email"] = "fail550-client%d@example.com" % i
            channels = ["email"]
        elif i % 43 == 11:
            # The Twilio sandbox answers 21610 (unsubscribed) for numbers ending in 21610.
            recipient["phone"] = "+33612321610"
            channels = ["sms"]
        elif i % 47 == 13:
            # The Meta sandbox answers 131047 (outside the 24 h window) for numbers ending in 131047.
            recipient["whatsapp"] = "+33612131047"
            channels = ["whatsapp"]
        if channels:
            extra = {"channels": channels}
        else:
            extra = {}
        reqs.append({
            "request_id": "demo-%s-%d" % (RUN, i),
            "client_id": "client-%d" % rnd.randint(1, 120),
            "message_type": mtype,
            "urgency": rnd.choice(["low", "normal", "normal", "high"]),
            "recipient": recipient,
            "context": TYPES[mtype](rnd),
            **extra,
        })
    return reqs


def bar(done, total, width=40):
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + "] %d/%d" % (done, total)


# ------------------------------------------------------------------ scenarios

def scn_request(name, client, mtype, recipient, channels=None, urgency="normal"):
    r = {"request_id": "scn-%s-%s" % (RUN, name), "client_id": client, "message_type": mtype,
         "urgency": urgency, "recipient": dict({"name": "Ana García", "locale": "en"}, **recipient),
         "context": TYPES[mtype](random.Random(name))}
    if channels:
        r["channels"] = channels
    return r


def local_hhmm(offset_h, minutes_from_now):
    """HH:MM on a fixed-offset wall clock (a zone without DST), minutes from now."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=offset_h, minutes=minutes_from_now)
    return t.strftime("%H:%M")


class Scenarios:
    """The scripted cases: their requests, what each should end as, and how to print them."""

    def __init__(self, receipt_fallback, receiver):
        self.receipt_fallback = receipt_fallback
        self.receiver = receiver
        self.ids = {}        # request_id -> communication_id
        self.expect = {}     # request_id -> (predicate over the row, what it should be)
        self.stop_phone = "+336771%04d7" % (int(time.time()) % 10000)  # ends in 7: no sandbox script
        self.clients = {k: "demo-%s-%s" % (RUN, k) for k in ("optout", "whatsapp", "quiet", "stop")}
        self.quiet_zone, self.quiet_offset_h = "Asia/Tokyo", 9  # no DST: the window is easy to compute
        self.quiet = {"start": local_hhmm(self.quiet_offset_h, -60), "end": local_hhmm(self.quiet_offset_h, 120)}

    def rid(self, name):
        return "scn-%s-%s" % (RUN, name)

    def preferences(self):
        """The scenario clients' snapshots, PUT before anything is sent."""
        return {
            self.clients["optout"]: {"opt_out": {"sms": True}},
            self.clients["whatsapp"]: {"preferred_channels": ["whatsapp", "email"],
                                       "whatsapp_consent": {"granted": True, "at": iso_now(-86400),
                                                            "source": "demo_signup_form"}},
            self.clients["quiet"]: {"timezone": self.quiet_zone, "quiet_hours": self.quiet},
        }

    def first_requests(self):
        c = self.clients
        reqs = []

        def add(req, pred, text):
            reqs.append(req)
            self.expect[req["request_id"]] = (pred, text)

        is_dead = lambda r: r["status"] == "dead" and r["channel"] == "sms"
        for name, phone in (("retry-500-a", "+33612320500"), ("retry-500-b", "+33698720500"),
                            ("retry-503", "+33612320503")):
            add(scn_request(name, "demo-%s-retry" % RUN, "password_reset", {"phone": phone}, ["sms"]),
                is_dead, "dead on sms")
        add(scn_request("fallback-21610", "demo-%s-fallback" % RUN, "appointment_reminder",
                        {"phone": "+33612321610", "email": "ana.fallback@example.com"}, ["sms", "email"]),
            lambda r: r["channel"] == "email" and r["hop"] == "1" and r["status"] in ("sent", "opened", "clicked"),
            "sent on email at hop 1")
        add(scn_request("optout-routed", c["optout"], "appointment_reminder",
                        {"phone": "+33612345611", "email": "ana.optout@example.com"}),
            lambda r: r["channel"] == "email" and r["hop"] == "0" and r["status"] in ("sent", "opened", "clicked"),
            "routed to email (SMS opted out)")
        add(scn_request("optout-sms-only", c["optout"], "appointment_reminder",
                        {"phone": "+33612345611", "email": "ana.optout@example.com"}, ["sms"]),
            lambda r: r["status"] == "suppressed" and r["reason"] == "opted_out", "suppressed opted_out")
        add(scn_request("whatsapp-consent", c["whatsapp"], "event_invitation",
                        {"whatsapp": "+33612345622", "email": "ana.wa@example.com"}),
            lambda r: r["channel"] == "whatsapp" and r["status"] in (("delivered", "read") if self.receiver
                                                                     else ("sent", "delivered", "read")),
            "on WhatsApp, delivered/read" if self.receiver else "sent on WhatsApp")
        add(scn_request("quiet-hours", c["quiet"], "appointment_reminder",
                        {"phone": "+33612345633", "email": "ana.quiet@example.com", "timezone": self.quiet_zone}),
            lambda r: r["status"] == "deferred", "deferred to the end of quiet hours")
        if self.receiver:
            add(scn_request("stop-before", c["stop"], "welcome", {"phone": self.stop_phone,
                                                                    "email": "ana.stop@example.com"}, ["sms"]),
                lambda r: r["channel"] == "sms" and r["status"] in ("delivered", "read"), "delivered on SMS")
        if self.receipt_fallback:
            add(scn_request("receipt-undelivered", "demo-%s-receipt" % RUN, "appointment_reminder",
                            {"phone": "+33612330003", "email": "ana.undelivered@example.com"}, ["sms", "email"]),
                lambda r: r["channel"] == "email" and r["hop"] == "1" and r["status"] in ("sent", "opened", "clicked"),
                "undelivered receipt, then sent on email")
            add(scn_request("receipt-deadline", "demo-%s-receipt" % RUN, "password_reset",
                            {"phone": "+33612300000", "email": "ana.noreceipt@example.com"}, ["sms", "email"],
                            urgency="critical"),
                lambda r: r["channel"] == "email" and r["hop"] == "1" and r["status"] in ("sent", "opened", "clicked"),
                "no receipt by the deadline, then sent on email")
        return reqs

    def after_stop_requests(self):
        c = self.clients
        reqs = []
        for req, pred, text in (
                (scn_request("stop-after-sms", c["stop"], "appointment_reminder",
                             {"phone": self.stop_phone, "email": "ana.stop@example.com"}, ["sms"]),
                 lambda r: r["status"] == "suppressed" and r["reason"] == "opted_out", "suppressed opted_out"),
                (scn_request("stop-after-any", c["stop"], "appointment_reminder",
                             {"phone": self.stop_phone, "email": "ana.stop@example.com"}),
                 lambda r: r["channel"] == "email" and r["status"] in ("sent", "opened", "clicked"),
                 "routed to email")):
            reqs.append(req)
            self.expect[req["request_id"]] = (pred, text)
        return reqs

    # -------------------------------------------------------------- state

    def rows(self):
        got = psql("select request_id, coalesce(channel, '-'), status, hop, attempt, coalesce(reason, ''), "
                   "coalesce(error_code, ''), coalesce(error_message, '') from communications "
                   "where request_id like :'v1'", "scn-%s-%%" % RUN)
        keys = ("request_id", "channel", "status", "hop", "attempt", "reason", "error_code", "error_message")
        return {r[0]: dict(zip(keys, r)) for r in got}

    def settled(self, names=None):
        rows = self.rows()
        todo = [rid for rid in self.expect if names is None or rid in names]
        return all(rid in rows and self.expect[rid][0](rows[rid]) for rid in todo)

    def history(self, rid):
        """The communication's events, oldest first, as 'channel status(code)[reason]' tokens with
        repeats collapsed (retries counted); accepted and sending are left out (every send has them)."""
        cid = self.ids.get(rid)
        if not cid:
            return "(no communication id)"
        evs = psql("select coalesce(channel, '-'), status, coalesce(error_code, ''), coalesce(reason, '') "
                   "from communication_events where communication_id = :'v1' "
                   "order by occurred_at, hop, status_rank", cid)
        toks = []
        for ch, st, code, why in evs:
            if st in ("accepted", "sending"):
                continue
            tok = "%s %s" % (ch, st) if ch != "-" else st
            if code:
                tok += "(%s)" % code
            if why and st in ("fallback", "failed", "dead", "suppressed", "deferred", "rejected"):
                tok += "[%s]" % why
            if toks and toks[-1][0] == tok:
                # Retries are counted; a `sent` from the worker followed by the
                # provider's own `sent` receipt is shown once.
                toks[-1][1] += 1 if st == "retry_scheduled" else 0
            else:
                toks.append([tok, 1])
        return " -> ".join(t if n == 1 else "%s x%d" % (t, n) for t, n in toks)

    def count_events(self, rid, status, reason=None):
        cid = self.ids.get(rid)
        if not cid:
            return 0
        return int(psql("select count(*) from communication_events where communication_id = :'v1' "
                        "and status = :'v2' and (:'v3' = '' or reason = :'v3')", cid, status, reason or "")[0][0])


# ------------------------------------------------------------------ inbound STOP

def twilio_signature(token, url, params):
    """X-Twilio-Signature as Twilio computes it: base64(HMAC-SHA1(auth token,
    URL + every name and value, sorted by name))."""
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post_stop(phone, sec):
    url = os.environ["CRM_WEBHOOK_URL"] + "/twilio/inbound"
    params = {"MessageSid": "SM" + os.urandom(16).hex(),
              "AccountSid": sec.get("TWILIO_ACCOUNT_SID", ""), "From": phone, "To": "+14155550100",
              "Body": "STOP", "NumMedia": "0"}
    # The receiver's WEBHOOK_PUBLIC_URL in the dev fleet is its own address.
    sig = twilio_signature(sec.get("TWILIO_AUTH_TOKEN", ""), url, params)
    return http("POST", url, headers={"X-Twilio-Signature": sig}, form=params)


# ------------------------------------------------------------------ main

class Checks:
    def __init__(self):
        self.failed = []

    def check(self, ok, what):
        if not ok:
            self.failed.append(what)
        return "ok  " if ok else "FAIL"


def put_preferences(client, body):
    status, answer = http("PUT", INGEST + "/v1/clients/%s/preferences" % urllib.parse.quote(client, safe=""), body)
    if status != 200:
        print("  PUT preferences of %s: HTTP %d %s" % (client, status, answer))
        sys.exit(1)
    return answer


def wait_preferences(clients, since, feed_before, n):
    """Until the projection holds every client's snapshot and the router's feed applied n more."""
    wait_until("the preferences of %d clients in client_preferences" % len(clients),
               lambda: int(psql("select count(*) from client_preferences where tenant_id = 'default' and "
                                "client_id = any(string_to_array(:'v1', ',')) and updated_at >= :'v2'",
                                ",".join(clients), since)[0][0]) >= len(clients), 30)
    wait_until("the router's preferences feed",
               lambda: metric(os.environ["CRM_ROUTER_URL"], "router_prefs_feed_records_total",
                              {"kind": "snapshot"}) >= feed_before + n, 30)


def main():
    t0 = time.time()
    checks = Checks()
    receiver = os.environ.get("CRM_WEBHOOK_RECEIVER") == "1"
    receipt_vars = receipt_settings()
    receipt_fb = receiver and bool(receipt_vars)
    scn = Scenarios(receipt_fb, receiver)
    rnd = random.Random(42)
    reqs = build_requests(rnd)

    # Preferences first: the router reads them when it routes.
    since = iso_now(-1)
    feed_before = metric(os.environ["CRM_ROUTER_URL"], "router_prefs_feed_records_total", {"kind": "snapshot"})
    consent = {"whatsapp_consent": {"granted": True, "at": iso_now(-7 * 86400), "source": "demo_signup_form"}}
    prefs = dict({"client-%d" % n: consent for n in range(1, CONSENTED + 1)}, **scn.preferences())
    print("\nStoring preferences (PUT /v1/clients/{id}/preferences) for %d clients: WhatsApp consent for "
          "client-1..client-%d, and three scenario clients (SMS opt-out, WhatsApp consent, quiet hours %s-%s %s)..."
          % (len(prefs), CONSENTED, scn.quiet["start"], scn.quiet["end"], scn.quiet_zone))
    for client, body in prefs.items():
        put_preferences(client, body)
    wait_preferences(list(prefs), since, feed_before, len(prefs))

    print("Sending %d communications (5 message types, 7 locales, email/SMS/WhatsApp) in batches of 50..." % TOTAL)
    ids = set()
    for start in range(0, len(reqs), 50):
        status, answer = post({"requests": reqs[start:start + 50]})
        if status != 202:
            print("  batch at %d: HTTP %d %s" % (start, status, answer))
            sys.exit(1)
        ids.update(c["communication_id"] for c in answer["communications"])

    dups = rnd.sample(reqs, 20)
    status, answer = post({"requests": dups})
    same = sum(1 for c in answer.get("communications", []) if c["communication_id"] in ids)
    ok = checks.check(status == 202 and same == 20, "duplicates: %d/20 mapped" % same)
    print("%s Re-sent 20 duplicates: HTTP %d, %d/20 map to existing communications (no second email)."
          % (ok, status, same))

    bad = [
        {"request_id": "demo-bad-1", "client_id": "c1", "message_type": "welcome",
         "recipient": {"email": "not-an-email", "phone": "0612345678", "timezone": "Mars/Olympus"}},
        {"client_id": "c2", "message_type": "welcome", "urgency": "asap", "recipient": {"email": "a@example.com"}},
    ]
    status, answer = post({"requests": bad})
    ok = checks.check(status == 400, "invalid requests answered %d" % status)
    print("%s Sent 2 invalid requests: HTTP %d (%s), nothing produced:" % (ok, status, answer.get("title", "")))
    for err in answer.get("errors", []):
        print("   - %-28s %s" % (err.get("field"), err.get("reason")))

    sreqs = scn.first_requests()
    status, answer = post({"requests": sreqs})
    if status != 202:
        print("  scenarios: HTTP %d %s" % (status, answer))
        sys.exit(1)
    scn.ids.update({r["request_id"]: c["communication_id"] for r, c in zip(sreqs, answer["communications"])})
    print("Sent %d scenario communications (retries, fallback, preferences, receipts%s)."
          % (len(sreqs), ", receipt-driven fallback" if receipt_fb else ""))

    print("\nWaiting for the fleet (router -> email/SMS/WhatsApp workers -> sandboxes -> webhook receiver "
          "-> projector):")
    deadline = time.time() + 300
    done = 0
    like = "demo-%s-%%" % RUN
    while time.time() < deadline:
        done = int(psql("select count(*) from communications where request_id like :'v1' and status in "
                        "(%s)" % ",".join("'%s'" % s for s in TERMINAL), like)[0][0])
        sys.stdout.write("\r  " + bar(done, TOTAL))
        sys.stdout.flush()
        if done >= TOTAL:
            break
        time.sleep(0.5)
    print()
    if done < TOTAL:
        print("\nNot every communication of the batch finished in 300 s; see the logs in %s"
              % os.environ.get("CRM_LOG_DIR"))
        sys.exit(1)

    # The inbound STOP: the router has seen the client's number (client_contacts), so the
    # receiver knows whose preferences to change.
    stop = None
    timeouts = []
    if receiver:
        try:
            wait_until("the first SMS of the STOP client",
                       lambda: scn.settled({scn.rid("stop-before")}), 60)
            feed_before = metric(os.environ["CRM_ROUTER_URL"], "router_prefs_feed_records_total",
                                 {"kind": "snapshot"})
            stop = post_stop(scn.stop_phone, secrets())
            wait_until("the STOP's opt-out in client_preferences",
                       lambda: psql("select coalesce(snapshot->'opt_out'->>'sms', '') from client_preferences "
                                    "where tenant_id = 'default' and client_id = :'v1'",
                                    scn.clients["stop"]) == [["true"]], 30)
            wait_until("the router's preferences feed",
                       lambda: metric(os.environ["CRM_ROUTER_URL"], "router_prefs_feed_records_total",
                                      {"kind": "snapshot"}) >= feed_before + 1, 30)
            after = scn.after_stop_requests()
            status, answer = post({"requests": after})
            if status != 202:
                print("  after STOP: HTTP %d %s" % (status, answer))
                sys.exit(1)
            scn.ids.update({r["request_id"]: c["communication_id"] for r, c in zip(after, answer["communications"])})
        except Timeout as e:
            timeouts.append(str(e))

    print("Waiting for the scenarios (retries, fallbacks%s)..." % (", receipts" if receiver else ""))
    try:
        wait_until("the scenarios", scn.settled, 120)
    except Timeout as e:
        timeouts.append(str(e))
    # Receipts: every SMS and WhatsApp the sandboxes accepted gets one; wait until none is
    # left at `sent` (a scripted "never a final receipt" number is not in the batch).
    if receiver:
        try:
            wait_until("delivery receipts of the batch",
                       lambda: int(psql("select count(*) from communications where request_id like :'v1' and "
                                        "channel in ('sms', 'whatsapp') and status = 'sent'", like)[0][0]) == 0, 60)
        except Timeout as e:
            timeouts.append(str(e))
    print()

    summary(like)
    scenario_summary(scn, checks, receiver, receipt_fb, receipt_vars, stop)

    print("\nThe demo took %d s after the fleet was up." % (time.time() - t0))
    for t in timeouts:
        print("TIMEOUT: %s; see the logs in %s" % (t, os.environ.get("CRM_LOG_DIR")))
    if checks.failed or timeouts:
        print("\nThe demo's expectations failed: %s" % "; ".join(checks.failed + timeouts))
        sys.exit(1)
    print("\nEvery expectation of the demo held.")


def summary(like):
    rows = psql("select coalesce(channel,'-'), status, count(*) from communications where request_id like :'v1' "
                "group by 1, 2 order by 1, 2", like)
    lat = psql("select count(*), round(percentile_cont(0.5) within group (order by extract(epoch from "
               "sent_at - accepted_at) * 1000)::numeric, 1), round(percentile_cont(0.95) within group (order by "
               "extract(epoch from sent_at - accepted_at) * 1000)::numeric, 1) from communications where "
               "request_id like :'v1' and sent_at is not null", like)[0]
    types = psql("select message_type, count(*) filter (where status in ('sent','delivered','read','opened',"
                 "'clicked')), count(*) from communications where request_id like :'v1' group by 1 order by 1", like)
    print("Summary from PostgreSQL (communications table): the batch of %d" % TOTAL)
    print("  %-10s %-12s %8s" % ("channel", "status", "count"))
    print("  " + "-" * 32)
    for ch, st, n in rows:
        print("  %-10s %-12s %8s" % (ch, st, n))
    print("\n  %-22s %6s %6s" % ("message type", "sent+", "total"))
    print("  " + "-" * 36)
    for mt, s, n in types:
        print("  %-22s %6s %6s" % (mt, s, n))
    reasons = psql("select status, case when status = 'failed' then coalesce(error_code, '') || ' ' || "
                   "coalesce(error_message, '') else coalesce(reason, '') end, count(*) from communications "
                   "where request_id like :'v1' and status in ('failed','suppressed') group by 1, 2 order by 1, 2",
                   like)
    if reasons:
        print("\n  %-12s %-40s %6s" % ("not sent", "reason / provider code", "count"))
        print("  " + "-" * 60)
        for st, why, n in reasons:
            print("  %-12s %-40s %6s" % (st, why[:40], n))
    print("\n  latency accepted -> sent over %s messages: p50 %s ms, p95 %s ms" % tuple(lat))
    mails = sum(len(os.listdir(os.path.join(os.environ["CRM_MAILDIR"], d)))
                for d in ("new", "cur") if os.path.isdir(os.path.join(os.environ["CRM_MAILDIR"], d)))
    print("  the SMTP sandbox holds %d messages in %s" % (mails, os.environ["CRM_MAILDIR"]))


def receipts_summary(checks):
    """Receipts, over the batch and the scenarios."""
    both = "(request_id like :'v1' or request_id like :'v2')"
    rec = psql("select channel, count(*) filter (where sent_at is not null), "
               "count(*) filter (where status = 'sent'), count(*) filter (where status = 'delivered'), "
               "count(*) filter (where status = 'read'), "
               "count(*) filter (where status = 'failed' and sent_at is not null) "
               "from communications where " + both + " and channel in ('sms', 'whatsapp') "
               "group by 1 order by 1", "demo-%s-%%" % RUN, "scn-%s-%%" % RUN)
    print("\n[4] Delivery receipts: the sandboxes post signed status callbacks (Twilio) and webhooks (Meta) to the")
    print("    webhook receiver, which turns them into delivered/read events on crm.status.")
    print("  %-10s %8s %12s %10s %6s %16s" % ("channel", "sent", "no receipt", "delivered", "read", "failed receipt"))
    print("  " + "-" * 66)
    per = {}
    for ch, sent, waiting, dl, rd, fl in rec:
        per[ch] = (int(dl), int(rd))
        print("  %-10s %8s %12s %10s %6s %16s" % (ch, sent, waiting, dl, rd, fl))
    if os.environ.get("CRM_WEBHOOK_RECEIVER") == "1":
        ok = per.get("sms", (0, 0))[0] > 0
        print("  %s SMS delivered: %d" % (checks.check(ok, "no SMS delivered"), per.get("sms", (0, 0))[0]))
        ok = sum(per.get("whatsapp", (0, 0))) > 0
        print("  %s WhatsApp delivered or read: %d" % (checks.check(ok, "no WhatsApp delivered or read"),
                                                      sum(per.get("whatsapp", (0, 0)))))
    else:
        print("  (crm-webhook-receiver is not built: no receipts are received)")


def line(checks, scn, rows, rid, label, event=None):
    """One scenario: its current row against what was expected, its history, and
    optionally an event (status, reason) its history must hold."""
    r = rows.get(rid)
    pred, text = scn.expect[rid]
    ok = r is not None and pred(r)
    mark = checks.check(ok, "%s: expected %s" % (label, text))
    now = ("%s %s (hop %s)" % (r["channel"], r["status"], r["hop"])) if r else "no row"
    if r and r["reason"] and r["status"] in ("suppressed", "failed", "dead", "deferred"):
        now += " reason=%s" % r["reason"]
    print("  %s %-22s now %-34s expected %s" % (mark, label, now, text))
    print("       history: %s" % scn.history(rid))
    if event:
        n = scn.count_events(rid, *event)
        print("  %s a `%s` event with reason %s" % (checks.check(n > 0, "%s: no %s %s event" % ((label,) + event)),
                                                    event[0], event[1]))


def scenario_summary(scn, checks, receiver, receipt_fb, receipt_vars, stop):
    rows = scn.rows()
    print("\nScenarios (communications and communication_events)")

    print("\n[1] Retries: the Twilio sandbox answers 500 (numbers ending 20500) or 503 with Retry-After 2 s")
    print("    (20503), both retryable: the SMS worker retries through crm.retry.sms.* (RETRY_BASE_MS=%s,"
          % os.environ.get("RETRY_BASE_MS", "5000"))
    print("    RETRY_MAX_ATTEMPTS=%d); with no channel left to fall back to, the message ends dead with a copy"
          % MAX_ATTEMPTS)
    print("    on crm.dlq.")
    for name in ("retry-500-a", "retry-500-b", "retry-503"):
        rid = scn.rid(name)
        line(checks, scn, rows, rid, name)
        n = scn.count_events(rid, "retry_scheduled")
        ok = checks.check(n == MAX_ATTEMPTS - 1, "%s: %d retry_scheduled, expected %d" % (name, n, MAX_ATTEMPTS - 1))
        print("  %s %d retry_scheduled events (expected %d: one per attempt but the last)" % (ok, n, MAX_ATTEMPTS - 1))
    dead_ids = {scn.ids.get(scn.rid(n)) for n in ("retry-500-a", "retry-500-b", "retry-503")}
    out = subprocess.run([CRMCTL, "dlq", "list", "--reason", "retries exhausted"], capture_output=True, text=True)
    mine = [ln for ln in out.stdout.splitlines() if any(i and i in ln for i in dead_ids)]
    print("  $ crmctl dlq list --reason 'retries exhausted'   (this run's lines, at most 3)")
    for ln in mine[:3]:
        print("    " + ln)
    print("  %s %d of 3 dead letters on crm.dlq" % (checks.check(len(mine) >= 3, "dead letters on crm.dlq"),
                                                   len(mine)))

    print("\n[2] Fallback: 21610 (unsubscribed) is a permanent SMS failure; the plan sms > email goes on to")
    print("    email at hop 1, and the `fallback` event names both channels.")
    line(checks, scn, rows, scn.rid("fallback-21610"), "fallback-21610", ("fallback", "unsubscribed"))

    print("\n[3] Preferences (PUT before sending; the router reads them through its feed):")
    print("    - opted out of SMS: an appointment reminder (sms > whatsapp > email) goes by email; with")
    print("      channels [\"sms\"] explicitly it is suppressed, since an explicit list never overrides an opt-out;")
    line(checks, scn, rows, scn.rid("optout-routed"), "optout-routed")
    line(checks, scn, rows, scn.rid("optout-sms-only"), "optout-sms-only")
    print("    - WhatsApp consent and preferred channels whatsapp > email: the invitation goes on WhatsApp")
    print("      (as the approved template: no 24-hour window is open);")
    line(checks, scn, rows, scn.rid("whatsapp-consent"), "whatsapp-consent")
    print("    - quiet hours %s-%s in %s (built around the current time): the SMS is deferred to the"
          % (scn.quiet["start"], scn.quiet["end"], scn.quiet_zone))
    print("      end of the window through crm.defer.* (the demo does not wait for it).")
    line(checks, scn, rows, scn.rid("quiet-hours"), "quiet-hours")
    due = psql("select to_char(deferred_until at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC = ' || "
               "to_char(deferred_until at time zone :'v2', 'HH24:MI') || ' ' || :'v2' from request_claims "
               "where tenant_id = 'default' and request_id = :'v1' and state = 'deferred'",
               scn.rid("quiet-hours"), scn.quiet_zone)
    ok = bool(due) and due[0][0].endswith("%s %s" % (scn.quiet["end"], scn.quiet_zone))
    print("  %s due back at %s (the window's end)" % (checks.check(ok, "quiet-hours: due at the window's end"),
                                                     due[0][0] if due else "(no deferred claim)"))

    receipts_summary(checks)

    print("\n[5] Receipt-driven fallback: an SMS whose receipt says undelivered (30003), and a critical SMS with")
    print("    no final receipt (00000) by its receipt deadline, go on to email.")
    if receipt_fb:
        print("    Settings: %s (the other RECEIPT_* settings at their defaults)."
              % " ".join("%s=%s" % (v, os.environ[v]) for v in receipt_vars if v in os.environ))
        line(checks, scn, rows, scn.rid("receipt-undelivered"), "receipt-undelivered", ("fallback", "receipt_failed"))
        line(checks, scn, rows, scn.rid("receipt-deadline"), "receipt-deadline", ("fallback", "receipt_deadline"))
    elif not receiver:
        print("  receipt-driven fallback: not available in this build (no webhook receiver)")
    else:
        print("  receipt-driven fallback: not available in this build")

    print("\n[6] Inbound STOP: a signed Twilio inbound message \"STOP\" from the client's number to the webhook")
    print("    receiver opts the client out of SMS (crm.preferences); the next SMS is suppressed, and a message")
    print("    without explicit channels goes by email instead.")
    if not receiver:
        print("  (crm-webhook-receiver is not built: no inbound messages)")
        return
    line(checks, scn, rows, scn.rid("stop-before"), "stop-before")
    if stop is None:
        print("  FAIL the STOP was not posted (the first SMS never arrived)")
        checks.failed.append("STOP not posted")
        return
    status, body = stop
    print("  %s POST /twilio/inbound Body=STOP: HTTP %d %s" % (checks.check(status == 200, "STOP answered %d" % status),
                                                           status, str(body).strip()[:60]))
    snap = psql("select snapshot->'opt_out'->>'sms' from client_preferences where tenant_id = 'default' "
                "and client_id = :'v1'", scn.clients["stop"])
    print("  %s client_preferences: opt_out.sms = %s" % (checks.check(snap == [["true"]], "STOP not stored"),
                                                         snap[0][0] if snap else "(none)"))
    for name in ("stop-after-sms", "stop-after-any"):
        if scn.rid(name) in scn.expect:
            line(checks, scn, rows, scn.rid(name), name)


if __name__ == "__main__":
    try:
        main()
    except Timeout as err:
        print("\nTIMEOUT: %s; see the logs in %s" % (err, os.environ.get("CRM_LOG_DIR")))
        sys.exit(1)
