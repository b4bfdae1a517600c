/* router_receipts.c - the guard of receipt watches (see router_receipts.h). */
#include "router_receipts.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/pg.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/uuid.h"

/* The guard runs on the defer consumer's thread, where a long connect
 * attempt holds up every tier partition: connect briefly, and after a
 * failure let the queue's own retry (about a second) pace the attempts. */
#define PG_CONNECT_TIMEOUT_MS 2000
#define PG_RETRY_MS 1000
#define PG_STATEMENT_TIMEOUT "SET statement_timeout = '10s'"
#define DISCRIMINATOR "receipt"

/* Metric label values: the rule that decided, plus the two non-decisions. */
enum { WHY_N = CMN_RECEIPT_WHY_WAITING + 1 };
#define OUT_DB_DOWN WHY_N
#define OUT_REJECTED (WHY_N + 1)
#define OUT_N (WHY_N + 2)

const char ROUTER_RECEIPTS_FACTS_SQL[] =
    "SELECT c.hop,"
    " coalesce(bool_or(e.status IN ('delivered', 'read', 'opened', 'clicked')), false),"
    " coalesce(bool_or(e.status = 'failed'), false),"
    " coalesce(bool_or(e.status = 'fallback'), false),"
    " coalesce(max(e.attempt) FILTER (WHERE e.status = 'sent'), 0),"
    " coalesce(max(e.channel) FILTER (WHERE e.status = 'sent'), max(e.channel), '')"
    " FROM communications AS c"
    " LEFT JOIN communication_events AS e ON e.communication_id = c.communication_id AND e.hop = $2::int"
    " WHERE c.communication_id = $1::uuid"
    " GROUP BY c.hop";

struct router_receipts {
    cmn_receipt_policy_t policy;
    const char *database_url;
    const cmn_log_t *log;
    PGconn *pg;
    int pg_session_pid;   /* backend the statement timeout was set on */
    int64_t pg_retry_at;  /* monotonic: no new connection attempt before */
    int pg_down_logged;   /* one warning per outage */
    cmn_counter_t *outcomes[OUT_N];
};

/* ------------------------------------------------------------ pure part */

int router_receipts_fallback_event(const cmn_receipt_guard_t *g, const cmn_dispatch_t *next, cmn_channel_t from,
                                   int attempt, cmn_receipt_why_t why, int64_t now_ms, cmn_buf_t *out)
{
    cmn_status_event_t ev;
    char details[160];
    if (g == NULL || next == NULL || out == NULL || (int)from < 0 || (int)from >= CMN_CHANNEL__COUNT)
        return CMN_ERR_INVALID;
    /* Both names are fixed tokens: no escaping needed. */
    int n = snprintf(details, sizeof details, "{\"from\":\"%s\",\"to\":\"%s\",\"why\":\"%s\"}",
                     cmn_channel_name(from), cmn_channel_name(next->channel), cmn_receipt_why_name(why));
    if (n < 0 || (size_t)n >= sizeof details)
        return CMN_ERR_OVERFLOW;
    memset(&ev, 0, sizeof ev);
    memcpy(ev.communication_id, g->communication_id, sizeof ev.communication_id);
    ev.request_id = next->request_id;
    ev.tenant_id = next->tenant_id;
    ev.client_id = next->client_id;
    ev.message_type = next->message_type;
    ev.channel = from;
    ev.status = CMN_STATUS_FALLBACK;
    ev.hop = g->hop;
    ev.attempt = attempt > 0 ? attempt : 1;
    ev.reason = cmn_receipt_why_name(why);
    /* The id depends on the watch only, so a watch handled twice (a crash
     * before the commit) gives the same event, stored once. */
    ev.discriminator = DISCRIMINATOR;
    ev.details_json = details;
    ev.occurred_at_ms = now_ms;
    int rc = cmn_status_event_finalize(&ev);
    if (rc != 0)
        return rc;
    cmn_buf_reset(out);
    return cmn_status_event_to_json(&ev, out);
}

static void answer(router_receipt_answer_t *ans, cmn_delayq_verdict_t v, cmn_receipt_why_t why)
{
    ans->verdict = v;
    ans->why = why;
}

