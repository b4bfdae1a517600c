/* crmctl_kafka.c - the embedded Kafka, its fault-injection channel and topic
 * administration.
 *
 * `crmctl embedded-kafka [--brokers N] [--bootstrap-file PATH]
 * [--control-port N] [--control-file PATH]` runs librdkafka's mock cluster:
 * a real Kafka protocol server on 127.0.0.1 that keeps everything in memory.
 * It is the default Kafka of `crmctl dev up`. Three brokers are the default
 * so that partition leadership, the group coordinator and the services'
 * connections are spread as on a real cluster; the mock serves all brokers
 * from one thread, so the extra brokers cost next to nothing. What the mock
 * cluster does not do:
 *   - keep data across restarts (memory only: a restart loses every record
 *     and every committed offset);
 *   - retain more than about 5 MB or 100,000 record batches per partition
 *     (older batches are silently dropped; a consumer that far behind resets
 *     to the new start of the log);
 *   - honour topic configs: it has no CreateTopics, DescribeConfigs or
 *     AlterConfigs API, so crm.preferences is not compacted, crm.dlq keeps
 *     what fits in memory, and the delay tiers see CreateTime (the
 *     producer's clock) instead of LogAppendTime. The topics are created
 *     here, directly on the mock.
 *
 * With --control-port the process also serves the fault-injection API of
 * crmctl_kafka.h on 127.0.0.1 (the chaos tests drive it).
 *
 * `crmctl topics create [--replication N] [--partitions N] [--fix]` and
 * `crmctl topics list` manage the engine's topics on the cluster named by
 * KAFKA_BROKERS. */
#include "crmctl_kafka.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/http.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "crmctl.h"

#define EMBEDDED_DEFAULT_BROKERS 3
#define EMBEDDED_MAX_BROKERS 9
/* How often the idle main loop looks at the stop flag. */
#define EMBEDDED_TICK_MS 200

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void kafka_cli_log_init(cmn_log_t *log, const char *service)
{
    const char *level = getenv("LOG_LEVEL");
    if (cmn_log_init(log, service, level != NULL ? level : "info") != 0)
        cmn_log_warn(log, NULL, "LOG_LEVEL '%s' is not debug, info, warn or error; using info", level);
}

/* The mock cluster logs through the handle it lives in; route those lines
 * into our JSON log so `crmctl dev` log files stay one format. */
static void embedded_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const cmn_log_t *log = rd_kafka_opaque(rk);
    cmn_log_level_t l = level <= 2 ? CMN_LOG_ERROR : level <= 4 ? CMN_LOG_WARN : level <= 6 ? CMN_LOG_INFO
                                                                                            : CMN_LOG_DEBUG;
    const char *kv[] = {"component", "librdkafka", "facility", fac, NULL};
    cmn_logkv(log, l, NULL, kv, "%s", buf);
}

/* Writes content to path through a temporary file and rename(), so a
 * reader polling for the file never sees it half written. */
static int write_file_atomically(const char *path, const char *content)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(content, f) >= 0 && fputc('\n', f) != EOF;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------- control protocol */

int crmctl_fault_error_code(const char *s, int *code)
{
    if (s == NULL || s[0] == '\0' || code == NULL)
        return CMN_ERR_INVALID;
    if (isdigit((unsigned char)s[0])) {
        int v = 0;
        if (parse_int(s, 1, 32767, &v) != 0)
            return CMN_ERR_INVALID;
        /* Only codes librdkafka knows, so the mock can name them back. */
        const char *name = rd_kafka_err2name((rd_kafka_resp_err_t)v);
        if (name == NULL || name[0] == '\0' || strncmp(name, "ERR_", 4) == 0)
            return CMN_ERR_INVALID;
        *code = v;
        return 0;
    }
    if (strncasecmp(s, "ERR_", 4) == 0)
        s += 4;
    const struct rd_kafka_err_desc *descs = NULL;
    size_t n = 0;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].code > 0 && descs[i].name != NULL && strcasecmp(descs[i].name, s) == 0) {
            *code = descs[i].code;
            return 0;
        }
    }
    return CMN_ERR_INVALID;
}

static int fault_bad(const char **field, const char *name, char *why, size_t whylen, const char *text)
{
    *field = name;
    snprintf(why, whylen, "%s", text);
    return CMN_ERR_INVALID;
}

