/* test_worker_core.c - the shared worker core (crm/worker.h) driving an
 * HTTP channel, in process, between the Kafka mock cluster and a fake
 * provider (libmicrohttpd on 127.0.0.1).
 *
 * The test channel is what an SMS or WhatsApp channel looks like: prepare
 * builds a request and fills details_json, sender names the rate-limit key,
 * submit hands over an easy handle, classify reads the captured status,
 * body and Retry-After and maps provider codes with crm/provider_errors.h.
 * Checked here: per-sender rate limiting (spacing of one sender's requests,
 * independence of another's), response capture, Retry-After reaching the
 * retry_scheduled event's details and the retry's due time on its tier
 * record, permanent reasons, and sending/sent/retry_scheduled/failed events
 * with details on crm.status. (The retry's way back through the tiers is
 * test_worker_retry.c's, with the real SMS worker.) */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/json.h"
#include "crm/log.h"
#include "crm/provider_errors.h"
#include "crm/signal.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "crm/worker.h"
#include "th_kafka.h"

#define RATE 4.0 /* messages per second per sender: 250 ms apart */
#define MAX_HITS 64

/* ------------------------------------------------------- fake provider */

typedef struct hit {
    char sender[16];
    int64_t at_ms; /* monotonic */
} hit_t;

typedef struct provider {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu;
    hit_t hits[MAX_HITS];
    int nhits;
    int next_sid;
} provider_t;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, const char *body,
                             const char *retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after != NULL)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* GET /<sender>/<behaviour>: ok (201 with a sid), throttled (429 with
 * Retry-After: 3 and Twilio's 20429 body) or unsubscribed (400, 21610). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    provider_t *p = cls;
    char sender[16] = "", behaviour[16] = "", body[128];
    if (sscanf(url, "/%15[a-z]/%15[a-z]", sender, behaviour) != 2)
        return reply(conn, 404, "{}", NULL);
    pthread_mutex_lock(&p->mu);
    if (p->nhits < MAX_HITS) {
        snprintf(p->hits[p->nhits].sender, sizeof p->hits[p->nhits].sender, "%s", sender);
        p->hits[p->nhits].at_ms = cmn_monotonic_ms();
        p->nhits++;
    }
    int sid = ++p->next_sid;
    pthread_mutex_unlock(&p->mu);
    if (strcmp(behaviour, "throttled") == 0)
        return reply(conn, 429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}", "3");
    if (strcmp(behaviour, "unsubscribed") == 0)
        return reply(conn, 400, "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\"}", NULL);
    snprintf(body, sizeof body, "{\"sid\":\"SM%032d\",\"status\":\"queued\"}", sid);
    return reply(conn, 201, body, NULL);
}

static void provider_start(provider_t *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                                 on_request, p, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(p->daemon, "fake provider did not start");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(p->daemon, MHD_DAEMON_INFO_BIND_PORT);
    p->port = info->port;
}

/* ------------------------------------------------------- test channel */

typedef struct test_channel {
    int port;
} test_channel_t;

typedef struct test_msg {
    CURL *easy;
    char url[128];
    char sender[16];
} test_msg_t;

static int tc_prepare(void *impl, const cmn_dispatch_t *d, void **msg, cmn_worker_result_t *res)
{
    test_channel_t *c = impl;
    const char *sender = cmn_json_get_string(d->context, "sender");
    const char *behaviour = cmn_json_get_string(d->context, "behaviour");
    if (sender == NULL || behaviour == NULL) {
        cmn_worker_result_permanent(res, "bad_context", "invalid_message", "context needs sender and behaviour");
        return -1;
    }
    test_msg_t *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    snprintf(m->sender, sizeof m->sender, "%s", sender);
    snprintf(m->url, sizeof m->url, "http://127.0.0.1:%d/%s/%s", c->port, sender, behaviour);
    snprintf(res->details_json, sizeof res->details_json, "{\"segments\":1,\"encoding\":\"GSM-7\"}");
    *msg = m;
    return 0;
}

