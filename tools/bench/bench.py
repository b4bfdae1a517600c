#!/usr/bin/env python3
"""Benchmarks of the embedded fleet (`make bench`), one JSON line per scenario.

  bench.py SCENARIOS PIDS_FILE

SCENARIOS is a comma-separated list of e2e, webhook and delay, run in that
order; docs/benchmarks.md says what each figure means.

e2e: drives BENCH_COUNT communications through the fleet. Requests go to the
ingest API in batches of 1000 from 4 client threads. Throughput is N divided
by the time from the first POST to the moment the projector has recorded the
last `sent`. Latency is per communication, from the router's `accepted` to the
email worker's `sent` (both recorded by the projector from the status events'
occurred_at). Peak RSS is VmHWM of each service process, read from /proc
before the fleet stops (it is a process-lifetime peak, hence measured first).

webhook: sends BENCH_WEBHOOK_SMS real SMS through ingest (Twilio sandbox),
then posts BENCH_WEBHOOK_COUNT signed Twilio `delivered` status callbacks for
their communication ids from BENCH_WEBHOOK_CLIENTS threads, each with its own
keep-alive connection. Every callback carries a distinct MessageSid, so each
one becomes its own row of communication_events.

delay: produces BENCH_DELAY_COUNT CommunicationRequests (email) onto
crm.defer.1m with x-crm-due-at spread over the next 2-10 s and x-crm-target
crm.requests, through tools/bench/bench-produce, and measures how late the
router routed each one: routed occurred_at minus due_at."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

DB = os.environ["DATABASE_URL"]
RUN = "bench-%d" % int(time.time())
BATCH = 1000


def psql(sql):
    return subprocess.run(["psql", DB, "-X", "-A", "-t", "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def post_json(url, body):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        if resp.status != 202:
            raise SystemExit("ingest answered %d" % resp.status)


def post_batches(batches):
    for body in batches:
        post_json(os.environ["CRM_INGEST_URL"] + "/v1/communications", body)


def wait_count(sql, want, deadline):
    """Polls sql (a count) until it reaches want or deadline; returns the last count."""
    got = 0
    while time.time() < deadline:
        got = int(psql(sql))
        if got >= want:
            break
        time.sleep(0.2)
    return got


def pct(sorted_vals, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ------------------------------------------------------------------ e2e


def scenario_e2e(pids):
    n = int(os.environ.get("BENCH_COUNT", "50000"))
    run = RUN + "-e2e"
    bodies = []
    for start in range(0, n, BATCH):
        reqs = [{"request_id": "%s-%d" % (run, i), "client_id": "c-%d" % (i % 5000), "message_type": "welcome",
                 "recipient": {"name": "Client %d" % i, "email": "c%d@bench.example.com" % i, "locale": "en"},
                 "context": {"company": "Acme"}} for i in range(start, min(n, start + BATCH))]
        bodies.append(json.dumps({"requests": reqs}).encode())
    threads = [threading.Thread(target=post_batches, args=(bodies[k::4],)) for k in range(4)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ingest_s = time.time() - t0
    like = run + "-%"
    done = wait_count("select count(*) from communications where request_id like '%s' and sent_at is not null"
                      % like, n, t0 + 1800)
    total_s = time.time() - t0
    lat = psql("select round(percentile_cont(0.5) within group (order by extract(epoch from sent_at - accepted_at)"
               " * 1000)::numeric, 1) || ',' || round(percentile_cont(0.99) within group (order by extract(epoch "
               "from sent_at - accepted_at) * 1000)::numeric, 1) from communications where request_id like '%s' "
               "and sent_at is not null" % like).split(",")
    rss = {}
    with open(pids) as f:
        for line in f:
            name, pid = line.split()
            try:
                with open("/proc/%s/status" % pid) as st:
                    for l in st:
                        if l.startswith("VmHWM:"):
                            rss[name] = int(l.split()[1]) // 1024
            except OSError:
                pass
    return done >= n, {
        "scenario": "e2e", "communications": n, "sent": done, "seconds": round(total_s, 2),
        "throughput_per_s": round(done / total_s, 1), "ingest_accept_per_s": round(n / ingest_s, 1),
        "latency_ms_p50": float(lat[0]) if lat[0] else None, "latency_ms_p99": float(lat[1]) if lat[1] else None,
        "peak_rss_mb": rss,
    }


# -------------------------------------------------------------- webhook


def twilio_signature(token, url, params):
    """X-Twilio-Signature, from Twilio's documentation (as tests/tools/webhook_sign.py)."""
    data = url
    for name, value in sorted(params):
        data += name + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post_callbacks(base, items, latencies, failures):
    """Posts each prepared (path, body, signature) on one keep-alive connection."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    for path, body, sig in items:
        t = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            status = 0
        latencies.append(time.perf_counter() - t)
        if status != 200:
            failures.append(status)
    conn.close()


def scenario_webhook():
    n = int(os.environ.get("BENCH_WEBHOOK_COUNT", "5000"))
    m = int(os.environ.get("BENCH_WEBHOOK_SMS", "200"))
    k = int(os.environ.get("BENCH_WEBHOOK_CLIENTS", "16"))
    token = os.environ["TWILIO_AUTH_TOKEN"]
    base = os.environ["CRM_WEBHOOK_URL"]
    run = RUN + "-wh"

    # Real SMS first, so the callbacks name communications the engine sent.
    reqs = [{"request_id": "%s-%d" % (run, i), "client_id": "w-%d" % i, "message_type": "welcome",
             "recipient": {"name": "Client %d" % i, "phone": "+3361234%04d" % i, "locale": "en"},
             "channels": ["sms"], "context": {"company": "Acme"}} for i in range(m)]
    t0 = time.time()
    for start in range(0, m, BATCH):
        post_json(os.environ["CRM_INGEST_URL"] + "/v1/communications",
                  json.dumps({"requests": reqs[start:start + BATCH]}).encode())
    like = run + "-%"
    sent = wait_count("select count(*) from communications where request_id like '%s' and sent_at is not null"
                      % like, m, t0 + 600)
    sms_s = time.time() - t0
    ids = psql("select communication_id from communications where request_id like '%s' and sent_at is not null"
               % like).split()
    if not ids:
        return False, {"scenario": "webhook", "error": "no SMS was sent", "sms": m, "sms_sent": sent}

    # Prepared before the clock starts: the figures measure the receiver,
    # not this script's HMAC.
    prefix = "SM" + uuid.uuid4().hex[:8]
    items = []
    for i in range(n):
        path = "/twilio/status?communication_id=%s&hop=0&attempt=1" % ids[i % len(ids)]
        params = [("MessageSid", "%s%024x" % (prefix, i)), ("MessageStatus", "delivered"),
                  ("AccountSid", os.environ.get("TWILIO_ACCOUNT_SID", "")), ("To", "+33612340000"),
                  ("From", "+14155550100"), ("ApiVersion", "2010-04-01")]
        items.append((path, urllib.parse.urlencode(params), twilio_signature(token, base + path, params)))
    latencies, failures = [], []
    threads = [threading.Thread(target=post_callbacks, args=(base, items[j::k], latencies, failures))
               for j in range(k)]
    t1 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    post_s = time.time() - t1
    accepted = n - len(failures)
    stored = wait_count("select count(*) from communication_events where provider_message_id like '%s%%' and "
                        "status = 'delivered'" % prefix, accepted, t1 + 600)
    stored_s = time.time() - t1
    latencies.sort()
    sms_rate = sent / sms_s if sms_s > 0 else None
    accept_rate = accepted / post_s
    return stored >= n and not failures, {
        "scenario": "webhook", "callbacks": n, "clients": k, "accepted": accepted,
        "rejected": len(failures), "accept_per_s": round(accept_rate, 1),
        "http_ms_p50": round(pct(latencies, 0.5) * 1000, 2), "http_ms_p99": round(pct(latencies, 0.99) * 1000, 2),
        "events_stored": stored, "seconds_until_stored": round(stored_s, 2),
        "stored_per_s": round(stored / stored_s, 1),
        "sms": m, "sms_sent": sent, "sms_send_per_s": round(sms_rate, 1) if sms_rate else None,
        "accept_to_sms_send_ratio": round(accept_rate / sms_rate, 1) if sms_rate else None,
    }


# ---------------------------------------------------------------- delay


def lateness_histogram(router_url):
    """Count and sum of the router's delay_lateness_seconds{family="crm.defer"}."""
    with urllib.request.urlopen(router_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("delay_lateness_seconds_count") and 'family="crm.defer"' in line:
            count = float(line.split()[-1])
        elif line.startswith("delay_lateness_seconds_sum") and 'family="crm.defer"' in line:
            total = float(line.split()[-1])
    return count, total


def scenario_delay(build):
    r = int(os.environ.get("BENCH_DELAY_COUNT", "2000"))
    run = RUN + "-dl"
    router = os.environ["CRM_ROUTER_URL"]
    c0, s0 = lateness_histogram(router)
    now_ms = int(time.time() * 1000)
    # Sorted by due time, as the router's own deferrals reach a tier (a
    # constant wait after the moment they were decided).
    dues = sorted(now_ms + random.randint(2000, 10000) for _ in range(r))
    lines = []
    for i, due in enumerate(dues):
        req = {"v": 1, "request_id": "%s-%d" % (run, i), "tenant_id": "default", "client_id": "d-%d" % i,
               "message_type": "welcome", "urgency": "normal",
               "recipient": {"name": "Client %d" % i, "email": "d%d@bench.example.com" % i, "locale": "en"},
               "channels": ["email"], "context": {"company": "Acme"}}
        lines.append("%d\t%s\t%s\n" % (due, req["client_id"], json.dumps(req, separators=(",", ":"))))
    due_by_req = {"%s-%d" % (run, i): due for i, due in enumerate(dues)}
    produce = os.path.join(build, "tools/bench/bench-produce")
    out = subprocess.run([produce, os.environ["KAFKA_BROKERS"], "crm.defer.1m", "crm.requests"],
                         input="".join(lines), capture_output=True, text=True)
    if out.returncode != 0:
        return False, {"scenario": "delay", "error": out.stderr.strip()}
    produced_at = time.time()
    like = run + "-%"
    routed = wait_count("select count(*) from communications where request_id like '%s' and routed_at is not null"
                        % like, r, produced_at + 120)
    rows = psql("select request_id || ' ' || (extract(epoch from routed_at) * 1000)::bigint from communications"
                " where request_id like '%s' and routed_at is not null" % like).splitlines()
    late = sorted((int(ms) - due_by_req[rid]) / 1000.0 for rid, ms in (row.split() for row in rows))
    c1, s1 = lateness_histogram(router)
    dq_n = c1 - c0
    return routed >= r, {
        "scenario": "delay", "records": r, "tier": "crm.defer.1m", "routed": routed,
        "produce_seconds": round(produced_at - now_ms / 1000.0, 2),
        "lateness_s_p50": round(pct(late, 0.5), 3) if late else None,
        "lateness_s_p99": round(pct(late, 0.99), 3) if late else None,
        "lateness_s_max": round(late[-1], 3) if late else None,
        "early": sum(1 for x in late if x < 0),
        "delayq_delivered": int(dq_n),
        "delayq_lateness_s_mean": round((s1 - s0) / dq_n, 3) if dq_n > 0 else None,
    }


def main():
    scenarios = [s.strip() for s in sys.argv[1].split(",") if s.strip()]
    pids = sys.argv[2]
    build = os.environ.get("BUILD", "build")
    unknown = set(scenarios) - {"e2e", "webhook", "delay"}
    if unknown:
        raise SystemExit("bench: unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    ok = True
    for name in ("e2e", "webhook", "delay"):
        if name not in scenarios:
            continue
        if name == "e2e":
            good, figures = scenario_e2e(pids)
        elif name == "webhook":
            good, figures = scenario_webhook()
        else:
            good, figures = scenario_delay(build)
        print(json.dumps(figures), flush=True)
        ok = ok and good
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