int crmctl_fault_parse(const char *method, const char *path, const crmctl_fault_args_t *args, int nbrokers,
                       crmctl_fault_t *out, const char **field, char *why, size_t whylen)
{
    static const crmctl_fault_args_t none = {0};
    const char *dummy_field = NULL;
    char dummy_why[8];
    if (field == NULL)
        field = &dummy_field;
    if (why == NULL || whylen == 0) {
        why = dummy_why;
        whylen = sizeof(dummy_why);
    }
    *field = NULL;
    why[0] = '\0';
    if (method == NULL || path == NULL || out == NULL)
        return CMN_ERR_INVALID;
    if (args == NULL)
        args = &none;
    memset(out, 0, sizeof(*out));
    int is_post = strcmp(method, "POST") == 0;

    if (strcmp(path, "/status") == 0) {
        out->op = CRMCTL_FAULT_STATUS;
        return strcmp(method, "GET") == 0 ? 0 : CMN_ERR_STATE;
    }
    if (strcmp(path, "/faults/clear") == 0) {
        out->op = CRMCTL_FAULT_CLEAR;
        return is_post ? 0 : CMN_ERR_STATE;
    }
    if (strcmp(path, "/faults/produce") == 0 || strcmp(path, "/faults/fetch") == 0) {
        if (!is_post)
            return CMN_ERR_STATE;
        out->op = CRMCTL_FAULT_REQUEST_ERRORS;
        out->api = strcmp(path, "/faults/produce") == 0 ? CRMCTL_API_PRODUCE : CRMCTL_API_FETCH;
        out->count = 1;
        if (args->count != NULL && parse_int(args->count, 1, CRMCTL_FAULT_MAX_COUNT, &out->count) != 0)
            return fault_bad(field, "count", why, whylen, "must be a whole number from 1 to 100000");
        /* NOT_LEADER_FOR_PARTITION is what a real cluster answers during a
         * leader election: the most common retriable fault. */
        const char *err = args->error != NULL ? args->error : "NOT_LEADER_FOR_PARTITION";
        if (crmctl_fault_error_code(err, &out->error) != 0)
            return fault_bad(field, "error", why, whylen,
                             "must be a Kafka broker error name (e.g. NOT_LEADER_FOR_PARTITION, "
                             "REQUEST_TIMED_OUT) or its positive code");
        if (args->broker != NULL && parse_int(args->broker, 1, nbrokers, &out->broker) != 0) {
            snprintf(why, whylen, "must be a broker id from 1 to %d", nbrokers);
            *field = "broker";
            return CMN_ERR_INVALID;
        }
        return 0;
    }
    if (strncmp(path, "/brokers/", 9) == 0) {
        const char *idp = path + 9;
        const char *slash = strchr(idp, '/');
        char id[16];
        if (slash == NULL || slash == idp || (size_t)(slash - idp) >= sizeof(id))
            return CMN_ERR_NOTFOUND;
        memcpy(id, idp, (size_t)(slash - idp));
        id[slash - idp] = '\0';
        const char *verb = slash + 1;
        if (strcmp(verb, "down") == 0)
            out->op = CRMCTL_FAULT_BROKER_DOWN;
        else if (strcmp(verb, "up") == 0)
            out->op = CRMCTL_FAULT_BROKER_UP;
        else if (strcmp(verb, "rtt") == 0)
            out->op = CRMCTL_FAULT_RTT;
        else
            return CMN_ERR_NOTFOUND;
        if (!is_post)
            return CMN_ERR_STATE;
        if (parse_int(id, 1, nbrokers, &out->broker) != 0) {
            snprintf(why, whylen, "must be a broker id from 1 to %d", nbrokers);
            *field = "broker";
            return CMN_ERR_INVALID;
        }
        if (out->op == CRMCTL_FAULT_RTT &&
            (args->ms == NULL || parse_int(args->ms, 0, CRMCTL_FAULT_MAX_RTT_MS, &out->rtt_ms) != 0))
            return fault_bad(field, "ms", why, whylen, "must be milliseconds from 0 to 60000");
        return 0;
    }
    return CMN_ERR_NOTFOUND;
}

/* ---------------------------------------------------------- control server */

/* What the control channel has done, for /status. The mock cluster keeps
 * cluster-wide request errors in a stack it does not let us read, so those
 * are reported as injected totals; per-broker errors are read back from the
 * mock as still pending. */
