/* Integration tests of the fault-injection channel of `crmctl embedded-kafka
 * --control-port`: the real binary runs the mock cluster; the test injects
 * produce and fetch errors and takes a broker down and up through the HTTP
 * control API, while the project's own producer and consumer (common/kafka.c)
 * move records through it. Every record must arrive exactly once and as
 * produced (the idempotent producer retries through the faults), and the
 * control channel's status must show the faults. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/time.h"
#include "th_proc.h"

typedef struct fixture {
    th_proc_t proc;
    char dir[256];
    char bootstrap_file[320];
    char control_file[320];
    char brokers[512];
    char control[128];
    cmn_log_t log;
} fixture_t;

static int read_line_file(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0' ? 0 : -1;
}

static void fixture_start(fixture_t *f, int nbrokers)
{
    memset(f, 0, sizeof(*f));
    cmn_log_init(&f->log, "test-embedded-faults", "warn");
    snprintf(f->dir, sizeof(f->dir), "%s/test-logs/faults-XXXXXX", CRM_BINARY_DIR);
    char logs[300];
    snprintf(logs, sizeof(logs), "%s/test-logs", CRM_BINARY_DIR);
    mkdir(logs, 0755);
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->bootstrap_file, sizeof(f->bootstrap_file), "%s/kafka.bootstrap", f->dir);
    snprintf(f->control_file, sizeof(f->control_file), "%s/kafka.control", f->dir);
    char bin[512], nb[16];
    th_bin("crmctl", bin, sizeof(bin));
    snprintf(nb, sizeof(nb), "%d", nbrokers);
    char *argv[] = {bin, "embedded-kafka", "--brokers", nb, "--bootstrap-file", f->bootstrap_file,
                    "--control-port", "0", "--control-file", f->control_file, NULL};
    char *env[] = {"LOG_LEVEL=info", NULL};
    cr_assert_eq(th_proc_start(&f->proc, "embedded-kafka", argv, env), 0);
    int64_t deadline = cmn_monotonic_ms() + 60000;
    while (read_line_file(f->bootstrap_file, f->brokers, sizeof(f->brokers)) != 0) {
        cr_assert(th_proc_alive(&f->proc), "embedded-kafka exited; see %s", f->proc.log_path);
        cr_assert_lt(cmn_monotonic_ms(), deadline, "no bootstrap file; see %s", f->proc.log_path);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(read_line_file(f->control_file, f->control, sizeof(f->control)), 0,
                 "the control file exists once the bootstrap file does");
    cr_assert_eq(strncmp(f->control, "http://127.0.0.1:", 17), 0, "%s", f->control);
}

static void fixture_stop(fixture_t *f)
{
    int st = th_proc_stop(&f->proc, SIGTERM, 20000);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean exit on SIGTERM (status %d)", st);
    cr_expect_neq(access(f->bootstrap_file, F_OK), 0, "the bootstrap file is removed");
    cr_expect_neq(access(f->control_file, F_OK), 0, "the control file is removed");
    rmdir(f->dir);
}

/* Sends one control request; returns the parsed JSON answer (caller puts). */
static json_object *control(const fixture_t *f, const char *method, const char *path, long want_status)
{
    char url[512];
    static char body[16384];
    long status = 0;
    snprintf(url, sizeof(url), "%s%s", f->control, path);
    cr_assert_eq(th_http(method, url, NULL, NULL, &status, body, sizeof(body)), 0, "%s %s", method, url);
    cr_assert_eq(status, want_status, "%s %s -> %ld: %s", method, path, status, body);
    json_object *o = json_tokener_parse(body);
    cr_assert_not_null(o, "%s", body);
    return o;
}

static json_object *jget(json_object *o, const char *path)
{
    /* "a.b.c" into nested objects. */
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_object *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok != NULL; tok = strtok_r(NULL, ".", &save)) {
        json_object *next = NULL;
        cr_assert(json_object_object_get_ex(cur, tok, &next), "no %s in %s", path, json_object_to_json_string(o));
        cur = next;
    }
    return cur;
}

static json_object *broker(json_object *status, int id)
{
    json_object *arr = jget(status, "brokers");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *b = json_object_array_get_idx(arr, i);
        if (json_object_get_int(jget(b, "id")) == id)
            return b;
    }
    cr_assert_fail("no broker %d", id);
    return NULL;
}

