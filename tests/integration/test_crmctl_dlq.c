/* Integration tests of `crmctl dlq list | replay` against librdkafka's mock
 * cluster: dead letters are made by the services' own helper
 * (cmn_kafka_dlq_in_batch) from records consumed off engine topics, listed
 * and filtered by the real binary, replayed to their source topics, and the
 * copies read back byte for byte with their headers. A second replay must
 * add nothing: the replayed marks in group crmctl-dlq-replay remember what
 * went out. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/time.h"
#include "th_kafka.h"
#include "th_proc.h"

#define TP1 "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"

typedef struct fixture {
    th_kafka_t *k;
    char brokers[512];
    cmn_log_t log;
} fixture_t;

/* The four source records: topic, key, value, reason, service. */
static const char *const sources[][5] = {
    {"crm.requests", "t1:c1", "{\"communication_id\":\"cid-1\",\"request_id\":\"r1\"}", "schema: missing channel",
     "crm-router"},
    {"crm.requests", "t1:c2", "not json at all", "invalid JSON: unexpected token", "crm-router"},
    {"crm.requests", "t1:c3", "{\"communication_id\":\"cid-3\",\"request_id\":\"r3\"}", "Schema: bad locale",
     "crm-router"},
    {"crm.send.sms", "t1:c4", "{\"communication_id\":\"cid-4\"}", "provider 500, retries exhausted",
     "crm-sms-worker"},
};
#define NSOURCES 4

static int crmctl(const fixture_t *f, char *out, size_t outlen, const char *a1, const char *a2, const char *a3,
                  const char *a4, const char *a5, const char *a6)
{
    char bin[512], env_brokers[600];
    th_bin("crmctl", bin, sizeof(bin));
    snprintf(env_brokers, sizeof(env_brokers), "KAFKA_BROKERS=%s", f->brokers);
    char *env[] = {env_brokers, "LOG_LEVEL=warn", NULL};
    char *argv[] = {bin, "dlq", (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, (char *)a6, NULL};
    return th_run(argv, env, out, outlen, 120000);
}

static size_t count_lines_starting(const char *out, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (const char *p = out; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, plen) == 0)
            n++;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return n;
}

/* Makes the dead letters: the source records are produced with a
 * traceparent and a header of their own, consumed back, and each handed to
 * cmn_kafka_dlq_in_batch as a service would. A fifth dead letter names a
 * source topic that is not the engine's. */
