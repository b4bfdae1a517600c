#!/usr/bin/env python3
"""Drives N communications through the embedded fleet and prints one JSON line.

Requests go to the ingest API in batches of 1000 from 4 client threads.
Throughput is N divided by the time from the first POST to the moment the
projector has recorded the last `sent`. Latency is per communication, from
the router's `accepted` to the email worker's `sent` (both recorded by the
projector from the status events' occurred_at). Peak RSS is VmHWM of each
service process, read from /proc before the fleet stops."""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

N = int(sys.argv[1])
PIDS = sys.argv[2]
INGEST = os.environ["CRM_INGEST_URL"]
DB = os.environ["DATABASE_URL"]
RUN = "bench-%d" % int(time.time())
BATCH = 1000


def psql(sql):
    return subprocess.run(["psql", DB, "-X", "-A", "-t", "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def post_batches(batches):
    for body in batches:
        req = urllib.request.Request(INGEST + "/v1/communications", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            if resp.status != 202:
                raise SystemExit("ingest answered %d" % resp.status)


def main():
    bodies = []
    for start in range(0, N, BATCH):
        reqs = [{"request_id": "%s-%d" % (RUN, i), "client_id": "c-%d" % (i % 5000), "message_type": "welcome",
                 "recipient": {"name": "Client %d" % i, "email": "c%d@bench.example.com" % i, "locale": "en"},
                 "context": {"company": "Acme"}} for i in range(start, min(N, start + BATCH))]
        bodies.append(json.dumps({"requests": reqs}).encode())
    threads = [threading.Thread(target=post_batches, args=(bodies[k::4],)) for k in range(4)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ingest_s = time.time() - t0
    like = RUN + "-%"
    deadline = t0 + 1800
    done = 0
    while time.time() < deadline:
        done = int(psql("select count(*) from communications where request_id like '%s' and sent_at is not null"
                        % like))
        if done >= N:
            break
        time.sleep(0.5)
    total_s = time.time() - t0
    lat = psql("select round(percentile_cont(0.5) within group (order by extract(epoch from sent_at - accepted_at)"
               " * 1000)::numeric, 1) || ',' || round(percentile_cont(0.99) within group (order by extract(epoch "
               "from sent_at - accepted_at) * 1000)::numeric, 1) from communications where request_id like '%s' "
               "and sent_at is not null" % like).split(",")
    rss = {}
    with open(PIDS) as f:
        for line in f:
            name, pid = line.split()
            try:
                with open("/proc/%s/status" % pid) as st:
                    for l in st:
                        if l.startswith("VmHWM:"):
                            rss[name] = int(l.split()[1]) // 1024
            except OSError:
                pass
    print(json.dumps({
        "communications": N, "sent": done, "seconds": round(total_s, 2),
        "throughput_per_s": round(done / total_s, 1), "ingest_accept_per_s": round(N / ingest_s, 1),
        "latency_ms_p50": float(lat[0]) if lat[0] else None, "latency_ms_p99": float(lat[1]) if lat[1] else None,
        "peak_rss_mb": rss,
    }))
    if done < N:
        sys.exit(1)


if __name__ == "__main__":
    main()
