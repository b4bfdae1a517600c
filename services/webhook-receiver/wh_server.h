/* wh_server.h - crm-webhook-receiver: configuration, context and the HTTP
 * adapter that ties signatures, parsers, PostgreSQL and Kafka together.
 *
 * Endpoints (docs/webhooks.md):
 *   POST /twilio/status    Twilio status callbacks        -> crm.status
 *   POST /twilio/inbound   Twilio inbound SMS / WhatsApp  -> crm.inbound (+ crm.preferences), TwiML
 *   GET  /meta/webhook     Meta subscription check (hub.challenge echo)
 *   POST /meta/webhook     Meta statuses and messages     -> crm.status, crm.inbound (+ crm.preferences)
 *   GET  /t/o/<token>      email open pixel               -> crm.status opened
 *   GET  /t/c/<token>      email click redirect           -> crm.status clicked, 302 to the signed target
 *   GET  /u/<token>        visible unsubscribe page
 *   POST /u/<token>        RFC 8058 one-click unsubscribe -> crm.preferences opt_out.email
 * plus /metrics, /healthz and /readyz from the common server.
 *
 * A webhook is answered 200 only after everything it produced is
 * acknowledged by Kafka; anything less is 503 and the provider retries,
 * which is safe because every record's id is derived from the provider's
 * own ids. The handler runs on the server's threads; the context is
 * read-only after wh_ctx_new() apart from thread-safe members (metrics,
 * producer, database pool). */
#ifndef WH_SERVER_H
#define WH_SERVER_H

#include <stddef.h>

#include "crm/config.h"

typedef struct wh_config {
    char *kafka_brokers;     /* KAFKA_BROKERS */
    char *database_url;      /* DATABASE_URL (secret: may hold a password) */
    char *http_bind;         /* HTTP_BIND */
    long http_port;          /* HTTP_PORT */
    long http_threads;       /* HTTP_THREADS */
    char *log_level;         /* LOG_LEVEL */
    char *public_url;        /* WEBHOOK_PUBLIC_URL */
    char *twilio_auth_token; /* TWILIO_AUTH_TOKEN */
    char *meta_app_secret;   /* WHATSAPP_APP_SECRET */
    char *meta_verify_token; /* WHATSAPP_WEBHOOK_VERIFY_TOKEN */
    char *data_key;          /* CRM_DATA_KEY */
    char *tracking_key;      /* CRM_TRACKING_KEY */
    char *tracking_key_previous; /* CRM_TRACKING_KEY_PREVIOUS */
    char *help_text;         /* SMS_HELP_TEXT */
    char *tenant_id;         /* TENANT_ID */
    long max_body_bytes;     /* WEBHOOK_MAX_BODY_BYTES */
    long kafka_timeout_ms;   /* WEBHOOK_KAFKA_TIMEOUT_MS */
    long db_pool_size;       /* WEBHOOK_DB_POOL_SIZE */
    long db_timeout_ms;      /* WEBHOOK_DB_TIMEOUT_MS */
} wh_config_t;

/* The configuration table (static storage) and its length in *n. */
const cmn_cfg_entry_t *wh_config_table(size_t *n);

/* Checks what the table cannot: LOG_LEVEL's values, WEBHOOK_PUBLIC_URL (an
 * http(s) URL without query or fragment), key lengths (CRM_DATA_KEY and,
 * when set, the tracking keys: 32+ characters), TENANT_ID (an id without
 * ':'), DATABASE_URL's syntax (never quoted). Returns 0 or CMN_ERR_CONFIG
 * with one "NAME: reason" line in errstr. */
int wh_config_check(const wh_config_t *cfg, char *errstr, size_t errlen);

typedef struct wh_ctx wh_ctx_t;

/* Creates logger, metrics, producer, database pool and HTTP server, and
 * starts serving. cfg is borrowed and must outlive the context. NULL with
 * the reason in errstr. */
wh_ctx_t *wh_ctx_new(const wh_config_t *cfg, char *errstr, size_t errlen);

/* Blocks until cmn_stop_requested is set. Returns 0. */
int wh_run(wh_ctx_t *ctx);

/* Stops HTTP intake (requests in flight finish), flushes the producer and
 * frees everything. NULL is a no-op. */
void wh_ctx_destroy(wh_ctx_t *ctx);

#endif
