/* crm-sandbox-meta: a stand-in for the WhatsApp Cloud API (Meta Graph API)
 * for the tests and the demo. Every POST /{version}/{phone-number-id}/messages
 * is checked against Meta's official request examples (Meta's own schemas
 * reject those examples, see shared/oracles/README.md), answered like Meta
 * (the official success shape with a wamid, or the Graph error envelope),
 * failed on purpose for scripted recipient numbers, and recorded for the
 * tests. See msbx_api.h and docs/whatsapp.md.
 *
 * Usage:
 *   crm-sandbox-meta --phone-number-id ID [--access-token TOKEN]
 *       [--api-version v23.0] [--examples cloud_api_examples.json]
 *       [--host 127.0.0.1] [--port 0] [--no-scripts] [--record-max 10000]
 *       [--log-level info] [--webhook-url URL [--app-secret S]
 *       [--webhook-delay-ms 200] [--waba-id ID] [--display-phone-number N]]
 *       [--storm 500=0.30,429=0.10,timeout=0.05] [--storm-retry-after-s 1]
 *       [--storm-timeout-ms 3000] [--storm-seed 1]
 * The token may come from META_SANDBOX_ACCESS_TOKEN instead, and the app
 * secret from META_SANDBOX_APP_SECRET, which keeps them out of the process
 * list. The storm options may come from SANDBOX_STORM,
 * SANDBOX_STORM_RETRY_AFTER_S, SANDBOX_STORM_TIMEOUT_MS and
 * SANDBOX_STORM_SEED (a flag wins over its variable). Prints "sandbox-meta ready on HOST:PORT" once it
 * accepts connections, and exits 0 on SIGTERM or SIGINT. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/http.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "msbx_api.h"
#include "msbx_shape.h"
#include "sbx_storm.h"

#define SERVICE "crm-sandbox-meta"

#ifndef MSBX_DEFAULT_EXAMPLES
#define MSBX_DEFAULT_EXAMPLES "../shared/oracles/meta/cloud_api_examples.json"
#endif

typedef struct options {
    const char *examples;
    const char *host;
    long port;
    const char *access_token;
    const char *api_version;
    const char *phone_number_id;
    int scripts;
    long record_max;
    const char *log_level;
    const char *webhook_url;
    const char *app_secret;
    long webhook_delay_ms;
    const char *waba_id;
    const char *display_phone_number;
    const char *storm;             /* NULL: SANDBOX_STORM */
    const char *storm_retry_after; /* NULL: SANDBOX_STORM_RETRY_AFTER_S */
    const char *storm_timeout;     /* NULL: SANDBOX_STORM_TIMEOUT_MS */
    const char *storm_seed;        /* NULL: SANDBOX_STORM_SEED */
} options_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: " SERVICE " --phone-number-id ID [--access-token TOKEN] [--api-version v23.0]\n"
                 "       [--examples FILE] [--host ADDR] [--port N] [--no-scripts] [--record-max N]\n"
                 "       [--log-level debug|info|warn|error]\n"
                 "       [--webhook-url URL --app-secret S [--webhook-delay-ms N] [--waba-id ID]\n"
                 "        [--display-phone-number N]]\n"
                 "       [--storm 500=0.3,429=0.1,timeout=0.05] [--storm-retry-after-s N]\n"
                 "       [--storm-timeout-ms N] [--storm-seed N]\n"
                 "The token may also come from META_SANDBOX_ACCESS_TOKEN, the app secret from\n"
                 "META_SANDBOX_APP_SECRET, the storm options from SANDBOX_STORM,\n"
                 "SANDBOX_STORM_RETRY_AFTER_S, SANDBOX_STORM_TIMEOUT_MS, SANDBOX_STORM_SEED.\n"
                 "Default examples: " MSBX_DEFAULT_EXAMPLES "\n");
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
        } else if (v == NULL) {
            fprintf(stderr, SERVICE ": %s needs a value (or is unknown)\n", a);
            return -1;
        } else if (strcmp(a, "--examples") == 0) {
            o->examples = v;
        } else if (strcmp(a, "--host") == 0) {
            o->host = v;
        } else if (strcmp(a, "--access-token") == 0) {
            o->access_token = v;
        } else if (strcmp(a, "--api-version") == 0) {
            o->api_version = v;
        } else if (strcmp(a, "--phone-number-id") == 0) {
            o->phone_number_id = v;
        } else if (strcmp(a, "--log-level") == 0) {
            o->log_level = v;
        } else if (strcmp(a, "--webhook-url") == 0) {
            o->webhook_url = v;
        } else if (strcmp(a, "--app-secret") == 0) {
            o->app_secret = v;
        } else if (strcmp(a, "--waba-id") == 0) {
            o->waba_id = v;
        } else if (strcmp(a, "--display-phone-number") == 0) {
            o->display_phone_number = v;
        } else if (strcmp(a, "--webhook-delay-ms") == 0) {
            if (parse_long(v, 0, 600000, &o->webhook_delay_ms) != 0) {
                fprintf(stderr, SERVICE ": --webhook-delay-ms must be 0..600000\n");
                return -1;
            }
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

int main(int argc, char **argv)
{
    options_t o = {.examples = MSBX_DEFAULT_EXAMPLES,
                   .host = "127.0.0.1",
                   .port = 0,
                   .api_version = "v23.0",
                   .scripts = 1,
                   .record_max = 10000,
                   .log_level = "info",
                   .webhook_delay_ms = 200,
                   /* The ids of Meta's own webhook examples. */
                   .waba_id = "102290129340398",
                   .display_phone_number = "15550783881"};
    sbx_storm_cfg_t storm;
    int curl_ready = 0;
    cmn_log_t log;
    msbx_examples_t ex;
    msbx_api_t *api = NULL;
    cmn_http_server_t *http = NULL;
    char errstr[512] = "";
    int exit_code = 1;

    memset(&ex, 0, sizeof ex);
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (o.access_token == NULL)
        o.access_token = getenv("META_SANDBOX_ACCESS_TOKEN");
    if (o.app_secret == NULL)
        o.app_secret = getenv("META_SANDBOX_APP_SECRET");
    if (o.webhook_url != NULL && o.webhook_url[0] != '\0' && (o.app_secret == NULL || o.app_secret[0] == '\0')) {
        fprintf(stderr, SERVICE ": --webhook-url needs an app secret (--app-secret or META_SANDBOX_APP_SECRET)\n");
        return 2;
    }
    if (sbx_storm_configure(&storm, o.storm != NULL ? o.storm : getenv("SANDBOX_STORM"),
                            o.storm_retry_after != NULL ? o.storm_retry_after : getenv("SANDBOX_STORM_RETRY_AFTER_S"),
                            o.storm_timeout != NULL ? o.storm_timeout : getenv("SANDBOX_STORM_TIMEOUT_MS"),
                            o.storm_seed != NULL ? o.storm_seed : getenv("SANDBOX_STORM_SEED"), errstr,
                            sizeof errstr) != 0) {
        fprintf(stderr, SERVICE ": %s\n", errstr);
        return 2;
    }
    if (o.phone_number_id == NULL || o.access_token == NULL || o.access_token[0] == '\0') {
        fprintf(stderr, SERVICE ": --phone-number-id and an access token (--access-token or "
                        "META_SANDBOX_ACCESS_TOKEN) are required\n");
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
    if (msbx_examples_load(o.examples, &ex, errstr, sizeof errstr) != 0) {
        fprintf(stderr, SERVICE ": cannot load the examples: %s\n", errstr);
        exit_code = 2;
        goto cleanup;
    }
    msbx_api_config_t ac = {
        .access_token = o.access_token,
        .api_version = o.api_version,
        .phone_number_id = o.phone_number_id,
        .scripts = o.scripts,
        .record_max = (size_t)o.record_max,
        .storm = storm,
        .webhook_url = o.webhook_url,
        .app_secret = o.app_secret,
        .webhook_delay_ms = (int)o.webhook_delay_ms,
        .waba_id = o.waba_id,
        .display_phone_number = o.display_phone_number,
    };
    api = msbx_api_new(&ac, &ex, &log, errstr, sizeof errstr);
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
        .max_body_bytes = 256 * 1024,
        .max_header_bytes = 16 * 1024,
        .timeout_seconds = 30,
        .handler = msbx_api_handle,
        .ctx = api,
        .log = &log,
    };
    http = cmn_http_server_new(&hc, errstr, sizeof errstr);
    if (http == NULL) {
        cmn_log_error(&log, NULL, "cannot start the HTTP server: %s", errstr);
        goto cleanup;
    }
    cmn_log_info(&log, NULL, "examples %s: %zu send examples of %zu types", o.examples, ex.n, ex.ntypes);
    if (sbx_storm_active(&storm))
        cmn_log_info(&log, NULL, "storm: 500 %.2f, 429 %.2f (Retry-After %d s), timeout %.2f (held %d ms), seed %llu",
                     storm.p500, storm.p429, storm.retry_after_s, storm.ptimeout, storm.timeout_ms,
                     (unsigned long long)storm.seed);
    printf("sandbox-meta ready on %s:%d\n", o.host, cmn_http_server_port(http));
    fflush(stdout);
    while (!cmn_stop_requested) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cmn_log_info(&log, NULL, "stop requested");
    exit_code = 0;
cleanup:
    cmn_http_server_destroy(http);
    msbx_api_destroy(api);
    msbx_examples_free(&ex);
    if (curl_ready)
        curl_global_cleanup();
    return exit_code;
}