typedef struct embedded_ctl {
    rd_kafka_mock_cluster_t *mock;
    const char *bootstraps;
    int nbrokers;
    const cmn_log_t *log;
    pthread_mutex_t mu;
    int down[EMBEDDED_MAX_BROKERS + 1];
    int rtt_ms[EMBEDDED_MAX_BROKERS + 1];
    uint64_t injected[2];       /* by CRMCTL_API_*: requests given an error */
    int last_error[2];
    uint64_t broker_down_events;
} embedded_ctl_t;

static const char *api_name(int api)
{
    return api == CRMCTL_API_PRODUCE ? "produce" : "fetch";
}

static void ctl_status(embedded_ctl_t *ctl, cmn_buf_t *b)
{
    pthread_mutex_lock(&ctl->mu);
    cmn_buf_puts(b, "{\"bootstrap_servers\":");
    cmn_buf_put_json_string(b, ctl->bootstraps);
    cmn_buf_puts(b, ",\"brokers\":[");
    for (int id = 1; id <= ctl->nbrokers; id++) {
        size_t pending[2] = {0, 0};
        for (int api = 0; api < 2; api++)
            rd_kafka_mock_broker_error_stack_cnt(ctl->mock, id, (int16_t)api, &pending[api]);
        cmn_buf_printf(b,
                       "%s{\"id\":%d,\"up\":%s,\"rtt_ms\":%d,\"pending_errors\":{\"produce\":%zu,\"fetch\":%zu}}",
                       id > 1 ? "," : "", id, ctl->down[id] ? "false" : "true", ctl->rtt_ms[id], pending[0],
                       pending[1]);
    }
    cmn_buf_puts(b, "],\"injected\":{");
    for (int api = 0; api < 2; api++) {
        cmn_buf_printf(b, "%s\"%s\":{\"requests\":%llu,\"last_error\":", api > 0 ? "," : "", api_name(api),
                       (unsigned long long)ctl->injected[api]);
        if (ctl->last_error[api] > 0)
            cmn_buf_put_json_string(b, rd_kafka_err2name((rd_kafka_resp_err_t)ctl->last_error[api]));
        else
            cmn_buf_puts(b, "null");
        cmn_buf_putc(b, '}');
    }
    cmn_buf_printf(b, "},\"broker_down_events\":%llu}", (unsigned long long)ctl->broker_down_events);
    pthread_mutex_unlock(&ctl->mu);
}

/* Applies one command to the mock cluster. Returns 0 or CMN_ERR_KAFKA with
 * the mock's refusal in why. */
static int ctl_apply(embedded_ctl_t *ctl, const crmctl_fault_t *f, char *why, size_t whylen)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    pthread_mutex_lock(&ctl->mu);
    switch (f->op) {
    case CRMCTL_FAULT_STATUS:
        break;
    case CRMCTL_FAULT_REQUEST_ERRORS:
        if (f->broker > 0) {
            for (int i = 0; i < f->count && err == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
                err = rd_kafka_mock_broker_push_request_error_rtts(ctl->mock, f->broker, (int16_t)f->api, 1,
                                                                   (rd_kafka_resp_err_t)f->error, 0);
        } else {
            rd_kafka_resp_err_t *errs = malloc((size_t)f->count * sizeof(*errs));
            if (errs == NULL) {
                err = RD_KAFKA_RESP_ERR__FAIL;
                break;
            }
            for (int i = 0; i < f->count; i++)
                errs[i] = (rd_kafka_resp_err_t)f->error;
            rd_kafka_mock_push_request_errors_array(ctl->mock, (int16_t)f->api, (size_t)f->count, errs);
            free(errs);
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ctl->injected[f->api] += (uint64_t)f->count;
            ctl->last_error[f->api] = f->error;
        }
        break;
    case CRMCTL_FAULT_CLEAR:
        rd_kafka_mock_clear_request_errors(ctl->mock, CRMCTL_API_PRODUCE);
        rd_kafka_mock_clear_request_errors(ctl->mock, CRMCTL_API_FETCH);
        for (int id = 1; id <= ctl->nbrokers && err == RD_KAFKA_RESP_ERR_NO_ERROR; id++) {
            err = rd_kafka_mock_broker_set_up(ctl->mock, id);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                err = rd_kafka_mock_broker_set_rtt(ctl->mock, id, 0);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                ctl->down[id] = 0;
                ctl->rtt_ms[id] = 0;
            }
        }
        break;
    case CRMCTL_FAULT_BROKER_DOWN:
        err = rd_kafka_mock_broker_set_down(ctl->mock, f->broker);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && !ctl->down[f->broker]) {
            ctl->down[f->broker] = 1;
            ctl->broker_down_events++;
        }
        break;
    case CRMCTL_FAULT_BROKER_UP:
        err = rd_kafka_mock_broker_set_up(ctl->mock, f->broker);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            ctl->down[f->broker] = 0;
        break;
    case CRMCTL_FAULT_RTT:
        err = rd_kafka_mock_broker_set_rtt(ctl->mock, f->broker, f->rtt_ms);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            ctl->rtt_ms[f->broker] = f->rtt_ms;
        break;
    }
    pthread_mutex_unlock(&ctl->mu);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(why, whylen, "the mock cluster refused: %s", rd_kafka_err2str(err));
        return CMN_ERR_KAFKA;
    }
    return 0;
}

