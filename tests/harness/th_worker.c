/* th_worker.c - what the channel-worker integration suites share. */
#include "th_worker.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/json.h"
#include "crm/time.h"

void th_worker_init(th_worker_t *w, const char *name, const char *tenant, const char *topic,
                    const char *traceparent)
{
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->tenant = tenant;
    w->topic = topic;
    w->traceparent = traceparent;
    w->kafka = th_kafka_start(1);
    cr_assert_not_null(w->kafka, "mock cluster did not start");
    w->brokers = th_kafka_bootstraps(w->kafka);
}

int th_worker_env_overridden(const char *const *extra, const char *setting)
{
    size_t len = strcspn(setting, "=") + 1;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (strncmp(extra[i], setting, len) == 0)
            return 1;
    }
    return 0;
}

enum { TH_WORKER_MAX_ENV = 64 };

static size_t add_defaults(char **env, size_t n, const char *const *list, const char *const *extra)
{
    for (size_t i = 0; list != NULL && list[i] != NULL && n < TH_WORKER_MAX_ENV - 1; i++) {
        if (!th_worker_env_overridden(extra, list[i]))
            env[n++] = (char *)list[i];
    }
    return n;
}

void th_worker_start(th_worker_t *w, const char *binary, const char *const *defaults, const char *const *extra)
{
    char bin[512], brokers[600], port[32];
    char *env[TH_WORKER_MAX_ENV];
    size_t n = 0;
    cr_assert_not_null(th_bin(binary, bin, sizeof bin), "%s is not built", binary);
    w->port = th_free_port();
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", w->brokers);
    snprintf(port, sizeof port, "HTTP_PORT=%d", w->port);
    const char *const common[] = {brokers, port, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=debug", NULL};
    const char *const session[] = {"KAFKA_SESSION_TIMEOUT_MS=6000", NULL};
    n = add_defaults(env, n, common, extra);
    n = add_defaults(env, n, defaults, extra);
    n = add_defaults(env, n, session, extra);
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < TH_WORKER_MAX_ENV - 1; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    char *const argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&w->proc, binary, argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&w->proc, w->port, 60000), 0, "worker not ready; see %s", w->proc.log_path);
    w->running = 1;
}

int th_worker_stop(th_worker_t *w)
{
    if (!w->running)
        return 0;
    int status = th_proc_stop(&w->proc, SIGTERM, 60000);
    w->running = 0;
    return status;
}

void th_worker_comm_id(const char *tenant, const char *request_id, char out[CMN_UUID_STR_LEN + 1])
{
    cr_assert_eq(cmn_uuid_communication_id(tenant, request_id, out), 0);
}

/* ------------------------------------------------------------ dispatches */