int router_receipts_decide(const cmn_receipt_policy_t *p, const char *g_value, size_t g_len,
                           const cmn_dispatch_t *next, const char *parse_error, const router_receipt_facts_t *facts,
                           int64_t now_ms, router_receipt_answer_t *ans, cmn_buf_t *fallback_json)
{
    cmn_receipt_guard_t g;
    cmn_receipt_decision_t dec;
    if (p == NULL || ans == NULL || fallback_json == NULL)
        return CMN_ERR_INVALID;
    memset(ans, 0, sizeof *ans);
    if (cmn_receipt_guard_parse(g_value, g_len, &g) != 0) {
        answer(ans, CMN_DELAYQ_REJECT, CMN_RECEIPT_WHY_NONE);
        snprintf(ans->reason, sizeof ans->reason,
                 CMN_HDR_GUARD ": must be r1:<communication_id>:<hop>:<sent_at_ms>:<deadline_at_ms>");
        return 0;
    }
    if (next == NULL) {
        answer(ans, CMN_DELAYQ_REJECT, CMN_RECEIPT_WHY_NONE);
        snprintf(ans->reason, sizeof ans->reason, "value: not a Dispatch: %s",
                 parse_error != NULL ? parse_error : "unreadable");
        return 0;
    }
    /* The guard speaks for the Dispatch it travels with and no other: a
     * mismatch is a producer's bug, and sending would be a guess. */
    if (strcmp(next->communication_id, g.communication_id) != 0 || next->hop != g.hop + 1) {
        answer(ans, CMN_DELAYQ_REJECT, CMN_RECEIPT_WHY_NONE);
        snprintf(ans->reason, sizeof ans->reason,
                 CMN_HDR_GUARD ": watches hop %d of another communication or hop than the Dispatch (hop %d)", g.hop,
                 next->hop);
        return 0;
    }
    if (facts == NULL) {
        answer(ans, CMN_DELAYQ_RETRY, CMN_RECEIPT_WHY_NONE);
        return 0;
    }
    if (cmn_receipt_decide(p, &g, &facts->facts, now_ms, &dec) != 0) {
        /* Only a bad policy gets here; the router checked it at start. */
        answer(ans, CMN_DELAYQ_RETRY, CMN_RECEIPT_WHY_NONE);
        return 0;
    }
    switch (dec.action) {
    case CMN_RECEIPT_DROP:
        answer(ans, CMN_DELAYQ_DROP, dec.why);
        return 0;
    case CMN_RECEIPT_RECHECK:
        answer(ans, CMN_DELAYQ_RECHECK, dec.why);
        ans->recheck_at_ms = dec.recheck_at_ms;
        return 0;
    case CMN_RECEIPT_DELIVER:
        break;
    }
    if ((int)facts->channel < 0 || (int)facts->channel >= CMN_CHANNEL__COUNT) {
        /* No event of the watched hop is projected yet (the deadline
         * passed while the projector lags): the fallback event needs the
         * hop's channel, so look again one interval later. */
        answer(ans, CMN_DELAYQ_RECHECK, CMN_RECEIPT_WHY_WAITING);
        ans->recheck_at_ms = now_ms + p->check_interval_ms;
        return 0;
    }
    if (router_receipts_fallback_event(&g, next, facts->channel, facts->sent_attempt, dec.why, now_ms,
                                       fallback_json) != 0) {
        answer(ans, CMN_DELAYQ_RETRY, CMN_RECEIPT_WHY_NONE);
        return 0;
    }
    answer(ans, CMN_DELAYQ_DELIVER, dec.why);
    return 0;
}

/* ------------------------------------------------------------ database */

static void pg_down(router_receipts_t *r, const char *what, const char *err)
{
    r->pg_retry_at = cmn_monotonic_ms() + PG_RETRY_MS;
    if (r->pg_down_logged)
        return;
    r->pg_down_logged = 1;
    const char *kv[] = {"error", err, NULL};
    cmn_logkv(r->log, CMN_LOG_WARN, NULL, kv, "receipt watches: %s; they wait for PostgreSQL", what);
}

/* Reads the facts of hop g->hop of g's communication into *out. Returns 0,
 * or CMN_ERR_DB when PostgreSQL could not answer. */
