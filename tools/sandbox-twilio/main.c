/* crm-sandbox-twilio: a stand-in for Twilio's Messages API, for the tests
 * and the demo. It validates every request against the CreateMessage schema
 * of Twilio's official OpenAPI description, answers like Twilio (201 with
 * the Message resource, or Twilio's error body), fails on purpose for
 * scripted recipient numbers, records what it received for the tests, and
 * optionally posts signed status callbacks. See sbx_api.h and docs/sms.md.
 *
 * Usage:
 *   crm-sandbox-twilio --account-sid AC... [--auth-token TOKEN]
 *       [--spec twilio_api_v2010.json] [--host 127.0.0.1] [--port 0]
 *       [--no-scripts] [--callbacks] [--callback-delay-ms 200]
 *       [--record-max 10000] [--storm 500=0.30,429=0.10,timeout=0.05]
 *       [--storm-retry-after-s 1] [--storm-timeout-ms 3000] [--storm-seed 1]
 * The token may come from TWILIO_SANDBOX_AUTH_TOKEN instead, which keeps it
 * out of the process list. The storm options may come from SANDBOX_STORM,
 * SANDBOX_STORM_RETRY_AFTER_S, SANDBOX_STORM_TIMEOUT_MS and
 * SANDBOX_STORM_SEED (a flag wins over its variable); see sbx_storm.h.
 * Prints one line "sandbox-twilio ready on HOST:PORT" once it accepts
 * connections, and exits 0 on SIGTERM or SIGINT. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/http.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "sbx_api.h"
#include "sbx_spec.h"
#include "sbx_storm.h"

#define SERVICE "crm-sandbox-twilio"

#ifndef SBX_DEFAULT_SPEC
#define SBX_DEFAULT_SPEC "../shared/oracles/twilio/twilio_api_v2010.json"
#endif

typedef struct options {
    const char *spec;
    const char *host;
    long port;
    const char *account_sid;
    const char *auth_token;
    int scripts;
    int callbacks;
    long callback_delay_ms;
    long record_max;
    const char *log_level;
    const char *storm;            /* NULL: SANDBOX_STORM */
    const char *storm_retry_after; /* NULL: SANDBOX_STORM_RETRY_AFTER_S */
    const char *storm_timeout;    /* NULL: SANDBOX_STORM_TIMEOUT_MS */
    const char *storm_seed;       /* NULL: SANDBOX_STORM_SEED */
} options_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: " SERVICE " --account-sid AC... [--auth-token TOKEN] [--spec FILE] [--host ADDR]\n"
                 "       [--port N] [--no-scripts] [--callbacks] [--callback-delay-ms N] [--record-max N]\n"
                 "       [--log-level debug|info|warn|error] [--storm 500=0.3,429=0.1,timeout=0.05]\n"
                 "       [--storm-retry-after-s N] [--storm-timeout-ms N] [--storm-seed N]\n"
                 "The token may also come from TWILIO_SANDBOX_AUTH_TOKEN, the storm options from\n"
                 "SANDBOX_STORM, SANDBOX_STORM_RETRY_AFTER_S, SANDBOX_STORM_TIMEOUT_MS, SANDBOX_STORM_SEED.\n"
                 "Default spec: " SBX_DEFAULT_SPEC "\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Returns 0, 1 for --help, or -1 (message printed). */
static int parse_args(int argc, char **argv, options_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--no-scripts") == 0) {
            o->scripts = 0;
            takes = 0;
        } else if (strcmp(a, "--callbacks") == 0) {
            o->callbacks = 1;
            takes = 0;
        } else if (v == NULL) {
            fprintf(stderr, SERVICE ": %s needs a value (or is unknown)\n", a);
            return -1;
        } else if (strcmp(a, "--spec") == 0) {
            o->spec = v;
        } else if (strcmp(a, "--host") == 0) {
            o->host = v;
        } else if (strcmp(a, "--account-sid") == 0) {
            o->account_sid = v;
        } else if (strcmp(a, "--auth-token") == 0) {
            o->auth_token = v;
        } else if (strcmp(a, "--log-level") == 0) {
            o->log_level = v;
        } else if (strcmp(a, "--storm") == 0) {
            o->storm = v;
        } else if (strcmp(a, "--storm-retry-after-s") == 0) {
            o->storm_retry_after = v;
        } else if (strcmp(a, "--storm-timeout-ms") == 0) {
            o->storm_timeout = v;
        } else if (strcmp(a, "--storm-seed") == 0) {
            o->storm_seed = v;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_long(v, 0, 65535, &o->port) != 0) {
                fprintf(stderr, SERVICE ": --port must be 0..65535\n");
                return -1;
            }
        } else if (strcmp(a, "--callback-delay-ms") == 0) {
            if (parse_long(v, 0, 600000, &o->callback_delay_ms) != 0) {
                fprintf(stderr, SERVICE ": --callback-delay-ms must be 0..600000\n");
                return -1;
            }
        } else if (strcmp(a, "--record-max") == 0) {
            if (parse_long(v, 1, 10000000, &o->record_max) != 0) {
                fprintf(stderr, SERVICE ": --record-max must be 1..10000000\n");
                return -1;
            }
        } else {
            fprintf(stderr, SERVICE ": unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        i += takes;
    }
    return 0;
}