static void fixture_start(fixture_t *f)
{
    cmn_log_init(&f->log, "test-crmctl-dlq", "warn");
    f->k = th_kafka_start(1);
    cr_assert_not_null(f->k);
    snprintf(f->brokers, sizeof(f->brokers), "%s", th_kafka_bootstraps(f->k));
    for (int i = 0; i < NSOURCES; i++) {
        const char *const hdrs[] = {"traceparent", TP1, "x-crm-test", sources[i][1], NULL};
        cr_assert_eq(th_kafka_produce(f->brokers, sources[i][0], sources[i][1], sources[i][2], hdrs), 0);
    }
    char err[512] = "";
    cmn_kafka_config_t pc = {.brokers = f->brokers, .client_id = "test-dlq-maker", .log = &f->log};
    cmn_kafka_producer_t *p = cmn_kafka_producer_new(&pc, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    cmn_kafka_config_t cc = {.brokers = f->brokers, .client_id = "test-dlq-src", .group_id = "test-dlq-src",
                             .log = &f->log};
    const char *const topics[] = {"crm.requests", "crm.send.sms", NULL};
    cmn_kafka_consumer_opts_t co = {.topics = topics};
    cmn_kafka_consumer_t *c = cmn_kafka_consumer_new(&cc, &co, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    int seen = 0;
    int64_t deadline = cmn_monotonic_ms() + 30000;
    while (seen < NSOURCES && cmn_monotonic_ms() < deadline) {
        cmn_kafka_message_t *msgs = NULL;
        int n = cmn_kafka_consumer_poll_batch(c, 10, 500, &msgs);
        cr_assert_geq(n, 0);
        if (n == 0)
            continue;
        cmn_kafka_batch_t b;
        cmn_kafka_batch_init(&b);
        for (int i = 0; i < n; i++) {
            int which = -1;
            for (int j = 0; j < NSOURCES; j++) {
                if (strcmp(msgs[i].key, sources[j][1]) == 0)
                    which = j;
            }
            cr_assert_geq(which, 0);
            cr_assert_eq(cmn_kafka_dlq_in_batch(p, &b, &msgs[i], sources[which][4], sources[which][3]), 0);
            seen++;
        }
        cr_assert_eq(cmn_kafka_batch_wait(&b, 20000, err, sizeof(err)), 0, "%s", err);
        cmn_kafka_batch_destroy(&b);
        cr_assert_eq(cmn_kafka_consumer_commit_batch(c), 0);
    }
    cr_assert_eq(seen, NSOURCES);
    cmn_kafka_consumer_destroy(c);
    cmn_kafka_producer_destroy(p);
    const char *const foreign[] = {CMN_HDR_DLQ_REASON, "came from elsewhere", CMN_HDR_DLQ_SOURCE_TOPIC,
                                   "billing.events", CMN_HDR_DLQ_SERVICE, "someone-else", NULL};
    cr_assert_eq(th_kafka_produce(f->brokers, CMN_TOPIC_DLQ, "t1:c5", "{}", foreign), 0);
}

static void fixture_stop(fixture_t *f)
{
    th_kafka_stop(f->k);
}

/* Parses `dlq list --json` output into an array of objects (the caller
 * puts it). */
static json_object *list_json(const char *out)
{
    json_object *arr = json_object_new_array();
    for (const char *p = out; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (len > 0 && p[0] == '{') {
            json_tokener *tok = json_tokener_new();
            json_object *o = json_tokener_parse_ex(tok, p, (int)len);
            json_tokener_free(tok);
            cr_assert_not_null(o, "not JSON: %.*s", (int)len, p);
            json_object_array_add(arr, o);
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return arr;
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || v == NULL)
        return NULL;
    return json_object_get_string(v);
}

static int jbool(json_object *o, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* The records of topic (all of them: crmctl reports a replay only once its
 * copies are acknowledged, so the log is complete when it has exited) and
 * how many carry x-crm-replayed-from. */
static size_t replayed_copies(const fixture_t *f, const char *topic, th_kafka_record_t **out, size_t *total)
{
    size_t n = 0, copies = 0;
    th_kafka_record_t *r = th_kafka_read_to_end(f->brokers, topic, 15000, &n);
    cr_assert_not_null(r, "cannot read %s", topic);
    for (size_t i = 0; i < n; i++)
        copies += strstr(r[i].headers_json, "\"" CMN_HDR_REPLAYED_FROM "\"") != NULL;
    *out = r;
    *total = n;
    return copies;
}

Test(crmctl_dlq, list_shows_every_dead_letter_and_filters_them, .timeout = 300)
{
    fixture_t f;
    fixture_start(&f);
    static char out[1 << 16];

    int rc = crmctl(&f, out, sizeof(out), "list", "--json", NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    json_object *all = list_json(out);
    cr_assert_eq(json_object_array_length(all), 5, "%s", out);
    int found_cid1 = 0, found_foreign = 0;
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *e = json_object_array_get_idx(all, i);
        const char *key = jstr(e, "key");
        cr_assert_not_null(key);
        cr_assert_eq(jbool(e, "replayed"), 0, "nothing is replayed yet");
        cr_assert_null(jstr(e, "value"), "the value is personal data: only with --show-value");
        if (strcmp(key, "t1:c1") == 0) {
            found_cid1 = 1;
            cr_assert_str_eq(jstr(e, "communication_id"), "cid-1");
            cr_assert_str_eq(jstr(e, "source_topic"), "crm.requests");
            cr_assert_str_eq(jstr(e, "service"), "crm-router");
            cr_assert_str_eq(jstr(e, "reason"), "schema: missing channel");
        }
        if (strcmp(key, "t1:c2") == 0)
            cr_assert_null(jstr(e, "communication_id"), "a value that is not JSON has none");
        found_foreign += strcmp(key, "t1:c5") == 0 && strcmp(jstr(e, "source_topic"), "billing.events") == 0;
    }
    cr_assert(found_cid1 && found_foreign);
    json_object_put(all);
    cr_assert_null(strstr(out, "not json at all"));

    /* The text form: one line per dead letter, the value only on request. */
    rc = crmctl(&f, out, sizeof(out), "list", NULL, NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_eq(count_lines_starting(out, "20"), 5, "%s", out);
    cr_assert_not_null(strstr(out, "from crm.send.sms/"), "%s", out);
    cr_assert_not_null(strstr(out, "communication_id=cid-4"), "%s", out);
    cr_assert_null(strstr(out, "not json at all"));
    rc = crmctl(&f, out, sizeof(out), "list", "--show-value", "--reason", "INVALID json", NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_eq(count_lines_starting(out, "20"), 1, "%s", out);
    cr_assert_not_null(strstr(out, "value=\"not json at all\""), "%s", out);

    /* Filters: reason (case-insensitive substring), source topic, limit, since. */
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--reason", "schema", NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_eq(count_lines_starting(out, "{"), 2, "%s", out);
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--source-topic", "crm.send.sms", NULL, NULL);
    cr_assert_eq(count_lines_starting(out, "{"), 1, "%s", out);
    cr_assert_not_null(strstr(out, "\"key\":\"t1:c4\""), "%s", out);
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--limit", "2", NULL, NULL);
    cr_assert_eq(count_lines_starting(out, "{"), 2, "%s", out);
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--since", "1h", NULL, NULL);
    cr_assert_eq(count_lines_starting(out, "{"), 5, "%s", out);
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--since", "2099-01-01T00:00:00Z", NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_eq(count_lines_starting(out, "{"), 0, "nothing is that recent: %s", out);

    rc = crmctl(&f, out, sizeof(out), "list", "--since", "yesterday", NULL, NULL, NULL);
    cr_assert_eq(rc, 2, "a bad flag is a usage error: %s", out);
    cr_assert_not_null(strstr(out, "--since"), "%s", out);
    fixture_stop(&f);
}

Test(crmctl_dlq, replay_restores_records_once, .timeout = 300)
{
    fixture_t f;
    fixture_start(&f);
    static char out[1 << 16];
    th_kafka_record_t *r = NULL;
    size_t n = 0;

    /* A dry run names what would go and produces nothing. */
    int rc = crmctl(&f, out, sizeof(out), "replay", "--dry-run", NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, 1, "a dead letter from a foreign topic is refused, which exits 1: %s", out);
    cr_assert_eq(count_lines_starting(out, "would replay"), 4, "%s", out);
    cr_assert_eq(count_lines_starting(out, "refused"), 1, "%s", out);
    cr_assert_not_null(strstr(out, "billing.events"), "%s", out);

    /* Replay the two schema failures. */
    rc = crmctl(&f, out, sizeof(out), "replay", "--reason", "schema", NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "2 replayed, 0 already replayed"), "%s", out);
    size_t copies = replayed_copies(&f, "crm.requests", &r, &n);
    cr_assert_eq(n, 5, "3 originals and 2 replayed copies, got %zu", n);
    cr_assert_eq(copies, 2);

    /* Each copy is its original, byte for byte, with the original headers
     * and none of the dead-letter ones. */
    rc = crmctl(&f, out, sizeof(out), "list", "--json", "--reason", "schema", NULL, NULL);
    json_object *listed = list_json(out);
    cr_assert_eq(json_object_array_length(listed), 2, "%s", out);
    for (size_t i = 0; i < n; i++) {
        if (strstr(r[i].headers_json, CMN_HDR_REPLAYED_FROM) == NULL)
            continue;
        int src = -1;
        for (int j = 0; j < NSOURCES; j++) {
            if (strcmp(r[i].key, sources[j][1]) == 0)
                src = j;
        }
        cr_assert(src == 0 || src == 2, "only the schema failures: %s", r[i].key);
        cr_assert_str_eq(r[i].value, sources[src][2]);
        json_object *h = json_tokener_parse(r[i].headers_json);
        cr_assert_not_null(h);
        cr_assert_str_eq(jstr(h, "traceparent"), TP1, "%s", r[i].headers_json);
        cr_assert_str_eq(jstr(h, "x-crm-test"), sources[src][1], "%s", r[i].headers_json);
        cr_assert_null(strstr(r[i].headers_json, "x-crm-dlq-"), "%s", r[i].headers_json);
        /* x-crm-replayed-from names the dead letter it came from. */
        int matched = 0;
        for (size_t k = 0; k < json_object_array_length(listed); k++) {
            json_object *e = json_object_array_get_idx(listed, k);
            char from[64];
            json_object *pv = NULL, *ov = NULL;
            json_object_object_get_ex(e, "partition", &pv);
            json_object_object_get_ex(e, "offset", &ov);
            snprintf(from, sizeof(from), "%d:%lld", json_object_get_int(pv), (long long)json_object_get_int64(ov));
            if (strcmp(jstr(e, "key"), r[i].key) == 0) {
                cr_assert_str_eq(jstr(h, CMN_HDR_REPLAYED_FROM), from);
                cr_assert(jbool(e, "replayed"), "list marks it replayed");
                matched = 1;
            }
        }
        cr_assert(matched);
        json_object_put(h);
    }
    json_object_put(listed);
    th_kafka_records_free(r, n);

    /* The same replay again adds nothing. */
    rc = crmctl(&f, out, sizeof(out), "replay", "--reason", "schema", NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "0 replayed, 2 already replayed"), "%s", out);
    copies = replayed_copies(&f, "crm.requests", &r, &n);
    cr_assert_eq(n, 5, "no new record on crm.requests, got %zu", n);
    th_kafka_records_free(r, n);

    /* An unfiltered replay takes the rest: the invalid JSON back to
     * crm.requests and the SMS dispatch back to crm.send.sms; the foreign
     * one stays refused. */
    rc = crmctl(&f, out, sizeof(out), "replay", NULL, NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "2 replayed, 2 already replayed (skipped; --all replays them), 1 refused"), "%s",
                      out);
    copies = replayed_copies(&f, "crm.requests", &r, &n);
    cr_assert_eq(n, 6);
    cr_assert_eq(copies, 3);
    th_kafka_records_free(r, n);
    copies = replayed_copies(&f, "crm.send.sms", &r, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(copies, 1);
    th_kafka_records_free(r, n);

    /* Everything is marked now; --all replays on purpose. */
    rc = crmctl(&f, out, sizeof(out), "replay", "--source-topic", "crm.requests", NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "0 replayed, 3 already replayed"), "%s", out);
    rc = crmctl(&f, out, sizeof(out), "replay", "--all", "--reason", "invalid json", NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "1 replayed, 0 already replayed"), "%s", out);
    copies = replayed_copies(&f, "crm.requests", &r, &n);
    cr_assert_eq(n, 7);
    cr_assert_eq(copies, 4);
    th_kafka_records_free(r, n);
    fixture_stop(&f);
}