char *th_worker_dispatch_json(const th_dispatch_t *s)
{
    char cid[CMN_UUID_STR_LEN + 1], now[40];
    th_worker_comm_id(s->tenant, s->request_id, cid);
    cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
    json_object *o = json_object_new_object();
    json_object *rec = json_object_new_object();
    json_object_object_add(o, "v", json_object_new_int(1));
    json_object_object_add(o, "communication_id", json_object_new_string(cid));
    json_object_object_add(o, "request_id", json_object_new_string(s->request_id));
    json_object_object_add(o, "tenant_id", json_object_new_string(s->tenant));
    json_object_object_add(o, "client_id", json_object_new_string("client-1"));
    json_object_object_add(o, "message_type", json_object_new_string(s->message_type));
    json_object_object_add(o, "urgency", json_object_new_string("normal"));
    json_object_object_add(o, "channel", json_object_new_string(s->channel));
    json_object_object_add(o, "attempt", json_object_new_int(s->attempt > 0 ? s->attempt : 1));
    json_object_object_add(o, "hop", json_object_new_int(s->hop));
    json_object_object_add(o, "to", json_object_new_string(s->to));
    if (s->name != NULL)
        json_object_object_add(rec, "name", json_object_new_string(s->name));
    const char *rkey = s->recipient_key != NULL ? s->recipient_key : s->to[0] == '+' ? "phone" : "email";
    json_object_object_add(rec, rkey, json_object_new_string(s->to));
    if (s->also_email != NULL)
        json_object_object_add(rec, "email", json_object_new_string(s->also_email));
    if (s->locale != NULL) {
        json_object_object_add(rec, "locale", json_object_new_string(s->locale));
        json_object_object_add(o, "locale", json_object_new_string(s->locale));
    }
    json_object_object_add(o, "recipient", rec);
    if (s->context != NULL) {
        json_object *ctx = json_tokener_parse(s->context);
        cr_assert_not_null(ctx, "bad test context %s", s->context);
        json_object_object_add(o, "context", ctx);
    }
    if (s->attachments != NULL)
        json_object_object_add(o, "attachments", json_tokener_parse(s->attachments));
    json_object *plan = s->fallback != NULL ? json_tokener_parse(s->fallback) : json_object_new_array();
    cr_assert_not_null(plan, "bad test fallback plan %s", s->fallback);
    json_object_object_add(o, "fallback", plan);
    if (s->deadline_ms > 0) {
        char deadline[40];
        cmn_time_format_rfc3339(s->deadline_ms, deadline, sizeof deadline);
        json_object_object_add(o, "deadline", json_object_new_string(deadline));
    }
    json_object_object_add(o, "created_at", json_object_new_string(now));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

void th_worker_produce(const th_worker_t *w, const char *key, const char *value)
{
    const char *headers[] = {"traceparent", w->traceparent, NULL};
    cr_assert_eq(th_kafka_produce(w->brokers, w->topic, key, value, headers), 0, "produce failed");
}

void th_worker_produce_dispatch(const th_worker_t *w, const th_dispatch_t *d)
{
    char *v = th_worker_dispatch_json(d);
    th_worker_produce(w, "client-1", v);
    free(v);
}

/* ------------------------------------------------------------- statuses */

void th_worker_read_statuses(const th_worker_t *w, size_t expect, th_statuses_t *st)
{
    st->tenant = w->tenant;
    st->recs = th_kafka_read_all(w->brokers, "crm.status", expect, 60000, &st->n);
    cr_assert_not_null(st->recs);
    st->objs = calloc(st->n + 1, sizeof *st->objs);
    for (size_t i = 0; i < st->n; i++) {
        char err[256];
        st->objs[i] = cmn_json_parse(st->recs[i].value, strlen(st->recs[i].value), err, sizeof err);
        cr_assert_not_null(st->objs[i], "status %zu is not JSON: %s", i, err);
    }
}

void th_statuses_free(th_statuses_t *st)
{
    for (size_t i = 0; i < st->n; i++)
        json_object_put(st->objs[i]);
    free(st->objs);
    th_kafka_records_free(st->recs, st->n);
}

int th_status_count(const th_statuses_t *st, const char *request_id, const char *status)
{
    char cid[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(st->tenant, request_id, cid);
    int count = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (strcmp(cmn_json_get_string(st->objs[i], "communication_id"), cid) == 0 &&
            (status == NULL || strcmp(cmn_json_get_string(st->objs[i], "status"), status) == 0))
            count++;
    }
    return count;
}

json_object *th_status_of(const th_statuses_t *st, const char *request_id, const char *status)
{
    char cid[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(st->tenant, request_id, cid);
    json_object *found = NULL;
    int count = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (strcmp(cmn_json_get_string(st->objs[i], "communication_id"), cid) == 0 &&
            strcmp(cmn_json_get_string(st->objs[i], "status"), status) == 0) {
            found = st->objs[i];
            count++;
        }
    }
    cr_assert_eq(count, 1, "%s: %d '%s' events", request_id, count, status);
    return found;
}

void th_statuses_expect_traced(const th_worker_t *w, const th_statuses_t *st)
{
    /* traceparent: 00-<32 hex trace id>-<16 hex span id>-<flags> */
    char trace_id[33];
    snprintf(trace_id, sizeof trace_id, "%.32s", w->traceparent + 3);
    for (size_t i = 0; i < st->n; i++)
        cr_expect_not_null(strstr(st->recs[i].headers_json, trace_id), "trace lost: %s", st->recs[i].headers_json);
}

/* ------------------------------------------------------------------ DLQ */

static const char *th_str(json_object *o, const char *key)
{
    const char *s = cmn_json_get_string(o, key);
    return s != NULL ? s : "";
}

void th_worker_check_dlq(const th_worker_t *w, const th_kafka_record_t *dlq, size_t n, const char *service,
                         const char *key, const char *const *reasons, int *seen)
{
    for (size_t k = 0; reasons[k] != NULL; k++)
        seen[k] = 0;
    for (size_t i = 0; i < n; i++) {
        char err[256];
        json_object *h = cmn_json_parse(dlq[i].headers_json, strlen(dlq[i].headers_json), err, sizeof err);
        cr_assert_not_null(h);
        const char *reason = th_str(h, "x-crm-dlq-reason");
        cr_expect_str_eq(th_str(h, "x-crm-dlq-service"), service);
        cr_expect_str_eq(th_str(h, "x-crm-dlq-source-topic"), w->topic);
        if (key != NULL)
            cr_expect_str_eq(dlq[i].key, key, "the DLQ keeps the original key");
        for (size_t k = 0; reasons[k] != NULL; k++)
            seen[k] += strstr(reason, reasons[k]) != NULL;
        json_object_put(h);
    }
}

/* ----------------------------------------------------- metrics and logs */

long th_worker_metrics(const th_worker_t *w, char *body, size_t len)
{
    char url[64];
    long code = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", w->port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &code, body, len), 0);
    return code;
}

const char *th_worker_log(const th_worker_t *w)
{
    static char buf[1 << 21];
    FILE *f = fopen(w->proc.log_path, "r");
    cr_assert_not_null(f, "cannot read %s", w->proc.log_path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

void th_worker_expect_clean_log(const th_worker_t *w, const char *const *forbidden)
{
    const char *log = th_worker_log(w);
    for (size_t i = 0; forbidden[i] != NULL; i++)
        cr_expect_null(strstr(log, forbidden[i]), "the log holds \"%s\" (%s)", forbidden[i], w->proc.log_path);
}