static void ctl_log_command(embedded_ctl_t *ctl, const crmctl_fault_t *f)
{
    char broker[16], count[16], rtt[16];
    snprintf(broker, sizeof(broker), "%d", f->broker);
    snprintf(count, sizeof(count), "%d", f->count);
    snprintf(rtt, sizeof(rtt), "%d", f->rtt_ms);
    switch (f->op) {
    case CRMCTL_FAULT_REQUEST_ERRORS: {
        const char *kv[] = {"api", api_name(f->api), "count", count, "error",
                            rd_kafka_err2name((rd_kafka_resp_err_t)f->error), "broker", broker, NULL};
        cmn_logkv(ctl->log, CMN_LOG_WARN, NULL, kv, "fault injected: request errors");
        break;
    }
    case CRMCTL_FAULT_BROKER_DOWN:
    case CRMCTL_FAULT_BROKER_UP: {
        const char *kv[] = {"broker", broker, NULL};
        cmn_logkv(ctl->log, CMN_LOG_WARN, NULL, kv, "fault injected: broker %s",
                  f->op == CRMCTL_FAULT_BROKER_DOWN ? "down" : "up");
        break;
    }
    case CRMCTL_FAULT_RTT: {
        const char *kv[] = {"broker", broker, "rtt_ms", rtt, NULL};
        cmn_logkv(ctl->log, CMN_LOG_WARN, NULL, kv, "fault injected: round-trip time");
        break;
    }
    case CRMCTL_FAULT_CLEAR:
        cmn_log_warn(ctl->log, NULL, "faults cleared");
        break;
    case CRMCTL_FAULT_STATUS:
        break;
    }
}

static void ctl_handler(void *vctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    embedded_ctl_t *ctl = vctx;
    crmctl_fault_args_t args = {
        .count = cmn_http_request_query(req, "count"),
        .error = cmn_http_request_query(req, "error"),
        .broker = cmn_http_request_query(req, "broker"),
        .ms = cmn_http_request_query(req, "ms"),
    };
    crmctl_fault_t f;
    const char *field = NULL;
    char why[256];
    int rc = crmctl_fault_parse(req->method, req->path, &args, ctl->nbrokers, &f, &field, why, sizeof(why));
    if (rc == CMN_ERR_NOTFOUND) {
        cmn_http_problem(resp, 404, NULL, "No such control endpoint; see docs/operations.md.", NULL);
        return;
    }
    if (rc == CMN_ERR_STATE) {
        cmn_http_problem(resp, 405, NULL, "GET /status; every other control endpoint takes POST.", NULL);
        return;
    }
    if (rc != 0) {
        json_object *errs = json_object_new_array();
        json_object *e = json_object_new_object();
        json_object_object_add(e, "field", json_object_new_string(field != NULL ? field : "request"));
        json_object_object_add(e, "reason", json_object_new_string(why));
        json_object_array_add(errs, e);
        cmn_http_problem(resp, 400, NULL, "The control request has an invalid argument.", errs);
        json_object_put(errs);
        return;
    }
    if (ctl_apply(ctl, &f, why, sizeof(why)) != 0) {
        cmn_http_problem(resp, 409, NULL, why, NULL);
        return;
    }
    ctl_log_command(ctl, &f);
    /* Every answer is the state after the command, so a caller sees at
     * once what it changed. */
    ctl_status(ctl, &resp->body);
}

