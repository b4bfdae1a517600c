/* router_service.h - the router: consumes CommunicationRequests from
 * crm.requests, claims them, decides their channel and produces their first
 * Dispatch and their status events.
 *
 * One batch at a time:
 *   poll a batch -> parse and validate every record (bad ones go to crm.dlq,
 *   and get a `rejected` status when they carry usable ids) -> claim the
 *   valid ones in PostgreSQL (router_claims.h; a deferred request coming
 *   back takes its claim back) -> for resumed claims, look for Dispatches an
 *   earlier run already produced (router_readback.h) -> read the clients'
 *   preferences (router_prefs.h: cache, then one query for the misses) and
 *   record their addresses' hashes (router_contacts.h) -> for each claim to
 *   route: `accepted` (first sight only), then the strategy's `routed` +
 *   Dispatch to crm.send.<channel>, `suppressed`, or `deferred` + the request
 *   record to crm.defer.<tier> -> wait for every produce to be acknowledged
 *   -> mark the claims done or deferred -> commit the batch's offsets.
 * Beside the loop run two threads: the preferences feed
 * (router_prefs_feed.h) and the defer tiers' consumer (crm/delayq.h, group
 * ROUTER_DEFER_GROUP_ID), which hands deferred requests back to
 * crm.requests when they are due, and decides the workers' receipt
 * watches through its guard (router_receipts.h): the next channel's
 * Dispatch to crm.send.<next> after a failed or missing receipt.
 * Any failure (Kafka, PostgreSQL) rewinds the batch and retries it after a
 * backoff; the claims make the retry produce nothing twice.
 *
 * All state lives in one router_ctx_t passed everywhere; the only global is
 * cmn_stop_requested, which ends router_service_run() after the batch in
 * hand is finished and committed. */
#ifndef ROUTER_SERVICE_H
#define ROUTER_SERVICE_H

#include <stddef.h>

#include "crm/config.h"
#include "crm/log.h"

/* Settings from the environment (router_settings_table()). */
typedef struct router_settings {
    char *kafka_brokers;    /* KAFKA_BROKERS */
    char *database_url;     /* DATABASE_URL (required, secret: it may hold a password) */
    char *http_bind;        /* HTTP_BIND */
    long http_port;         /* HTTP_PORT */
    char *log_level;        /* LOG_LEVEL */
    char *channels_file;    /* ROUTER_CHANNELS_FILE */
    char *enabled_channels; /* ROUTER_ENABLED_CHANNELS */
    long batch_size;        /* ROUTER_BATCH_SIZE */
    char *group_id;         /* ROUTER_GROUP_ID */
    long session_timeout_ms; /* KAFKA_SESSION_TIMEOUT_MS */
    char *quiet_channels;   /* ROUTER_QUIET_HOURS_CHANNELS */
    int whatsapp_require_consent; /* ROUTER_WHATSAPP_REQUIRE_CONSENT */
    long prefs_cache_size;  /* ROUTER_PREFS_CACHE_SIZE */
    long prefs_cache_ttl_ms; /* ROUTER_PREFS_CACHE_TTL_MS */
    char *defer_group_id;   /* ROUTER_DEFER_GROUP_ID */
    char *data_key;         /* CRM_DATA_KEY (secret; "" disables client_contacts) */
    long receipt_check_interval_ms; /* RECEIPT_CHECK_INTERVAL_MS */
    long receipt_max_wait_ms;       /* RECEIPT_MAX_WAIT_MS */
} router_settings_t;

/* The static settings table; *n receives its length. */
const cmn_cfg_entry_t *router_settings_table(size_t *n);

typedef struct router_ctx router_ctx_t;

/* Checks the settings that need more than the table (the routing file, the
 * enabled channels), connects to Kafka, PostgreSQL and starts the HTTP
 * server. settings and log are borrowed and must outlive the context.
 * A PostgreSQL that is down at start is not fatal (the router waits for it,
 * not ready meanwhile); bad settings are. Returns the context (destroy with
 * router_service_destroy) or NULL with one line in errstr that names the
 * variable at fault when there is one. *exit_code receives 2 for a
 * configuration error and 1 for anything else. */
router_ctx_t *router_service_new(const router_settings_t *settings, const cmn_log_t *log, int *exit_code,
                                 char *errstr, size_t errlen);

/* Runs until cmn_stop_requested is set. Returns 0 after a clean stop. */
int router_service_run(router_ctx_t *ctx);

/* Leaves the consumer group, flushes the producer, stops the HTTP server and
 * frees everything. NULL is allowed. */
void router_service_destroy(router_ctx_t *ctx);

#endif
