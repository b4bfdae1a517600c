#!/usr/bin/env python3
"""The demo's client: sends a realistic batch to the ingest API, shows a
progress bar while the fleet works, then prints a summary from PostgreSQL.

Uses only the standard library plus the psql client, so it runs on a fresh
Debian machine after `make demo` installed the build dependencies."""
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

INGEST = os.environ["CRM_INGEST_URL"]
DB = os.environ["DATABASE_URL"]
RUN = time.strftime("%Y%m%d%H%M%S")
TOTAL = int(os.environ.get("DEMO_COUNT", "300"))

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


def post(body):
    req = urllib.request.Request(INGEST + "/v1/communications", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def psql(sql):
    out = subprocess.run(["psql", DB, "-X", "-A", "-t", "-F", "\t", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.strip().splitlines() if line]


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


def main():
    rnd = random.Random(42)
    reqs = build_requests(rnd)
    print("\nSending %d communications (5 message types, 7 locales, email/SMS/WhatsApp) in batches of 50..." % TOTAL)
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
    print("Re-sent 20 duplicates: HTTP %d, %d/20 map to existing communications (no second email)." % (status, same))

    bad = [
        {"request_id": "demo-bad-1", "client_id": "c1", "message_type": "welcome",
         "recipient": {"email": "not-an-email", "phone": "0612345678", "timezone": "Mars/Olympus"}},
        {"client_id": "c2", "message_type": "welcome", "urgency": "asap", "recipient": {"email": "a@example.com"}},
    ]
    status, answer = post({"requests": bad})
    print("Sent 2 invalid requests: HTTP %d (%s), nothing produced:" % (status, answer.get("title", "")))
    for err in answer.get("errors", []):
        print("   - %-28s %s" % (err.get("field"), err.get("reason")))

    print("\nWaiting for the fleet (router -> email/SMS/WhatsApp workers -> sandboxes -> projector):")
    deadline = time.time() + 300
    done = 0
    like = "demo-%s-%%" % RUN
    while time.time() < deadline:
        done = int(psql("select count(*) from communications where request_id like '%s' and status in "
                        "('sent','delivered','read','opened','clicked','failed','suppressed','dead','rejected')"
                        % like)[0][0])
        sys.stdout.write("\r  " + bar(done, TOTAL))
        sys.stdout.flush()
        if done >= TOTAL:
            break
        time.sleep(0.5)
    print("\n")

    rows = psql("select coalesce(channel,'-'), status, count(*) from communications where request_id like '%s' "
                "group by 1, 2 order by 1, 2" % like)
    lat = psql("select count(*), round(percentile_cont(0.5) within group (order by extract(epoch from "
               "sent_at - accepted_at) * 1000)::numeric, 1), round(percentile_cont(0.95) within group (order by "
               "extract(epoch from sent_at - accepted_at) * 1000)::numeric, 1) from communications where "
               "request_id like '%s' and sent_at is not null" % like)[0]
    types = psql("select message_type, count(*) filter (where status = 'sent'), count(*) from communications "
                 "where request_id like '%s' group by 1 order by 1" % like)
    print("Summary from PostgreSQL (communications table)")
    print("  %-10s %-12s %8s" % ("channel", "status", "count"))
    print("  " + "-" * 32)
    for ch, st, n in rows:
        print("  %-10s %-12s %8s" % (ch, st, n))
    print("\n  %-22s %6s %6s" % ("message type", "sent", "total"))
    print("  " + "-" * 36)
    for mt, s, n in types:
        print("  %-22s %6s %6s" % (mt, s, n))
    reasons = psql("select status, case when status = 'failed' then coalesce(error_code, '') || ' ' || coalesce(error_message, '') else coalesce(reason, '') end, count(*) from communications where request_id "
                   "like '%s' and status in ('failed','suppressed') group by 1, 2 order by 1, 2" % like)
    if reasons:
        print("\n  %-12s %-40s %6s" % ("not sent", "reason / SMTP code", "count"))
        print("  " + "-" * 60)
        for st, why, n in reasons:
            print("  %-12s %-40s %6s" % (st, why[:40], n))
    print("\n  latency accepted -> sent over %s messages: p50 %s ms, p95 %s ms" % tuple(lat))
    mails = sum(len(os.listdir(os.path.join(os.environ["CRM_MAILDIR"], d)))
                for d in ("new", "cur") if os.path.isdir(os.path.join(os.environ["CRM_MAILDIR"], d)))
    print("  the SMTP sandbox holds %d messages in %s" % (mails, os.environ["CRM_MAILDIR"]))
    if done < TOTAL:
        print("\nNot every communication finished in time; see the logs in %s" % os.environ.get("CRM_LOG_DIR"))
        sys.exit(1)


if __name__ == "__main__":
    main()