static void embedded_usage(FILE *out)
{
    fprintf(out, "usage: crmctl embedded-kafka [--brokers N] [--bootstrap-file PATH]\n"
                 "                              [--control-port N] [--control-file PATH]\n"
                 "  Runs librdkafka's in-memory mock cluster (default %d brokers) with every topic\n"
                 "  created, prints {\"bootstrap_servers\":...} and runs until SIGTERM/SIGINT.\n"
                 "  --control-port N serves the fault-injection API on http://127.0.0.1:N (0: a free\n"
                 "  port); --control-file PATH receives that URL (see docs/operations.md).\n",
                 EMBEDDED_DEFAULT_BROKERS);
}

int crmctl_kafka_main(int argc, char **argv)
{
    int nbrokers = EMBEDDED_DEFAULT_BROKERS;
    int control_port = -1;
    const char *bootstrap_file = NULL;
    const char *control_file = NULL;
    cmn_log_t log;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_mock_cluster_t *mock = NULL;
    cmn_http_server_t *server = NULL;
    embedded_ctl_t ctl;
    int ctl_mutex = 0;
    char errstr[512];
    char control_url[64] = "";
    int wrote_file = 0, wrote_control = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, EMBEDDED_MAX_BROKERS, &nbrokers) != 0) {
                fprintf(stderr, "crmctl embedded-kafka: --brokers must be 1..%d\n", EMBEDDED_MAX_BROKERS);
                return 2;
            }
        } else if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) {
            bootstrap_file = argv[++i];
        } else if (strcmp(argv[i], "--control-port") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 0, 65535, &control_port) != 0) {
                fprintf(stderr, "crmctl embedded-kafka: --control-port must be 0..65535 (0: a free port)\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--control-file") == 0 && i + 1 < argc) {
            control_file = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            embedded_usage(stdout);
            return 0;
        } else {
            embedded_usage(stderr);
            return 2;
        }
    }
    if (control_file != NULL && control_port < 0) {
        fprintf(stderr, "crmctl embedded-kafka: --control-file needs --control-port\n");
        return 2;
    }
    kafka_cli_log_init(&log, "embedded-kafka");
    if (cmn_signal_install() != 0) {
        cmn_log_error(&log, NULL, "cannot install the signal handlers");
        return 1;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, &log);
    rd_kafka_conf_set_log_cb(conf, embedded_log_cb);
    /* The host handle exists only to carry the mock cluster: it has no
     * bootstrap servers and never connects, so its notices are noise. */
    if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        cmn_log_error(&log, NULL, "embedded kafka: %s", errstr);
        goto cleanup;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        cmn_log_error(&log, NULL, "embedded kafka: %s", errstr);
        goto cleanup;
    }
    conf = NULL;
    mock = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (mock == NULL) {
        cmn_log_error(&log, NULL, "embedded kafka: cannot start a mock cluster of %d brokers", nbrokers);
        goto cleanup;
    }
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *topics = cmn_kafka_topics(&ntopics);
    int replication = nbrokers < 3 ? nbrokers : 3;
    for (size_t i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mock, topics[i].name, topics[i].partitions, replication);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cmn_log_error(&log, NULL, "embedded kafka: cannot create topic %s: %s", topics[i].name,
                          rd_kafka_err2str(err));
            goto cleanup;
        }
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mock);
    if (control_port >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        ctl.mock = mock;
        ctl.bootstraps = bootstraps;
        ctl.nbrokers = nbrokers;
        ctl.log = &log;
        if (pthread_mutex_init(&ctl.mu, NULL) != 0) {
            cmn_log_error(&log, NULL, "embedded kafka: cannot create the control lock");
            goto cleanup;
        }
        ctl_mutex = 1;
        /* Loopback only: the channel can take the cluster down and has no
         * authentication, so nothing off this machine may reach it. */
        cmn_http_config_t hc = {
            .bind_address = "127.0.0.1",
            .port = control_port,
            .threads = 1,
            .max_body_bytes = 4096,
            .max_header_bytes = 16384,
            .timeout_seconds = 10,
            .handler = ctl_handler,
            .ctx = &ctl,
            .log = &log,
        };
        server = cmn_http_server_new(&hc, errstr, sizeof(errstr));
        if (server == NULL) {
            cmn_log_error(&log, NULL, "embedded kafka: control channel: %s", errstr);
            goto cleanup;
        }
        snprintf(control_url, sizeof(control_url), "http://127.0.0.1:%d", cmn_http_server_port(server));
        if (control_file != NULL) {
            if (write_file_atomically(control_file, control_url) != 0) {
                cmn_log_error(&log, NULL, "embedded kafka: cannot write %s: %s", control_file, strerror(errno));
                goto cleanup;
            }
            wrote_control = 1;
        }
    }
    /* The bootstrap file is written last: `crmctl dev up` waits for it, so
     * once it exists the control file does too. */
    if (bootstrap_file != NULL) {
        if (write_file_atomically(bootstrap_file, bootstraps) != 0) {
            cmn_log_error(&log, NULL, "embedded kafka: cannot write %s: %s", bootstrap_file, strerror(errno));
            goto cleanup;
        }
        wrote_file = 1;
    }
    {
        cmn_buf_t line = CMN_BUF_INIT;
        cmn_buf_puts(&line, "{\"bootstrap_servers\":");
        cmn_buf_put_json_string(&line, bootstraps);
        cmn_buf_printf(&line, ",\"brokers\":%d,\"topics\":%zu,\"partitions_per_topic\":%d", nbrokers, ntopics,
                       topics[0].partitions);
        if (control_url[0] != '\0') {
            cmn_buf_puts(&line, ",\"control_url\":");
            cmn_buf_put_json_string(&line, control_url);
        }
        cmn_buf_putc(&line, '}');
        if (line.data != NULL)
            printf("%s\n", line.data);
        fflush(stdout);
        cmn_buf_free(&line);
    }
    {
        const char *kv[] = {"bootstrap_servers", bootstraps, "control_url", control_url, NULL};
        cmn_logkv(&log, CMN_LOG_INFO, NULL, kv, "embedded kafka running with %d broker(s) and %zu topics", nbrokers,
                  ntopics);
    }

    /* The mock cluster and the control server run on their own threads;
     * this one only waits. */
    while (!cmn_stop_requested) {
        struct timespec tick = {0, EMBEDDED_TICK_MS * 1000000L};
        nanosleep(&tick, NULL);
    }
    cmn_log_info(&log, NULL, "embedded kafka stopping");
    rc = 0;

