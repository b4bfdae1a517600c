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
 *       [--log-level info]
 * The token may come from META_SANDBOX_ACCESS_TOKEN instead, which keeps it
 * out of the process list. Prints "sandbox-meta ready on HOST:PORT" once it
 * accepts connections, and exits 0 on SIGTERM or SIGINT. */
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
} options_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: " SERVICE " --phone-number-id ID [--access-token TOKEN] [--api-version v23.0]\n"
                 "       [--examples FILE] [--host ADDR] [--port N] [--no-scripts] [--record-max N]\n"
                 "       [--log-level debug|info|warn|error]\n"
                 "The token may also come from META_SANDBOX_ACCESS_TOKEN.\n"
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
                   .log_level = "info"};
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
    };
    api = msbx_api_new(&ac, &ex, &log, errstr, sizeof errstr);
    if (api == NULL) {
        cmn_log_error(&log, NULL, "%s", errstr);
        goto cleanup;
    }
    cmn_http_config_t hc = {
        .bind_address = o.host,
        .port = (int)o.port,
        /* Scripted slow answers sleep in their handler thread; enough
         * threads keep the other requests flowing meanwhile. */
        .threads = 16,
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
    return exit_code;
}