static cmn_kafka_producer_t *producer(const fixture_t *f)
{
    char err[512] = "";
    /* Enough retry time to ride out the broker kept down below. */
    const char *const extra[] = {"message.timeout.ms=60000", NULL};
    cmn_kafka_config_t pc = {.brokers = f->brokers, .client_id = "test-faults", .extra = extra, .log = &f->log};
    cmn_kafka_producer_t *p = cmn_kafka_producer_new(&pc, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    return p;
}

/* Produces keys prefix-from..prefix-(to-1) with values "v-<n>" and waits. */
static void produce_range(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "client-%d", i);
        snprintf(val, sizeof(val), "v-%d", i);
        cr_assert_eq(cmn_kafka_produce_in_batch(p, b, CMN_TOPIC_REQUESTS, key, strlen(key), val, strlen(val), NULL, 0),
                     0);
    }
}

static void wait_batch(cmn_kafka_batch_t *b)
{
    char err[256] = "";
    cr_assert_eq(cmn_kafka_batch_wait(b, 90000, err, sizeof(err)), 0, "every record acknowledged: %s", err);
    cmn_kafka_batch_destroy(b);
}

/* Consumes crm.requests until want records arrived (or 60 s), checking each
 * value belongs to its key and counting how often each was seen. */
static void consume_all(const fixture_t *f, int want, int *seen)
{
    char err[512] = "";
    cmn_kafka_config_t cc = {.brokers = f->brokers, .client_id = "test-faults-c", .group_id = "test-faults",
                             .log = &f->log};
    const char *const topics[] = {CMN_TOPIC_REQUESTS, NULL};
    cmn_kafka_consumer_opts_t co = {.topics = topics};
    cmn_kafka_consumer_t *c = cmn_kafka_consumer_new(&cc, &co, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    int got = 0;
    int64_t deadline = cmn_monotonic_ms() + 60000;
    /* Past want, keep polling briefly: a duplicate would show up there. */
    int64_t settle = 0;
    while (cmn_monotonic_ms() < deadline && (settle == 0 || cmn_monotonic_ms() < settle)) {
        cmn_kafka_message_t *msgs = NULL;
        int n = cmn_kafka_consumer_poll_batch(c, 100, 500, &msgs);
        cr_assert_geq(n, 0);
        for (int i = 0; i < n; i++) {
            int k = -1, v = -2;
            cr_assert_eq(sscanf(msgs[i].key, "client-%d", &k), 1, "%s", msgs[i].key);
            cr_assert_eq(sscanf(msgs[i].value, "v-%d", &v), 1, "%s", msgs[i].value);
            cr_assert_eq(k, v, "key %s carries value %s", msgs[i].key, msgs[i].value);
            cr_assert(k >= 0 && k < want, "%d", k);
            seen[k]++;
            got++;
        }
        if (n > 0)
            cr_assert_eq(cmn_kafka_consumer_commit_batch(c), 0);
        if (got >= want && settle == 0)
            settle = cmn_monotonic_ms() + 2000;
    }
    cmn_kafka_consumer_destroy(c);
    cr_assert_eq(got, want, "got %d records, want %d", got, want);
}

Test(embedded_faults, records_survive_request_errors_and_a_broker_down, .timeout = 400)
{
    fixture_t f;
    fixture_start(&f, 3);

    json_object *st = control(&f, "GET", "/status", 200);
    cr_assert_str_eq(json_object_get_string(jget(st, "bootstrap_servers")), f.brokers);
    cr_assert_eq(json_object_array_length(jget(st, "brokers")), 3);
    cr_assert(json_object_get_boolean(jget(broker(st, 2), "up")));
    cr_assert_eq(json_object_get_int(jget(st, "injected.produce.requests")), 0);
    json_object_put(st);

    /* Produce errors: the next 5 produce requests fail with a retriable
     * error the idempotent producer retries. */
    st = control(&f, "POST", "/faults/produce?count=5&error=NOT_LEADER_FOR_PARTITION", 200);
    cr_assert_eq(json_object_get_int(jget(st, "injected.produce.requests")), 5);
    cr_assert_str_eq(json_object_get_string(jget(st, "injected.produce.last_error")), "NOT_LEADER_FOR_PARTITION");
    json_object_put(st);
    cmn_kafka_producer_t *p = producer(&f);
    cmn_kafka_batch_t b;
    cmn_kafka_batch_init(&b);
    produce_range(p, &b, 0, 60);
    wait_batch(&b);

    /* A broker down while records are in flight, up again three seconds later. */
    st = control(&f, "POST", "/brokers/2/down", 200);
    cr_assert_eq(json_object_get_boolean(jget(broker(st, 2), "up")), 0);
    cr_assert_eq(json_object_get_int(jget(st, "broker_down_events")), 1);
    json_object_put(st);
    cmn_kafka_batch_init(&b);
    produce_range(p, &b, 60, 120);
    struct timespec down = {3, 0};
    nanosleep(&down, NULL);
    st = control(&f, "POST", "/brokers/2/up", 200);
    cr_assert(json_object_get_boolean(jget(broker(st, 2), "up")));
    json_object_put(st);
    wait_batch(&b);

    /* Per-broker errors are read back from the mock: pending until the
     * broker's requests use them up. Broker 1 leads some of the 12
     * partitions, so 120 more keys reach it. */
    st = control(&f, "POST", "/faults/produce?count=2&error=REQUEST_TIMED_OUT&broker=1", 200);
    cr_assert_eq(json_object_get_int(jget(broker(st, 1), "pending_errors.produce")), 2);
    cr_assert_eq(json_object_get_int(jget(st, "injected.produce.requests")), 7);
    json_object_put(st);
    cmn_kafka_batch_init(&b);
    produce_range(p, &b, 120, 240);
    wait_batch(&b);
    st = control(&f, "GET", "/status", 200);
    cr_assert_eq(json_object_get_int(jget(broker(st, 1), "pending_errors.produce")), 0,
                 "broker 1 answered two produce requests with the injected error");
    json_object_put(st);
    cmn_kafka_producer_destroy(p);

    /* Fetch errors on the way out. */
    st = control(&f, "POST", "/faults/fetch?count=3&error=REQUEST_TIMED_OUT", 200);
    cr_assert_eq(json_object_get_int(jget(st, "injected.fetch.requests")), 3);
    json_object_put(st);
    int seen[240] = {0};
    consume_all(&f, 240, seen);
    for (int i = 0; i < 240; i++)
        cr_assert_eq(seen[i], 1, "client-%d seen %d times", i, seen[i]);
    fixture_stop(&f);
}

Test(embedded_faults, control_requests_are_validated, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f, 2);
    json_object *e = control(&f, "POST", "/brokers/3/down", 400);
    cr_assert_str_eq(json_object_get_string(jget(json_object_array_get_idx(jget(e, "errors"), 0), "field")),
                     "broker");
    json_object_put(e);
    e = control(&f, "POST", "/faults/produce?error=NO_SUCH_ERROR", 400);
    cr_assert_str_eq(json_object_get_string(jget(json_object_array_get_idx(jget(e, "errors"), 0), "field")),
                     "error");
    json_object_put(e);
    e = control(&f, "POST", "/brokers/1/rtt", 400);
    cr_assert_str_eq(json_object_get_string(jget(json_object_array_get_idx(jget(e, "errors"), 0), "field")), "ms");
    json_object_put(e);
    json_object_put(control(&f, "GET", "/faults/produce", 405));
    json_object_put(control(&f, "POST", "/nothing", 404));

    /* rtt and clear show in the status. */
    json_object *st = control(&f, "POST", "/brokers/1/rtt?ms=250", 200);
    cr_assert_eq(json_object_get_int(jget(broker(st, 1), "rtt_ms")), 250);
    json_object_put(st);
    json_object_put(control(&f, "POST", "/brokers/2/down", 200));
    st = control(&f, "POST", "/faults/clear", 200);
    cr_assert_eq(json_object_get_int(jget(broker(st, 1), "rtt_ms")), 0);
    cr_assert(json_object_get_boolean(jget(broker(st, 2), "up")));
    json_object_put(st);
    fixture_stop(&f);
}