cleanup:
    /* The bootstrap and control files name ports that die with this
     * process; leaving them would let the next `dev up` read a stale
     * address. */
    if (wrote_file)
        unlink(bootstrap_file);
    if (wrote_control)
        unlink(control_file);
    /* The server goes first: its handler uses the mock cluster. */
    if (server != NULL)
        cmn_http_server_destroy(server);
    if (ctl_mutex)
        pthread_mutex_destroy(&ctl.mu);
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* ---------------------------------------------------------------- topics */

static int cmp_topic(const void *a, const void *b)
{
    const struct rd_kafka_metadata_topic *ta = a, *tb = b;
    return strcmp(ta->topic, tb->topic);
}

static int topics_list(const char *brokers, cmn_log_t *log)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;
    struct rd_kafka_metadata_topic *sorted = NULL;
    int rc = 1;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "crmctl topics: KAFKA_BROKERS: %s\n", errstr);
        goto cleanup;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "crmctl topics: %s\n", errstr);
        goto cleanup;
    }
    conf = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 15000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "crmctl topics: no metadata from %s: %s\n", brokers, rd_kafka_err2str(err));
        goto cleanup;
    }
    sorted = calloc((size_t)md->topic_cnt + 1, sizeof(*sorted));
    if (sorted == NULL)
        goto cleanup;
    memcpy(sorted, md->topics, (size_t)md->topic_cnt * sizeof(*sorted));
    qsort(sorted, (size_t)md->topic_cnt, sizeof(*sorted), cmp_topic);
    for (int i = 0; i < md->topic_cnt; i++)
        printf("%s\t%d\n", sorted[i].topic, sorted[i].partition_cnt);

    /* Name what the engine needs but the cluster lacks, so `topics list`
     * doubles as a check before deploying. */
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *specs = cmn_kafka_topics(&ntopics);
    int missing = 0;
    for (size_t i = 0; i < ntopics; i++) {
        int found = 0;
        for (int j = 0; j < md->topic_cnt && !found; j++)
            found = strcmp(md->topics[j].topic, specs[i].name) == 0 && md->topics[j].err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (!found) {
            fprintf(stderr, "crmctl topics: missing topic %s (run `crmctl topics create`)\n", specs[i].name);
            missing++;
        }
    }
    rc = missing > 0 ? 1 : 0;
    (void)log;