static int read_facts(router_receipts_t *r, const cmn_receipt_guard_t *g, router_receipt_facts_t *out)
{
    char err[512] = "";
    char hop[16];
    PGresult *res = NULL;
    int rc = CMN_ERR_DB;

    memset(out, 0, sizeof *out);
    out->channel = CMN_CHANNEL_NONE;
    if (r->pg == NULL && cmn_monotonic_ms() < r->pg_retry_at)
        return CMN_ERR_DB;
    if (cmn_pg_ensure(&r->pg, r->database_url, PG_CONNECT_TIMEOUT_MS, err, sizeof err) != 0) {
        pg_down(r, "cannot connect", err);
        return CMN_ERR_DB;
    }
    if (PQbackendPID(r->pg) != r->pg_session_pid) {
        if (cmn_pg_exec(r->pg, PG_STATEMENT_TIMEOUT, err, sizeof err) != 0) {
            pg_down(r, "cannot set the statement timeout", err);
            return CMN_ERR_DB;
        }
        r->pg_session_pid = PQbackendPID(r->pg);
    }
    snprintf(hop, sizeof hop, "%d", g->hop);
    const char *params[2] = {g->communication_id, hop};
    res = PQexecParams(r->pg, ROUTER_RECEIPTS_FACTS_SQL, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_down(r, "cannot read a communication", PQerrorMessage(r->pg));
        goto cleanup;
    }
    if (r->pg_down_logged) {
        r->pg_down_logged = 0;
        cmn_logkv(r->log, CMN_LOG_INFO, NULL, NULL, "receipt watches: PostgreSQL answers again");
    }
    rc = 0;
    if (PQntuples(res) == 0)
        goto cleanup; /* not projected yet: found = 0 */
    out->facts.found = 1;
    out->facts.current_hop = atoi(PQgetvalue(res, 0, 0));
    out->facts.delivered = PQgetvalue(res, 0, 1)[0] == 't';
    out->facts.failed = PQgetvalue(res, 0, 2)[0] == 't';
    /* A `fallback` recorded at the watched hop means the communication
     * already moved on (its next hop's events may not be projected yet). */
    if (PQgetvalue(res, 0, 3)[0] == 't' && out->facts.current_hop <= g->hop)
        out->facts.current_hop = g->hop + 1;
    out->sent_attempt = atoi(PQgetvalue(res, 0, 4));
    out->channel = cmn_channel_parse(PQgetvalue(res, 0, 5));

cleanup:
    PQclear(res);
    return rc;
}

/* -------------------------------------------------------------- guard */