/* Fills storm from the options, falling back on the SANDBOX_STORM*
 * variables. 0, or -1 with the message printed. */
static int storm_options(const options_t *o, sbx_storm_cfg_t *storm)
{
    char why[200];
    if (sbx_storm_configure(storm, o->storm != NULL ? o->storm : getenv("SANDBOX_STORM"),
                            o->storm_retry_after != NULL ? o->storm_retry_after : getenv("SANDBOX_STORM_RETRY_AFTER_S"),
                            o->storm_timeout != NULL ? o->storm_timeout : getenv("SANDBOX_STORM_TIMEOUT_MS"),
                            o->storm_seed != NULL ? o->storm_seed : getenv("SANDBOX_STORM_SEED"), why,
                            sizeof why) != 0) {
        fprintf(stderr, SERVICE ": %s\n", why);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t o = {.spec = SBX_DEFAULT_SPEC,
                   .host = "127.0.0.1",
                   .port = 0,
                   .scripts = 1,
                   .callbacks = 0,
                   .callback_delay_ms = 200,
                   .record_max = 10000,
                   .log_level = "info"};
    cmn_log_t log;
    sbx_schema_t *schema = NULL;
    sbx_api_t *api = NULL;
    cmn_http_server_t *http = NULL;
    char errstr[512] = "";
    int exit_code = 1;
    int curl_ready = 0;

    sbx_storm_cfg_t storm;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (storm_options(&o, &storm) != 0)
        return 2;
    if (o.auth_token == NULL)
        o.auth_token = getenv("TWILIO_SANDBOX_AUTH_TOKEN");
    if (o.account_sid == NULL || o.auth_token == NULL || o.auth_token[0] == '\0') {
        fprintf(stderr, SERVICE ": --account-sid and an auth token (--auth-token or TWILIO_SANDBOX_AUTH_TOKEN) are "
                        "required\n");
        return 2;
    }
    if (cmn_log_init(&log, SERVICE, o.log_level) != 0) {
        fprintf(stderr, SERVICE ": --log-level must be debug, info, warn or error\n");
        return 2;
    }
    if (cmn_signal_install() != 0) {
        cmn_log_error(&log, NULL, "cannot install signal handlers");
        goto cleanup;
    }
    /* Before any thread exists: curl_global_init is not thread-safe. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cmn_log_error(&log, NULL, "curl_global_init failed");
        goto cleanup;
    }
    curl_ready = 1;
    schema = sbx_schema_load(o.spec, errstr, sizeof errstr);
    if (schema == NULL) {
        fprintf(stderr, SERVICE ": cannot load the Twilio spec: %s\n", errstr);
        exit_code = 2;
        goto cleanup;
    }
    /* The account must itself satisfy the spec's AccountSid pattern, or
     * every request would be refused. */
    if (sbx_rule_check(&schema->account_sid, o.account_sid, errstr, sizeof errstr) != 0) {
        fprintf(stderr, SERVICE ": --account-sid %s\n", errstr);
        exit_code = 2;
        goto cleanup;
    }
    sbx_api_config_t ac = {
        .account_sid = o.account_sid,
        .auth_token = o.auth_token,
        .scripts = o.scripts,
        .callbacks = o.callbacks,
        .callback_delay_ms = (int)o.callback_delay_ms,
        .record_max = (size_t)o.record_max,
        .storm = storm,
    };
    api = sbx_api_new(&ac, schema, &log, errstr, sizeof errstr);
    if (api == NULL) {
        cmn_log_error(&log, NULL, "%s", errstr);
        goto cleanup;
    }
    cmn_http_config_t hc = {
        .bind_address = o.host,
        .port = (int)o.port,
        /* Scripted slow answers and storm holds sleep in their handler
         * thread, which also stalls the other connections libmicrohttpd gave
         * that thread. A request stalled past the client's time limit and
         * then accepted is a provider-side duplicate the storm did not mean
         * to make, so there are many threads and few connections each. */
        .threads = 64,
        .max_body_bytes = 64 * 1024,
        .max_header_bytes = 16 * 1024,
        .timeout_seconds = 30,
        .handler = sbx_api_handle,
        .ctx = api,
        .log = &log,
    };
    http = cmn_http_server_new(&hc, errstr, sizeof errstr);
    if (http == NULL) {
        cmn_log_error(&log, NULL, "cannot start the HTTP server: %s", errstr);
        goto cleanup;
    }
    cmn_log_info(&log, NULL, "spec %s: %zu CreateMessage parameters", o.spec, schema->n);
    if (sbx_storm_active(&storm))
        cmn_log_info(&log, NULL, "storm: 500 %.2f, 429 %.2f (Retry-After %d s), timeout %.2f (held %d ms), seed %llu",
                     storm.p500, storm.p429, storm.retry_after_s, storm.ptimeout, storm.timeout_ms,
                     (unsigned long long)storm.seed);
    printf("sandbox-twilio ready on %s:%d\n", o.host, cmn_http_server_port(http));
    fflush(stdout);
    while (!cmn_stop_requested) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cmn_log_info(&log, NULL, "stop requested");
    exit_code = 0;
cleanup:
    cmn_http_server_destroy(http);
    sbx_api_destroy(api);
    sbx_schema_destroy(schema);
    if (curl_ready)
        curl_global_cleanup();
    return exit_code;
}