cleanup:
    free(sorted);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}

static void topics_usage(FILE *out)
{
    fprintf(out,
            "usage: crmctl topics create [--replication N] [--partitions N] [--fix]\n"
            "           create what is missing on KAFKA_BROKERS and check partitions and configs of what exists\n"
            "           --replication N  replication factor of new topics (default: min(3, brokers))\n"
            "           --partitions N   partitions of every topic (default: the table's, 12)\n"
            "           --fix            alter configs that differ and grow topics with too few partitions\n"
            "       crmctl topics list   topics and partition counts on KAFKA_BROKERS\n");
}

/* Counts of each state, filled by the report callback. */
typedef struct topics_tally {
    size_t by_state[CMN_KAFKA_TOPIC_FAILED + 1];
} topics_tally_t;

static void topics_report(void *ctx, const char *topic, cmn_kafka_topic_state_t state, const char *detail)
{
    topics_tally_t *t = ctx;
    t->by_state[state]++;
    printf("%-24s %-9s %s\n", topic, cmn_kafka_topic_state_name(state), detail[0] != '\0' ? detail : "as wanted");
}

int crmctl_topics_main(int argc, char **argv)
{
    cmn_log_t log;
    cmn_kafka_topics_opts_t opts = {0};
    topics_tally_t tally = {{0}};

    if (argc < 2) {
        topics_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        topics_usage(stdout);
        return 0;
    }
    int create = strcmp(argv[1], "create") == 0;
    if (!create && strcmp(argv[1], "list") != 0) {
        topics_usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (create && strcmp(argv[i], "--replication") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 32, &opts.replication) != 0) {
                fprintf(stderr, "crmctl topics: --replication must be 1..32\n");
                return 2;
            }
        } else if (create && strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1000, &opts.partitions) != 0) {
                fprintf(stderr, "crmctl topics: --partitions must be 1..1000\n");
                return 2;
            }
        } else if (create && strcmp(argv[i], "--fix") == 0) {
            opts.fix = 1;
        } else {
            topics_usage(stderr);
            return 2;
        }
    }
    const char *brokers = getenv("KAFKA_BROKERS");
    if (brokers == NULL || brokers[0] == '\0') {
        fprintf(stderr, "crmctl topics: KAFKA_BROKERS is not set (host:port[,host:port...])\n");
        return 1;
    }
    kafka_cli_log_init(&log, "crmctl");
    if (!create)
        return topics_list(brokers, &log);

    char errstr[1024] = "";
    opts.report = topics_report;
    opts.ctx = &tally;
    /* The per-topic lines on stdout say everything the log would. */
    opts.log = NULL;
    int rc = cmn_kafka_ensure_topics(brokers, &opts, errstr, sizeof(errstr));
    size_t ntopics = 0;
    cmn_kafka_topics(&ntopics);
    printf("%zu topics on %s: %zu ok, %zu created, %zu fixed, %zu unchecked, %zu mismatch, %zu failed\n", ntopics,
           brokers, tally.by_state[CMN_KAFKA_TOPIC_OK], tally.by_state[CMN_KAFKA_TOPIC_CREATED],
           tally.by_state[CMN_KAFKA_TOPIC_FIXED], tally.by_state[CMN_KAFKA_TOPIC_UNCHECKED],
           tally.by_state[CMN_KAFKA_TOPIC_MISMATCH], tally.by_state[CMN_KAFKA_TOPIC_FAILED]);
    if (tally.by_state[CMN_KAFKA_TOPIC_UNCHECKED] > 0)
        printf("note: topic configs could not be read from this cluster (librdkafka's mock cluster, as run by "
               "`crmctl embedded-kafka`, has no controller and no DescribeConfigs), so they were not checked\n");
    if (rc != 0) {
        fprintf(stderr, "crmctl topics: %s\n", errstr);
        if (rc == CMN_ERR_CONFIG && !opts.fix)
            fprintf(stderr, "crmctl topics: run `crmctl topics create --fix` to alter what differs\n");
        return 1;
    }
    return 0;
}
