/* crm-whatsapp-worker: consumes crm.send.whatsapp, checks the recipient's
 * 24-hour window, sends free text or the approved template through Meta's
 * Cloud API or Twilio, and reports sending/sent/failed on crm.status.
 * main() only wires configuration, logging, metrics, the HTTP endpoints and
 * the worker together; the work is in the wa_*.c modules and crm/worker.h. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "crm/config.h"
#include "crm/err.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/signal.h"
#include "crm/worker.h"
#include "wa_worker.h"

#define SERVICE "crm-whatsapp-worker"

int main(int argc, char **argv)
{
    wa_worker_config_t cfg;
    cmn_log_t log;
    cmn_metrics_t *metrics = NULL;
    wa_channel_t *channel = NULL;
    cmn_worker_channel_t ch;
    char errstr[1024] = "";
    int exit_code = 1;
    size_t ntable = 0;
    const cmn_cfg_entry_t *table = wa_worker_config_table(&ntable);
    int curl_ready = 0;

    memset(&cfg, 0, sizeof cfg);
    int rc = cmn_config_main(SERVICE, argc, argv, table, ntable, &cfg);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return 2;
    if (wa_worker_config_check(&cfg, errstr, sizeof errstr) != 0) {
        fprintf(stderr, SERVICE ": config error: %s\n", errstr);
        exit_code = 2;
        goto cleanup;
    }
    if (cmn_log_init(&log, SERVICE, cfg.log_level) != 0) {
        fprintf(stderr, SERVICE ": config error: LOG_LEVEL: must be debug, info, warn or error\n");
        exit_code = 2;
        goto cleanup;
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
    metrics = cmn_metrics_new();
    if (metrics == NULL) {
        cmn_log_error(&log, NULL, "out of memory");
        goto cleanup;
    }
    channel = wa_channel_new(&cfg, &log, metrics, errstr, sizeof errstr);
    if (channel == NULL) {
        fprintf(stderr, SERVICE ": config error: %s\n", errstr);
        exit_code = 2;
        goto cleanup;
    }
    wa_channel_bind(channel, &ch);
    cmn_receipt_policy_t receipt = {
        .deadline_ms = {[CMN_URGENCY_LOW] = cfg.receipt_deadline_low_ms,
                        [CMN_URGENCY_NORMAL] = cfg.receipt_deadline_normal_ms,
                        [CMN_URGENCY_HIGH] = cfg.receipt_deadline_high_ms,
                        [CMN_URGENCY_CRITICAL] = cfg.receipt_deadline_critical_ms},
        .check_interval_ms = cfg.receipt_check_interval_ms,
        .max_wait_ms = cfg.receipt_max_wait_ms,
    };
    cmn_worker_config_t wc = {
        .service = SERVICE,
        .brokers = cfg.kafka_brokers,
        .group_id = cfg.group_id,
        .batch_size = (int)cfg.batch_size,
        .max_in_flight = (int)cfg.max_in_flight,
        .session_timeout_ms = (int)cfg.session_timeout_ms,
        .retry_max_attempts = (int)cfg.retry_max_attempts,
        .retry_base_ms = cfg.retry_base_ms,
        .retry_cap_ms = cfg.retry_cap_ms,
        .receipt_fallback = cfg.receipt_fallback,
        .receipt_policy = &receipt,
        /* One sender per worker (the phone-number id or the From number):
         * the provider's limit is per sender. */
        .rate_per_sec = cfg.rate_per_second,
        .rate_burst = cfg.rate_burst,
        .log = &log,
        .metrics = metrics,
    };
    /* The start line names the provider; cmn_worker_serve appends the port. */
    char started[512];
    snprintf(started, sizeof started, "started: provider %s", cfg.provider);
    exit_code = cmn_worker_serve(&wc, &ch, cfg.http_bind, (int)cfg.http_port, started) == 0 ? 0 : 1;
cleanup:
    wa_channel_destroy(channel);
    cmn_metrics_destroy(metrics);
    if (curl_ready)
        curl_global_cleanup();
    cmn_config_free(table, ntable, &cfg);
    return exit_code;
}