router_receipts_t *router_receipts_new(const cmn_receipt_policy_t *policy, const char *database_url,
                                       const cmn_log_t *log, cmn_metrics_t *metrics, char *errstr, size_t errlen)
{
    router_receipts_t *r = NULL;
    cmn_receipt_guard_t probe;
    int64_t first = 0;
    if (policy == NULL || database_url == NULL || log == NULL) {
        snprintf(errstr, errlen, "receipt watches: policy, database URL and log are required");
        return NULL;
    }
    /* cmn_receipt_watch() validates the policy; the id and time are
     * stand-ins. */
    if (cmn_receipt_watch(policy, "00000000-0000-4000-8000-000000000000", 0, CMN_URGENCY_NORMAL,
                          INT64_C(1700000000000), &probe, &first) != 0) {
        snprintf(errstr, errlen, "receipt watches: the check interval and max wait must be > 0");
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    r->policy = *policy;
    r->database_url = database_url;
    r->log = log;
    r->pg_session_pid = -1;
    for (int i = 0; metrics != NULL && i < OUT_N; i++) {
        char labels[64];
        const char *name = i == OUT_DB_DOWN    ? "db_unavailable"
                           : i == OUT_REJECTED ? "rejected"
                                               : cmn_receipt_why_name((cmn_receipt_why_t)i);
        if (name[0] == '\0')
            continue; /* WHY_NONE is never counted */
        snprintf(labels, sizeof labels, "why=\"%s\"", name);
        r->outcomes[i] = cmn_metrics_counter(
            metrics, "router_receipt_watches_total",
            "Due receipt watches by what was decided: receipt_failed and receipt_deadline sent the next channel; "
            "delivered, moved_on and gave_up dropped the watch; waiting looks again later.",
            labels);
        if (r->outcomes[i] == NULL) {
            snprintf(errstr, errlen, "receipt watches: cannot register metrics");
            free(r);
            return NULL;
        }
    }
    return r;
}

static void count(router_receipts_t *r, int outcome)
{
    if (outcome >= 0 && outcome < OUT_N && r->outcomes[outcome] != NULL)
        cmn_counter_add(r->outcomes[outcome], 1);
}

cmn_delayq_verdict_t router_receipts_guard(void *ctx, const cmn_kafka_message_t *rec, const char *value,
                                           size_t value_len, cmn_delayq_guard_out_t *out)
{
    router_receipts_t *r = ctx;
    cmn_dispatch_t d;
    cmn_receipt_guard_t g;
    router_receipt_facts_t facts;
    router_receipt_answer_t ans;
    cmn_buf_t json = CMN_BUF_INIT;
    char why[256] = "";
    int have_dispatch = 0, have_facts = 0;

    memset(&d, 0, sizeof d);
    json_object *obj = rec->value != NULL ? cmn_json_parse(rec->value, rec->value_len, why, sizeof why) : NULL;
    if (obj == NULL && why[0] == '\0')
        snprintf(why, sizeof why, "empty value");
    if (obj != NULL)
        have_dispatch = cmn_dispatch_from_json(obj, &d, why, sizeof why) == 0;
    if (have_dispatch && cmn_receipt_guard_parse(value, value_len, &g) == 0)
        have_facts = read_facts(r, &g, &facts) == 0;
    int64_t now = cmn_now_ms();
    (void)router_receipts_decide(&r->policy, value, value_len, have_dispatch ? &d : NULL, why,
                                 have_facts ? &facts : NULL, now, &ans, &json);
    cmn_delayq_verdict_t v = ans.verdict;
    const char *cid = have_dispatch ? d.communication_id : NULL;
    switch (v) {
    case CMN_DELAYQ_DELIVER: {
        size_t tp_len = 0;
        const void *tp = cmn_kafka_message_header(rec, CMN_HDR_TRACEPARENT, &tp_len);
        cmn_kafka_header_t h[1] = {{CMN_HDR_TRACEPARENT, tp, tp_len}};
        int rc = cmn_delayq_guard_add(out, CMN_TOPIC_STATUS, d.communication_id, strlen(d.communication_id),
                                      json.data, json.len, h, tp != NULL ? 1 : 0);
        if (rc != 0) {
            /* Without its `fallback` event the move would be invisible;
             * the queue asks again shortly. */
            cmn_log_error(r->log, cid, "receipt watch: cannot queue the fallback event: %s", cmn_strerror(rc));
            v = CMN_DELAYQ_RETRY;
            count(r, OUT_DB_DOWN);
            break;
        }
        const char *kv[] = {"why", cmn_receipt_why_name(ans.why), "to", cmn_channel_name(d.channel), NULL};
        cmn_logkv(r->log, CMN_LOG_INFO, cid, kv, "receipt watch: moving on to the next channel");
        count(r, (int)ans.why);
        break;
    }
    case CMN_DELAYQ_RECHECK:
        out->recheck_at_ms = ans.recheck_at_ms;
        count(r, (int)ans.why);
        break;
    case CMN_DELAYQ_DROP: {
        const char *kv[] = {"why", cmn_receipt_why_name(ans.why), NULL};
        cmn_logkv(r->log, CMN_LOG_DEBUG, cid, kv, "receipt watch: dropped");
        count(r, (int)ans.why);
        break;
    }
    case CMN_DELAYQ_REJECT:
        snprintf(out->reason, sizeof out->reason, "%s", ans.reason);
        count(r, OUT_REJECTED);
        break;
    case CMN_DELAYQ_RETRY:
        count(r, OUT_DB_DOWN);
        break;
    }
    cmn_buf_free(&json);
    cmn_dispatch_clear(&d);
    json_object_put(obj);
    return v;
}

void router_receipts_destroy(router_receipts_t *r)
{
    if (r == NULL)
        return;
    if (r->pg != NULL)
        PQfinish(r->pg);
    free(r);
}