static const char *tc_sender(void *impl, const void *msg)
{
    return ((const test_msg_t *)msg)->sender;
}

static int tc_submit(void *impl, void *msg, CURL **easy)
{
    test_msg_t *m = msg;
    m->easy = curl_easy_init();
    if (m->easy == NULL)
        return -1;
    curl_easy_setopt(m->easy, CURLOPT_URL, m->url);
    curl_easy_setopt(m->easy, CURLOPT_TIMEOUT_MS, 10000L);
    *easy = m->easy;
    return 0;
}

static void tc_classify(void *impl, void *msg, const cmn_worker_response_t *resp, cmn_worker_result_t *res)
{
    char why[128] = "";
    json_object *body = cmn_json_parse(resp->body, resp->body_len, why, sizeof why);
    if (resp->code == CURLE_OK && resp->status == 201) {
        cmn_worker_result_sent(res, cmn_json_get_string(body, "sid"), "status: %s",
                               cmn_json_get_string(body, "status"));
    } else {
        long code = (long)json_object_get_int64(json_object_object_get(body, "code"));
        cmn_provider_outcome_t o = cmn_provider_classify_twilio((int)resp->status, code);
        char code_text[32];
        snprintf(code_text, sizeof code_text, "%ld", code);
        if (o.action == CMN_PROVIDER_ACTION_RETRY)
            cmn_worker_result_retry(res, code_text, resp->retry_after_ms, "%s",
                                    cmn_json_get_string(body, "message"));
        else
            cmn_worker_result_permanent(res, code_text, o.reason, "%s", cmn_json_get_string(body, "message"));
    }
    json_object_put(body);
}

static void tc_release(void *impl, void *msg)
{
    test_msg_t *m = msg;
    if (m->easy != NULL)
        curl_easy_cleanup(m->easy);
    free(m);
}

/* -------------------------------------------------------------- helpers */

static void produce(const char *brokers, int i, const char *sender, const char *behaviour, char cid_out[37])
{
    char request_id[64], name[96], cid[CMN_UUID_STR_LEN + 1], now[40];
    snprintf(request_id, sizeof request_id, "wc-%d", i);
    int n = snprintf(name, sizeof name, "worker-core-test|%s", request_id);
    cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_EVENT, name, (size_t)n, cid), 0);
    cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
    char value[1024];
    snprintf(value, sizeof value,
             "{\"v\":1,\"communication_id\":\"%s\",\"request_id\":\"%s\",\"tenant_id\":\"acme\","
             "\"client_id\":\"client-%d\",\"message_type\":\"reminder\",\"urgency\":\"normal\",\"channel\":\"sms\","
             "\"attempt\":1,\"hop\":0,\"to\":\"+33612345678\",\"recipient\":{\"phone\":\"+33612345678\"},"
             "\"context\":{\"sender\":\"%s\",\"behaviour\":\"%s\"},\"fallback\":[],\"created_at\":\"%s\"}",
             cid, request_id, i, sender, behaviour, now);
    /* One key for all, so the records share a partition and come in one
     * batch in order. */
    cr_assert_eq(th_kafka_produce(brokers, "crm.send.sms", "client", value, NULL), 0);
    memcpy(cid_out, cid, CMN_UUID_STR_LEN + 1);
}

static void *run_worker(void *arg)
{
    cmn_worker_run(arg);
    return NULL;
}

/* The final (sent, retry_scheduled or failed) event of communication cid,
 * NULL when none. */
static json_object *final_event(json_object **events, size_t n, const char *cid)
{
    for (size_t i = 0; i < n; i++) {
        const char *status = cmn_json_get_string(events[i], "status");
        if (strcmp(cmn_json_get_string(events[i], "communication_id"), cid) == 0 && strcmp(status, "sending") != 0)
            return events[i];
    }
    return NULL;
}

Test(worker_core, rate_limits_per_sender_and_classifies_http_outcomes, .timeout = 120)
{
    provider_t p;
    cmn_log_t log;
    char errstr[256] = "";
    char cids[9][37];
    provider_start(&p);
    cr_assert_eq(cmn_log_init(&log, "worker-core-test", "warn"), 0);
    th_kafka_t *kafka = th_kafka_start(1);
    cr_assert_not_null(kafka);
    const char *brokers = th_kafka_bootstraps(kafka);

    /* Six for the slow sender, then one of each outcome for another. */
    for (int i = 0; i < 6; i++)
        produce(brokers, i, "slow", "ok", cids[i]);
    produce(brokers, 6, "other", "ok", cids[6]);
    produce(brokers, 7, "other", "throttled", cids[7]);
    produce(brokers, 8, "other", "unsubscribed", cids[8]);

    test_channel_t tc = {.port = p.port};
    cmn_worker_channel_t ch = {
        .name = "sms",
        .channel = CMN_CHANNEL_SMS,
        .provider = "test",
        .impl = &tc,
        .capture_response = 1,
        .prepare = tc_prepare,
        .sender = tc_sender,
        .submit = tc_submit,
        .classify = tc_classify,
        .release = tc_release,
    };
    cmn_worker_config_t wc = {
        .service = "crm-test-worker",
        .brokers = brokers,
        .group_id = "worker-core-test",
        .batch_size = 50,
        .max_in_flight = 8,
        .rate_per_sec = RATE,
        .rate_burst = 1.0,
        .log = &log,
    };
    cmn_worker_t *w = cmn_worker_new(&wc, &ch, errstr, sizeof errstr);
    cr_assert_not_null(w, "%s", errstr);
    pthread_t th;
    cmn_stop_requested = 0;
    cr_assert_eq(pthread_create(&th, NULL, run_worker, w), 0);

    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_all(brokers, "crm.status", 18, 60000, &n);
    cmn_stop_requested = 1;
    pthread_join(th, NULL);
    cmn_worker_destroy(w);
    cr_assert_eq(n, 18, "sending + final for 9 messages, got %zu events", n);

    json_object *events[18];
    for (size_t i = 0; i < n; i++) {
        events[i] = json_tokener_parse(recs[i].value);
        cr_assert_not_null(events[i]);
    }
    /* Sent: the provider's sid, the detail, the channel's details. */
    for (int i = 0; i < 7; i++) {
        json_object *ev = final_event(events, n, cids[i]);
        cr_assert_not_null(ev, "no final event for message %d", i);
        cr_expect_str_eq(cmn_json_get_string(ev, "status"), "sent");
        cr_expect_eq(strncmp(cmn_json_get_string(ev, "provider_message_id"), "SM", 2), 0);
        cr_expect_str_eq(cmn_json_get_string(ev, "reason"), "status: queued");
        json_object *details = json_object_object_get(ev, "details");
        cr_expect_eq(json_object_get_int(json_object_object_get(details, "segments")), 1);
    }
    /* 429 with Retry-After: retryable, so a retry is scheduled no sooner
     * than the hint, with the hint and the plan in details. */
    json_object *ev = final_event(events, n, cids[7]);
    cr_assert_not_null(ev);
    cr_expect_str_eq(cmn_json_get_string(ev, "status"), "retry_scheduled");
    cr_expect_str_eq(cmn_json_get_string(ev, "error_code"), "20429");
    cr_expect_str_eq(cmn_json_get_string(ev, "error_message"), "Too Many Requests");
    json_object *details = json_object_object_get(ev, "details");
    cr_expect_eq(json_object_get_int64(json_object_object_get(details, "retry_after_ms")), 3000);
    cr_expect_eq(json_object_get_int(json_object_object_get(details, "segments")), 1);
    cr_expect_eq(json_object_get_int(json_object_object_get(details, "next_attempt")), 2);
    cr_expect_str_eq(cmn_json_get_string(details, "topic"), "crm.retry.sms.5s");
    int64_t occurred = 0, due = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(cmn_json_get_string(ev, "occurred_at"), &occurred), 0);
    cr_assert_eq(cmn_time_parse_rfc3339(cmn_json_get_string(details, "due_at"), &due), 0);
    /* The wait is at least the hint; due_at is planned just before the
     * event is stamped, so it lies that wait after the event, give or take
     * the time to queue the retry. */
    int64_t delay = json_object_get_int64(json_object_object_get(details, "delay_ms"));
    cr_expect_geq(delay, 3000, "Retry-After: 3 is a floor, got %lld ms", (long long)delay);
    cr_expect(due - occurred <= delay && due - occurred > delay - 1000, "due %lld ms after the event, delay %lld",
              (long long)(due - occurred), (long long)delay);
    cr_expect_null(cmn_json_get_string(ev, "reason"));
    /* The Dispatch waits on the tier with attempt 2 and the tier headers. */
    size_t nretry = 0;
    th_kafka_record_t *retry = th_kafka_read_all(brokers, "crm.retry.sms.5s", 1, 30000, &nretry);
    cr_assert_eq(nretry, 1, "one record on crm.retry.sms.5s, got %zu", nretry);
    json_object *rd = json_tokener_parse(retry[0].value);
    cr_assert_not_null(rd);
    cr_expect_str_eq(cmn_json_get_string(rd, "communication_id"), cids[7]);
    cr_expect_eq(json_object_get_int(json_object_object_get(rd, "attempt")), 2);
    cr_expect_str_eq(retry[0].key, "client");
    json_object *rh = json_tokener_parse(retry[0].headers_json);
    cr_assert_not_null(rh);
    char due_text[32];
    snprintf(due_text, sizeof due_text, "%lld", (long long)due);
    cr_expect_str_eq(cmn_json_get_string(rh, "x-crm-due-at"), due_text);
    cr_expect_str_eq(cmn_json_get_string(rh, "x-crm-target"), "crm.send.sms");
    json_object_put(rh);
    json_object_put(rd);
    th_kafka_records_free(retry, nretry);
    /* 21610: permanent, with its reason token. */
    ev = final_event(events, n, cids[8]);
    cr_assert_not_null(ev);
    cr_expect_str_eq(cmn_json_get_string(ev, "status"), "failed");
    cr_expect_str_eq(cmn_json_get_string(ev, "error_code"), "21610");
    cr_expect_str_eq(cmn_json_get_string(ev, "reason"), "unsubscribed");

    /* One sender's requests are at least 1/RATE apart (a few ms of slack
     * for the clocks); the other sender was not held behind them. */
    int64_t slow[8], other[8];
    int nslow = 0, nother = 0;
    pthread_mutex_lock(&p.mu);
    for (int i = 0; i < p.nhits; i++) {
        if (strcmp(p.hits[i].sender, "slow") == 0 && nslow < 8)
            slow[nslow++] = p.hits[i].at_ms;
        else if (nother < 8)
            other[nother++] = p.hits[i].at_ms;
    }
    pthread_mutex_unlock(&p.mu);
    cr_assert_eq(nslow, 6);
    cr_assert_eq(nother, 3);
    for (int i = 1; i < nslow; i++)
        cr_expect_geq(slow[i] - slow[i - 1], 240, "slow requests %d and %d only %lld ms apart", i - 1, i,
                      (long long)(slow[i] - slow[i - 1]));
    for (int i = 1; i < nother; i++)
        cr_expect_geq(other[i] - other[i - 1], 240);
    /* Head-of-line blocking would start the other sender only after the
     * sixth slow request. (The first record can come alone in a batch of
     * its own, so the two senders need not start together.) */
    cr_expect_lt(other[0], slow[2], "the other sender waited behind the slow one (%lld ms after it)",
                 (long long)(other[0] - slow[0]));
    cr_expect_lt(other[2], slow[5]);
    cr_expect_geq(slow[5] - slow[0], 5 * 240);

    for (size_t i = 0; i < n; i++)
        json_object_put(events[i]);
    th_kafka_records_free(recs, n);
    th_kafka_stop(kafka);
    MHD_stop_daemon(p.daemon);
    pthread_mutex_destroy(&p.mu);
}
