/* wa_worker.c - the WhatsApp channel: configuration table and the
 * prepare/sender/submit/classify/release implementation. See wa_worker.h. */
#include "wa_worker.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/pg.h"
#include "crm/provider_errors.h"
#include "crm/request.h"
#include "crm/time.h"
#include "wa_content.h"
#include "wa_conversations.h"
#include "wa_meta.h"
#include "wa_templates.h"
#include "wa_text.h"
#include "wa_twilio.h"
#include "wa_window.h"

#ifndef WA_DEFAULT_TEMPLATES_DIR
#define WA_DEFAULT_TEMPLATES_DIR "templates"
#endif
#ifndef WA_DEFAULT_TEMPLATES_FILE
#define WA_DEFAULT_TEMPLATES_FILE "config/whatsapp_templates.json"
#endif

#define USER_AGENT "crm-whatsapp-worker/0.1"
/* A database that does not answer must not hold a batch for long: the
 * window then counts as unknown (templates still go out) and the next
 * attempt to connect waits this long, so a dead database costs one short
 * wait per DB_RETRY_MS, not one per message. */
#define DB_CONNECT_TIMEOUT_MS 2000
#define DB_RETRY_MS 5000
#define DB_STATEMENT_TIMEOUT "SET statement_timeout = 2000"
/* Connecting is part of a transfer's time limit, but never more than this. */
#define CONNECT_TIMEOUT_MAX_MS 10000

#define OFF(field) offsetof(wa_worker_config_t, field)

static const cmn_cfg_entry_t CONFIG_TABLE[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, OFF(kafka_brokers), "Kafka bootstrap servers.", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, OFF(http_bind), "Address of the /metrics, /healthz, /readyz server.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "9105", 0, OFF(http_port), "Port of the /metrics, /healthz, /readyz server (0 picks one).", 0, 65535},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, OFF(log_level), "debug, info, warn or error.", 0, 0},
    {"WHATSAPP_PROVIDER", CMN_CFG_STRING, "meta", 0, OFF(provider), "meta (WhatsApp Cloud API) or twilio (WhatsApp through Twilio).", 0, 0},
    {"WHATSAPP_API_URL", CMN_CFG_STRING, "https://graph.facebook.com", 0, OFF(api_url), "Base URL of the Graph API (meta; a sandbox in tests).", 0, 0},
    {"WHATSAPP_API_VERSION", CMN_CFG_STRING, "v23.0", 0, OFF(api_version), "Graph API version in the request path (meta).", 0, 0},
    {"WHATSAPP_PHONE_NUMBER_ID", CMN_CFG_STRING, "", 0, OFF(phone_number_id), "Phone-number id of the sending number, from the WhatsApp Manager (meta).", 0, 0},
    {"WHATSAPP_ACCESS_TOKEN", CMN_CFG_STRING, "", 1, OFF(access_token), "System-user access token with whatsapp_business_messaging (meta).", 0, 0},
    {"TWILIO_API_URL", CMN_CFG_STRING, "https://api.twilio.com", 0, OFF(twilio_api_url), "Base URL of the Twilio REST API (twilio; a sandbox in tests).", 0, 0},
    {"TWILIO_ACCOUNT_SID", CMN_CFG_STRING, "", 0, OFF(twilio_account_sid), "Twilio account SID, AC... (twilio).", 0, 0},
    {"TWILIO_AUTH_TOKEN", CMN_CFG_STRING, "", 1, OFF(twilio_auth_token), "Twilio auth token (twilio).", 0, 0},
    {"TWILIO_WHATSAPP_NUMBER", CMN_CFG_STRING, "", 0, OFF(twilio_whatsapp_number), "WhatsApp-enabled Twilio sender, E.164 like +14155552345 (twilio).", 0, 0},
    {"TWILIO_STATUS_CALLBACK_URL", CMN_CFG_STRING, "", 0, OFF(twilio_status_callback_url), "Webhook receiver URL for Twilio status callbacks; empty sends none (twilio).", 0, 0},
    {"DATABASE_URL", CMN_CFG_STRING, NULL, 1, OFF(database_url), "PostgreSQL URL; the conversations table gives the 24-hour window.", 0, 0},
    {"CRM_DATA_KEY", CMN_CFG_STRING, NULL, 1, OFF(data_key), "Secret (32+ characters) keying the phone-number hashes of the conversations table.", 0, 0},
    {"WHATSAPP_TEMPLATES_DIR", CMN_CFG_STRING, WA_DEFAULT_TEMPLATES_DIR, 0, OFF(templates_dir), "Directory of <message_type>/<locale>/whatsapp.txt.mustache and _partials/.", 0, 0},
    {"WHATSAPP_TEMPLATES_FILE", CMN_CFG_STRING, WA_DEFAULT_TEMPLATES_FILE, 0, OFF(templates_file), "Map of message types to approved templates (config/whatsapp_templates.json).", 0, 0},
    {"TEMPLATE_FALLBACK_LOCALE", CMN_CFG_STRING, "en", 0, OFF(fallback_locale), "Locale used when the recipient's has no template.", 0, 0},
    {"WHATSAPP_RATE_PER_SECOND", CMN_CFG_DOUBLE, "80", 0, OFF(rate_per_second), "Messages per second per sender (Meta Cloud API default: 80).", 0.01, 10000},
    {"WHATSAPP_RATE_BURST", CMN_CFG_DOUBLE, "10", 0, OFF(rate_burst), "Messages a sender idle for a while may send at once (a few tokens keep the full rate).", 1, 100000},
    {"WHATSAPP_MAX_IN_FLIGHT", CMN_CFG_INT, "32", 0, OFF(max_in_flight), "Requests running at once.", 1, 1024},
    {"WHATSAPP_BATCH_SIZE", CMN_CFG_INT, "200", 0, OFF(batch_size), "Dispatches consumed per batch (and per conversations query).", 1, 10000},
    {"WHATSAPP_GROUP_ID", CMN_CFG_STRING, "crm-whatsapp-worker", 0, OFF(group_id), "Kafka consumer group.", 0, 0},
    {"KAFKA_SESSION_TIMEOUT_MS", CMN_CFG_INT, "45000", 0, OFF(session_timeout_ms), "Consumer group session timeout: how soon a dead replica's partitions move to a live one.", 6000, 300000},
    {"RETRY_MAX_ATTEMPTS", CMN_CFG_INT, "5", 0, OFF(retry_max_attempts), "Attempts per message on this channel, the first included; after the last, fallback to the next channel of the plan or dead (crm.dlq).", 1, 50},
    {"RETRY_BASE_MS", CMN_CFG_INT, "5000", 0, OFF(retry_base_ms), "First backoff window: the retry after attempt k waits a random time in [0, min(RETRY_CAP_MS, RETRY_BASE_MS * 2^(k-1))], at least the provider's Retry-After.", 1, 86400000},
    {"RETRY_CAP_MS", CMN_CFG_INT, "1800000", 0, OFF(retry_cap_ms), "Largest backoff window (at least RETRY_BASE_MS).", 1, 86400000},
    {"RECEIPT_FALLBACK", CMN_CFG_BOOL, "true", 0, OFF(receipt_fallback), "After `sent`, park the next channel of the plan until the delivery receipt: a failed receipt or a missed deadline sends it (docs/webhooks.md).", 0, 0},
    {"RECEIPT_DEADLINE_CRITICAL_MS", CMN_CFG_INT, "120000", 0, OFF(receipt_deadline_critical_ms), "Critical messages not delivered this long after `sent` go to the next channel; 0: only a failed receipt does.", 0, 604800000},
    {"RECEIPT_DEADLINE_HIGH_MS", CMN_CFG_INT, "600000", 0, OFF(receipt_deadline_high_ms), "The same for high urgency; 0: only a failed receipt.", 0, 604800000},
    {"RECEIPT_DEADLINE_NORMAL_MS", CMN_CFG_INT, "0", 0, OFF(receipt_deadline_normal_ms), "The same for normal urgency; 0: only a failed receipt.", 0, 604800000},
    {"RECEIPT_DEADLINE_LOW_MS", CMN_CFG_INT, "0", 0, OFF(receipt_deadline_low_ms), "The same for low urgency; 0: only a failed receipt.", 0, 604800000},
    {"RECEIPT_CHECK_INTERVAL_MS", CMN_CFG_INT, "15000", 0, OFF(receipt_check_interval_ms), "How often a watch looks for the receipt (the router's RECEIPT_CHECK_INTERVAL_MS should match).", 100, 3600000},
    {"RECEIPT_MAX_WAIT_MS", CMN_CFG_INT, "86400000", 0, OFF(receipt_max_wait_ms), "A watch without a deadline ends after this long without a receipt (the message stays sent).", 1000, 604800000},
    {"WHATSAPP_TIMEOUT_MS", CMN_CFG_INT, "30000", 0, OFF(timeout_ms), "Time limit of one request, connection included.", 100, 600000},
    {"WHATSAPP_WINDOW_MARGIN_SECONDS", CMN_CFG_INT, "60", 0, OFF(window_margin_seconds), "Treat the 24-hour window as closed this much early, so free text never arrives just too late.", 0, 3600},
};

const cmn_cfg_entry_t *wa_worker_config_table(size_t *n)
{
    *n = sizeof CONFIG_TABLE / sizeof CONFIG_TABLE[0];
    return CONFIG_TABLE;
}

wa_provider_t wa_worker_provider(const wa_worker_config_t *cfg)
{
    return cfg->provider != NULL && strcmp(cfg->provider, "twilio") == 0 ? WA_PROVIDER_TWILIO : WA_PROVIDER_META;
}

/* "+14155552345" from "+14155552345" or "14155552345" into out; 0 or -1. */
static int normalize_e164(const char *s, char *out, size_t outlen)
{
    if (s == NULL || s[0] == '\0')
        return -1;
    int n = snprintf(out, outlen, "%s%s", s[0] == '+' ? "" : "+", s);
    return n > 0 && (size_t)n < outlen && cmn_valid_e164(out) ? 0 : -1;
}

static int valid_number_id(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

int wa_worker_config_check(const wa_worker_config_t *cfg, char *errstr, size_t errlen)
{
    char e164[24];
    if (cfg->retry_cap_ms < cfg->retry_base_ms) {
        snprintf(errstr, errlen, "RETRY_CAP_MS: must not be below RETRY_BASE_MS");
        return CMN_ERR_CONFIG;
    }
    if (strcmp(cfg->provider, "meta") != 0 && strcmp(cfg->provider, "twilio") != 0) {
        snprintf(errstr, errlen, "WHATSAPP_PROVIDER: must be meta or twilio");
        return CMN_ERR_CONFIG;
    }
    if (wa_worker_provider(cfg) == WA_PROVIDER_META) {
        if (!wa_valid_http_url(cfg->api_url)) {
            snprintf(errstr, errlen, "WHATSAPP_API_URL: must be an http(s) URL like https://graph.facebook.com");
            return CMN_ERR_CONFIG;
        }
        if (!wa_meta_valid_version(cfg->api_version)) {
            snprintf(errstr, errlen, "WHATSAPP_API_VERSION: must be a Graph API version like v23.0");
            return CMN_ERR_CONFIG;
        }
        if (!valid_number_id(cfg->phone_number_id)) {
            snprintf(errstr, errlen, "WHATSAPP_PHONE_NUMBER_ID: must be the numeric phone-number id of the sender");
            return CMN_ERR_CONFIG;
        }
        if (cfg->access_token[0] == '\0') {
            snprintf(errstr, errlen, "WHATSAPP_ACCESS_TOKEN: required with WHATSAPP_PROVIDER=meta");
            return CMN_ERR_CONFIG;
        }
    } else {
        if (!wa_valid_http_url(cfg->twilio_api_url)) {
            snprintf(errstr, errlen, "TWILIO_API_URL: must be an http(s) URL like https://api.twilio.com");
            return CMN_ERR_CONFIG;
        }
        if (!wa_twilio_valid_sid(cfg->twilio_account_sid, "AC")) {
            snprintf(errstr, errlen, "TWILIO_ACCOUNT_SID: must be AC followed by 32 hex digits");
            return CMN_ERR_CONFIG;
        }
        if (cfg->twilio_auth_token[0] == '\0') {
            snprintf(errstr, errlen, "TWILIO_AUTH_TOKEN: required with WHATSAPP_PROVIDER=twilio");
            return CMN_ERR_CONFIG;
        }
        if (normalize_e164(cfg->twilio_whatsapp_number, e164, sizeof e164) != 0) {
            snprintf(errstr, errlen, "TWILIO_WHATSAPP_NUMBER: must be an E.164 number like +14155552345");
            return CMN_ERR_CONFIG;
        }
        if (cfg->twilio_status_callback_url[0] != '\0' &&
            (!wa_valid_http_url(cfg->twilio_status_callback_url) || strchr(cfg->twilio_status_callback_url, '#'))) {
            snprintf(errstr, errlen, "TWILIO_STATUS_CALLBACK_URL: must be an http(s) URL without a fragment");
            return CMN_ERR_CONFIG;
        }
    }
    /* libpq's own message may quote the URL, password included: not repeated. */
    PQconninfoOption *opts = PQconninfoParse(cfg->database_url, NULL);
    PQconninfoFree(opts);
    if (opts == NULL || cfg->database_url[0] == '\0') {
        snprintf(errstr, errlen, "DATABASE_URL: not a valid PostgreSQL connection URL");
        return CMN_ERR_CONFIG;
    }
    if (strlen(cfg->data_key) < WA_DATA_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_DATA_KEY: must be at least %d characters (e.g. openssl rand -hex 32)",
                 WA_DATA_KEY_MIN);
        return CMN_ERR_CONFIG;
    }
    if (!cmn_valid_locale(cfg->fallback_locale)) {
        snprintf(errstr, errlen, "TEMPLATE_FALLBACK_LOCALE: must be a BCP 47 language tag like en");
        return CMN_ERR_CONFIG;
    }
    return 0;
}

/* ---------------------------------------------------------------- channel */

/* The window of one recipient of the current batch (prepare_batch). */
typedef struct window_entry {
    char *tenant_id;                        /* owned */
    unsigned char hash[WA_PHONE_HASH_LEN];
    int found;
    int64_t last_inbound_ms;
} window_entry_t;

struct wa_channel {
    const wa_worker_config_t *cfg;   /* borrowed */
    const cmn_log_t *log;            /* borrowed */
    wa_provider_t provider;
    wa_tpl_provider_t tpl_provider;
    wa_text_t *text;
    wa_templates_t *templates;
    char *url;                       /* the provider's messages endpoint */
    struct curl_slist *headers;      /* shared by every transfer; the bearer token is in it (meta) */
    char from[24];                   /* twilio: the sender, E.164 */
    const char *sender;              /* rate-limit key: phone-number id or From number */
    int64_t margin_ms;

    PGconn *pg;                      /* NULL until the first lookup, or after a failure */
    int64_t pg_retry_at_ms;          /* monotonic: no new connection attempt before */
    int db_failing;                  /* the last lookup failed (logged once per outage) */

    window_entry_t *batch;           /* windows read by prepare_batch */
    size_t nbatch;
    int batch_ok;                    /* 0: prepare_batch's lookup failed: those windows are unknown */

    cmn_counter_t *window_total[4];  /* by wa_window_state_t */
    cmn_counter_t *queries_total;
    cmn_counter_t *kind_total[2];    /* free-form, template */
};

/* One prepared message: the request body and what prepare decided. */
typedef struct wa_msg {
    CURL *easy;
    char *body;                      /* owned; the request body (JSON or form) */
    size_t body_len;
    char *facts;                     /* owned JSON object text: window, kind, template, language or content_sid */
} wa_msg_t;

static int register_metrics(wa_channel_t *c, cmn_metrics_t *m)
{
    char labels[64];
    if (m == NULL)
        return 0;
    for (int i = WA_WINDOW_UNKNOWN; i <= WA_WINDOW_CLOSED; i++) {
        snprintf(labels, sizeof labels, "window=\"%s\"", wa_window_state_name((wa_window_state_t)i));
        c->window_total[i] = cmn_metrics_counter(m, "whatsapp_window_checks_total",
                                                 "24-hour window checks by outcome.", labels);
        if (c->window_total[i] == NULL)
            return CMN_ERR_NOMEM;
    }
    c->queries_total = cmn_metrics_counter(m, "whatsapp_conversation_queries_total",
                                           "Queries of the conversations table (one per batch when batched).", NULL);
    c->kind_total[0] = cmn_metrics_counter(m, "whatsapp_prepared_total", "Messages prepared, by form.",
                                           "form=\"freeform\"");
    c->kind_total[1] = cmn_metrics_counter(m, "whatsapp_prepared_total", "Messages prepared, by form.",
                                           "form=\"template\"");
    return c->queries_total != NULL && c->kind_total[0] != NULL && c->kind_total[1] != NULL ? 0 : CMN_ERR_NOMEM;
}

/* Appends line to *h; 0 or CMN_ERR_NOMEM (then *h is unchanged). */
static int add_header(struct curl_slist **h, const char *line)
{
    struct curl_slist *n = curl_slist_append(*h, line);
    if (n == NULL)
        return CMN_ERR_NOMEM;
    *h = n;
    return 0;
}

static int build_endpoint(wa_channel_t *c, char *errstr, size_t errlen)
{
    const wa_worker_config_t *cfg = c->cfg;
    cmn_buf_t url = CMN_BUF_INIT, auth = CMN_BUF_INIT;
    struct curl_slist *h = NULL;
    int rc;
    if (c->provider == WA_PROVIDER_META) {
        rc = wa_meta_url(cfg->api_url, cfg->api_version, cfg->phone_number_id, &url);
        c->sender = cfg->phone_number_id;
    } else {
        rc = wa_twilio_url(cfg->twilio_api_url, cfg->twilio_account_sid, &url);
        if (rc == 0 && normalize_e164(cfg->twilio_whatsapp_number, c->from, sizeof c->from) != 0)
            rc = CMN_ERR_INVALID;
        c->sender = c->from;
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "cannot build the provider URL from the configuration");
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    c->url = cmn_buf_steal(&url);
    /* "Expect:" turns off curl's 100-continue round trip for bodies over
     * 1 KiB: the providers answer at once anyway. */
    rc = add_header(&h, "Accept: application/json");
    if (rc == 0)
        rc = add_header(&h, "Expect:");
    if (rc == 0 && c->provider == WA_PROVIDER_META) {
        rc = add_header(&h, "Content-Type: application/json");
        if (rc == 0)
            rc = cmn_buf_printf(&auth, "Authorization: Bearer %s", cfg->access_token) == 0 ? 0 : CMN_ERR_NOMEM;
        if (rc == 0)
            rc = add_header(&h, auth.data);
    } else if (rc == 0) {
        rc = add_header(&h, "Content-Type: application/x-www-form-urlencoded");
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    c->headers = h;
    h = NULL;
cleanup:
    curl_slist_free_all(h);
    if (auth.data != NULL)
        memset(auth.data, 0, auth.len); /* the token: only the header list keeps it */
    cmn_buf_free(&auth);
    cmn_buf_free(&url);
    return rc;
}

wa_channel_t *wa_channel_new(const wa_worker_config_t *cfg, const cmn_log_t *log, cmn_metrics_t *metrics,
                             char *errstr, size_t errlen)
{
    char why[512] = "";
    wa_channel_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->log = log;
    c->provider = wa_worker_provider(cfg);
    c->tpl_provider = c->provider == WA_PROVIDER_META ? WA_TPL_META : WA_TPL_TWILIO;
    c->margin_ms = (int64_t)cfg->window_margin_seconds * 1000;
    c->text = wa_text_new(cfg->templates_dir, WA_TEXT_FILE, cfg->fallback_locale, why, sizeof why);
    if (c->text == NULL) {
        snprintf(errstr, errlen, "WHATSAPP_TEMPLATES_DIR: %s", why);
        goto fail;
    }
    c->templates = wa_templates_load(cfg->templates_file, why, sizeof why);
    if (c->templates == NULL) {
        snprintf(errstr, errlen, "WHATSAPP_TEMPLATES_FILE: %s", why);
        goto fail;
    }
    if (build_endpoint(c, errstr, errlen) != 0)
        goto fail;
    if (register_metrics(c, metrics) != 0) {
        snprintf(errstr, errlen, "cannot register metrics");
        goto fail;
    }
    cmn_log_info(log, NULL, "whatsapp channel: provider %s, %zu free-text templates", cfg->provider,
                 wa_text_count(c->text));
    return c;
fail:
    wa_channel_destroy(c);
    return NULL;
}

static void batch_clear(wa_channel_t *c)
{
    for (size_t i = 0; i < c->nbatch; i++)
        free(c->batch[i].tenant_id);
    free(c->batch);
    c->batch = NULL;
    c->nbatch = 0;
    c->batch_ok = 0;
}

void wa_channel_destroy(wa_channel_t *c)
{
    if (c == NULL)
        return;
    batch_clear(c);
    PQfinish(c->pg);
    curl_slist_free_all(c->headers); /* holds the token: libcurl frees it; nothing else keeps a copy */
    free(c->url);
    wa_templates_destroy(c->templates);
    wa_text_destroy(c->text);
    free(c);
}

/* ------------------------------------------------------------- windows */

/* Runs one conversations query for keys. On failure the connection is
 * dropped and not retried for DB_RETRY_MS, so an outage costs one short
 * wait per interval rather than one per batch. */
static int lookup(wa_channel_t *c, wa_conv_key_t *keys, size_t n)
{
    char why[512] = "";
    int rc = 0;
    int64_t now = cmn_monotonic_ms();
    if (c->pg == NULL && now < c->pg_retry_at_ms)
        return CMN_ERR_UNAVAILABLE;
    PGconn *before = c->pg;
    rc = cmn_pg_ensure(&c->pg, c->cfg->database_url, DB_CONNECT_TIMEOUT_MS, why, sizeof why);
    /* A fresh connection gets the statement time limit: a stuck query must
     * not stall sending any more than a dead server does. */
    if (rc == 0 && c->pg != before)
        rc = cmn_pg_exec(c->pg, DB_STATEMENT_TIMEOUT, why, sizeof why);
    if (rc == 0) {
        if (c->queries_total != NULL)
            cmn_counter_add(c->queries_total, 1);
        rc = wa_conversations_lookup(c->pg, keys, n, why, sizeof why);
    }
    if (rc != 0) {
        /* libpq's messages span lines; a log line must not. */
        for (char *p = why; *p != '\0'; p++) {
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        }
        if (!c->db_failing)
            cmn_log_warn(c->log, NULL, "conversation windows unknown, templates only: %s", why);
        c->db_failing = 1;
        PQfinish(c->pg);
        c->pg = NULL;
        c->pg_retry_at_ms = now + DB_RETRY_MS;
        return rc;
    }
    if (c->db_failing)
        cmn_log_info(c->log, NULL, "conversations readable again");
    c->db_failing = 0;
    return 0;
}

static const char *tenant_of(const cmn_dispatch_t *d)
{
    return d->tenant_id != NULL && d->tenant_id[0] != '\0' ? d->tenant_id : "default";
}

int wa_channel_prepare_batch(void *impl, const cmn_dispatch_t *const *ds, size_t n)
{
    wa_channel_t *c = impl;
    wa_conv_key_t *keys = NULL;
    int rc = 0;
    batch_clear(c);
    if (n == 0)
        return 0;
    keys = calloc(n, sizeof *keys);
    c->batch = calloc(n, sizeof *c->batch);
    if (keys == NULL || c->batch == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const cmn_dispatch_t *d = ds[i];
        if (d == NULL || d->channel != CMN_CHANNEL_WHATSAPP || !cmn_valid_e164(d->to))
            continue; /* prepare refuses these without a window */
        window_entry_t *e = &c->batch[k];
        if (wa_phone_hash(c->cfg->data_key, d->to, e->hash) != 0)
            continue;
        e->tenant_id = strdup(tenant_of(d));
        if (e->tenant_id == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        keys[k].tenant_id = e->tenant_id;
        memcpy(keys[k].hash, e->hash, WA_PHONE_HASH_LEN);
        k++;
        c->nbatch = k;
    }
    rc = k > 0 ? lookup(c, keys, k) : 0;
    for (size_t i = 0; rc == 0 && i < k; i++) {
        c->batch[i].found = keys[i].found;
        c->batch[i].last_inbound_ms = keys[i].last_inbound_ms;
    }
    c->batch_ok = rc == 0;
cleanup:
    free(keys);
    return rc;
}

/* The window of d's recipient: from the batch lookup when there was one,
 * else from a lookup of its own. */
static wa_window_state_t window_of(wa_channel_t *c, const cmn_dispatch_t *d)
{
    wa_conv_key_t key;
    memset(&key, 0, sizeof key);
    key.tenant_id = tenant_of(d);
    if (wa_phone_hash(c->cfg->data_key, d->to, key.hash) != 0)
        return WA_WINDOW_UNKNOWN;
    for (size_t i = 0; i < c->nbatch; i++) {
        const window_entry_t *e = &c->batch[i];
        if (memcmp(e->hash, key.hash, WA_PHONE_HASH_LEN) == 0 && strcmp(e->tenant_id, key.tenant_id) == 0) {
            if (!c->batch_ok)
                return WA_WINDOW_UNKNOWN;
            return wa_window_state(e->found, e->last_inbound_ms, cmn_now_ms(), c->margin_ms);
        }
    }
    if (lookup(c, &key, 1) != 0)
        return WA_WINDOW_UNKNOWN;
    return wa_window_state(key.found, key.last_inbound_ms, cmn_now_ms(), c->margin_ms);
}

/* ------------------------------------------------------------- prepare */

/* The facts kept with the status events of a message: the window, what was
 * sent, and for a template its name and language (Meta) or Content SID
 * (Twilio). */
static char *facts_json(wa_window_state_t state, const char *kind, const char *tpl, const char *variant_key,
                        const char *variant)
{
    cmn_buf_t b = CMN_BUF_INIT;
    json_object *o = json_object_new_object();
    char *out = NULL;
    if (o == NULL)
        return NULL;
    if (cmn_json_add_string(o, "window", wa_window_state_name(state)) == 0 &&
        cmn_json_add_string(o, "kind", kind) == 0 && cmn_json_add_string(o, "template", tpl) == 0 &&
        cmn_json_add_string(o, variant_key, variant) == 0 && cmn_json_to_buf(o, &b) == 0)
        out = cmn_buf_steal(&b);
    cmn_buf_free(&b);
    json_object_put(o);
    return out;
}

/* Builds the free-form request body from the rendered text. */
static int build_freeform(wa_channel_t *c, const cmn_dispatch_t *d, const wa_content_t *content, const char *text,
                          cmn_buf_t *body, char *cb_url, char *why, size_t whylen)
{
    if (c->provider == WA_PROVIDER_META) {
        wa_meta_msg_t m = {.to = d->to + 1, .biz_opaque = d->communication_id, .hop = d->hop, .attempt = d->attempt,
                           .content = content, .text = text};
        return wa_meta_body(&m, body, why, whylen);
    }
    /* Twilio has no free-form interactive messages (they need a Content
     * template), so buttons and lists go out as their text. */
    int media = content->kind == WA_CONTENT_IMAGE || content->kind == WA_CONTENT_DOCUMENT;
    const char *caption = media && content->caption != NULL ? content->caption : text;
    if (media && caption != NULL && wa_utf8_chars(caption) > WA_CAPTION_MAX_CHARS) {
        snprintf(why, whylen, "the caption is longer than %d characters", WA_CAPTION_MAX_CHARS);
        return CMN_ERR_INVALID;
    }
    wa_twilio_msg_t m = {.to = d->to,
                         .from = c->from,
                         .body = caption,
                         .media_url = media ? content->link : NULL,
                         .status_callback = cb_url};
    return wa_twilio_form(&m, body, why, whylen);
}

/* Fills the approved template of tpl_name and builds its request body.
 * *variant gets the language (Meta) or Content SID (Twilio) used, borrowed
 * from the template map. */
static int build_template(wa_channel_t *c, const cmn_dispatch_t *d, const char *tpl_name, const char *locale,
                          json_object *data, cmn_buf_t *body, char *cb_url, const char **variant, char *why,
                          size_t whylen)
{
    int rc;
    if (c->provider == WA_PROVIDER_META) {
        wa_tpl_call_t call;
        rc = wa_templates_meta_call(c->templates, tpl_name, locale, data, &call, why, whylen);
        if (rc == 0) {
            wa_meta_msg_t m = {.to = d->to + 1, .biz_opaque = d->communication_id, .hop = d->hop,
                               .attempt = d->attempt, .tpl = &call};
            *variant = call.language;
            rc = wa_meta_body(&m, body, why, whylen);
        }
        wa_tpl_call_clear(&call);
        return rc;
    }
    wa_tpl_twilio_call_t call;
    rc = wa_templates_twilio_call(c->templates, tpl_name, locale, data, &call, why, whylen);
    if (rc == 0) {
        wa_twilio_msg_t m = {.to = d->to,
                             .from = c->from,
                             .content_sid = call.content_sid,
                             .content_variables = call.variables_json,
                             .status_callback = cb_url};
        *variant = call.content_sid;
        rc = wa_twilio_form(&m, body, why, whylen);
    }
    wa_tpl_twilio_call_clear(&call);
    return rc;
}

static int wa_prepare(void *impl, const cmn_dispatch_t *d, void **msgp, cmn_worker_result_t *res)
{
    wa_channel_t *c = impl;
    wa_content_t content;
    cmn_buf_t text = CMN_BUF_INIT, body = CMN_BUF_INIT, cb = CMN_BUF_INIT;
    json_object *data = NULL;
    wa_msg_t *m = NULL;
    char why[512] = "";
    const char *variant = NULL; /* template language (Meta) or Content SID (Twilio) */
    int rc = 0;

    *msgp = NULL;
    /* The router only addresses valid E.164 numbers; a record written by
     * hand may not, and the number must not reach a log line either way. */
    if (!cmn_valid_e164(d->to)) {
        cmn_worker_result_permanent(res, "invalid_number", "invalid_number", "the WhatsApp address is not E.164");
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    rc = wa_content_parse(d->context, &content, why, sizeof why);
    if (rc != 0) {
        cmn_worker_result_permanent(res, "invalid_whatsapp_context", "invalid_request", "%s", why);
        goto cleanup;
    }
    const char *locale = d->locale != NULL ? d->locale : d->recipient.locale;
    /* An explicit template name wins where it names something of this
     * channel (it may name an email template instead). */
    const char *text_name = d->template_name != NULL && wa_text_has(c->text, d->template_name, locale)
                                ? d->template_name
                                : d->message_type;
    const char *tpl_name = d->template_name != NULL && wa_templates_has(c->templates, d->template_name, c->tpl_provider)
                               ? d->template_name
                               : d->message_type;
    int has_text = wa_text_has(c->text, text_name, locale);
    int has_tpl = wa_templates_has(c->templates, tpl_name, c->tpl_provider);
    wa_window_state_t state = window_of(c, d);
    if (c->window_total[state] != NULL)
        cmn_counter_add(c->window_total[state], 1);
    wa_send_kind_t kind = wa_window_decide(state, content.kind == WA_CONTENT_TEMPLATE, has_text, has_tpl);
    switch (kind) {
    case WA_SEND_FAIL_NO_TEMPLATE:
        cmn_worker_result_permanent(res, "no_template_outside_window", "no_template_outside_window",
                                    "the 24-hour window is %s and %s has no approved template",
                                    state == WA_WINDOW_NONE ? "not open (no inbound message)" : "closed", tpl_name);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    case WA_SEND_FAIL_NOTHING:
        if (content.kind == WA_CONTENT_TEMPLATE)
            cmn_worker_result_permanent(res, "no_template", "no_template", "%s has no approved template", tpl_name);
        else
            cmn_worker_result_permanent(res, "no_template", "no_template",
                                        "%s has no " WA_TEXT_FILE " for the locale and no approved template",
                                        text_name);
        rc = CMN_ERR_NOTFOUND;
        goto cleanup;
    case WA_SEND_RETRY_UNKNOWN:
        cmn_worker_result_retry(res, "window_unknown", 0,
                                "retryable: the 24-hour window could not be read and %s has no approved template",
                                tpl_name);
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    case WA_SEND_FREEFORM:
    case WA_SEND_TEMPLATE:
        break;
    }

    data = wa_text_data_new(d->context, &d->recipient);
    if (data == NULL) {
        cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (c->provider == WA_PROVIDER_TWILIO && c->cfg->twilio_status_callback_url[0] != '\0') {
        rc = wa_twilio_callback_url(c->cfg->twilio_status_callback_url, d->communication_id, d->hop, d->attempt, &cb);
        if (rc != 0) {
            cmn_worker_result_retry(res, "internal_error", 0, "retryable: cannot build the status callback URL");
            goto cleanup;
        }
    }
    if (kind == WA_SEND_FREEFORM) {
        rc = wa_text_render(c->text, text_name, locale, data, &text, why, sizeof why);
        if (rc == 0)
            rc = build_freeform(c, d, &content, text.data, &body, cb.data, why, sizeof why);
        if (rc != 0) {
            if (rc == CMN_ERR_NOMEM)
                cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
            else
                cmn_worker_result_permanent(res, rc == CMN_ERR_TEMPLATE ? "template_error" : "invalid_message",
                                            "invalid_request", "%s", why);
            goto cleanup;
        }
    } else {
        rc = build_template(c, d, tpl_name, locale, data, &body, cb.data, &variant, why, sizeof why);
        if (rc == CMN_ERR_NOMEM) {
            cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
            goto cleanup;
        }
        if (rc == CMN_ERR_NOTFOUND) {
            /* A template without a language for this recipient is no
             * template: the same outcome as having none. */
            const char *code = state == WA_WINDOW_OPEN ? "no_template" : "no_template_outside_window";
            cmn_worker_result_permanent(res, code, code, "%s", why);
            goto cleanup;
        }
        if (rc != 0) {
            cmn_worker_result_permanent(res, "invalid_template_parameter", "invalid_request", "%s", why);
            goto cleanup;
        }
    }

    m = calloc(1, sizeof *m);
    if (m == NULL) {
        cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    int freeform = kind == WA_SEND_FREEFORM;
    /* What actually went out: through Twilio, buttons and lists travel as
     * their text (build_freeform). */
    const char *sent_kind = !freeform ? "template"
                            : c->provider == WA_PROVIDER_TWILIO &&
                                      (content.kind == WA_CONTENT_BUTTONS || content.kind == WA_CONTENT_LIST)
                                ? "text"
                                : wa_content_kind_name(content.kind);
    m->facts = facts_json(state, sent_kind, freeform ? NULL : tpl_name,
                          c->provider == WA_PROVIDER_META ? "language" : "content_sid", variant);
    m->body_len = body.len;
    m->body = cmn_buf_steal(&body);
    if (m->facts != NULL && strlen(m->facts) < sizeof res->details_json)
        snprintf(res->details_json, sizeof res->details_json, "%s", m->facts);
    if (c->kind_total[freeform ? 0 : 1] != NULL)
        cmn_counter_add(c->kind_total[freeform ? 0 : 1], 1);
    cmn_log_debug(c->log, d->communication_id, "prepared whatsapp %s (window %s, %zu bytes)", sent_kind,
                  wa_window_state_name(state), m->body_len);
    *msgp = m;
    m = NULL;
    rc = 0;
cleanup:
    free(m);
    json_object_put(data);
    cmn_buf_free(&cb);
    cmn_buf_free(&text);
    cmn_buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------- transfers */

static const char *wa_sender(void *impl, const void *msg)
{
    const wa_channel_t *c = impl;
    return c->sender;
}

static int wa_submit(void *impl, void *msg, CURL **easy)
{
    wa_channel_t *c = impl;
    wa_msg_t *m = msg;
    long timeout = c->cfg->timeout_ms;
    *easy = NULL;
    if (m->easy == NULL)
        m->easy = curl_easy_init();
    if (m->easy == NULL)
        return CMN_ERR_NOMEM;
    CURL *e = m->easy;
    CURLcode cc = curl_easy_setopt(e, CURLOPT_URL, c->url);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->body);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->body_len);
    /* HTTP/2 over TLS (ALPN), HTTP/1.1 for plain http:// sandboxes: many
     * messages then share one connection to graph.facebook.com. */
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                              timeout < CONNECT_TIMEOUT_MAX_MS ? timeout : (long)CONNECT_TIMEOUT_MAX_MS);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    if (cc == CURLE_OK && c->provider == WA_PROVIDER_TWILIO) {
        cc = curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_USERNAME, c->cfg->twilio_account_sid);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_PASSWORD, c->cfg->twilio_auth_token);
    }
    if (cc != CURLE_OK)
        return CMN_ERR_HTTP;
    *easy = e;
    return 0;
}

/* Rebuilds res->details_json: prepare's facts plus the provider's. */
static void set_details(const wa_msg_t *m, cmn_worker_result_t *res, long http_status, const char *provider_class,
                        const char *trace_id, const char *provider_status)
{
    char why[64];
    cmn_buf_t b = CMN_BUF_INIT;
    json_object *o = m->facts != NULL ? cmn_json_parse(m->facts, strlen(m->facts), why, sizeof why) : NULL;
    if (o == NULL)
        o = json_object_new_object();
    if (o == NULL)
        return;
    if (http_status > 0)
        cmn_json_add_int64(o, "http_status", http_status);
    if (provider_class != NULL)
        cmn_json_add_string(o, "provider_class", provider_class);
    if (trace_id != NULL && trace_id[0] != '\0')
        cmn_json_add_string(o, "fbtrace_id", trace_id);
    if (provider_status != NULL && provider_status[0] != '\0')
        cmn_json_add_string(o, "provider_status", provider_status);
    if (cmn_json_to_buf(o, &b) == 0 && b.len < sizeof res->details_json)
        snprintf(res->details_json, sizeof res->details_json, "%s", b.data);
    cmn_buf_free(&b);
    json_object_put(o);
}

static void classify_error(const wa_channel_t *c, const wa_msg_t *m, const cmn_worker_response_t *r,
                           cmn_worker_result_t *res)
{
    char code[CMN_WORKER_CODE_MAX];
    char text[2 * WA_META_TEXT_MAX + 4] = "";
    const char *trace = NULL;
    long pcode = 0;
    wa_meta_error_t me;
    wa_twilio_error_t te;
    cmn_provider_outcome_t out;
    if (c->provider == WA_PROVIDER_META) {
        if (wa_meta_parse_error(r->body, r->body_len, &me) == 0) {
            pcode = me.code;
            trace = me.fbtrace_id;
            snprintf(text, sizeof text, "%s%s%s", me.message, me.details[0] != '\0' ? ": " : "", me.details);
        }
        out = cmn_provider_classify_meta((int)r->status, pcode);
    } else {
        if (wa_twilio_parse_error(r->body, r->body_len, &te) == 0) {
            pcode = te.code;
            snprintf(text, sizeof text, "%s", te.message);
        }
        out = cmn_provider_classify_twilio((int)r->status, pcode);
    }
    if (pcode != 0)
        snprintf(code, sizeof code, "%ld", pcode);
    else
        snprintf(code, sizeof code, "http_%ld", r->status);
    if (text[0] == '\0')
        snprintf(text, sizeof text, "HTTP %ld without a provider error body", r->status);
    if (cmn_provider_class_is_retryable(out.cls))
        cmn_worker_result_retry(res, code, r->retry_after_ms > 0 ? r->retry_after_ms : 0, "retryable: %s", text);
    else
        cmn_worker_result_permanent(res, code, out.reason, "%s", text);
    set_details(m, res, r->status, cmn_provider_class_name(out.cls), trace, NULL);
}

static void wa_classify(void *impl, void *msg, const cmn_worker_response_t *r, cmn_worker_result_t *res)
{
    const wa_channel_t *c = impl;
    const wa_msg_t *m = msg;
    char id[CMN_WORKER_ID_MAX], status[64];
    if (r->code != CURLE_OK) {
        /* No answer: the provider may or may not have the message; a retry
         * may duplicate it, which is the at-least-once side we choose. */
        cmn_worker_result_retry(res, r->code == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network_error", 0,
                                "retryable: %s", curl_easy_strerror(r->code));
        set_details(m, res, 0, NULL, NULL, NULL);
        return;
    }
    if (r->status >= 200 && r->status < 300) {
        int rc = c->provider == WA_PROVIDER_META
                     ? wa_meta_parse_success(r->body, r->body_len, id, sizeof id, status, sizeof status)
                     : wa_twilio_parse_created(r->body, r->body_len, id, sizeof id, status, sizeof status);
        if (rc != 0) {
            /* Accepted or not, we cannot tell; another attempt shows. */
            cmn_worker_result_retry(res, "invalid_response", 0,
                                    "retryable: HTTP %ld without a message id in the response", r->status);
            set_details(m, res, r->status, NULL, NULL, NULL);
            return;
        }
        if (status[0] != '\0')
            cmn_worker_result_sent(res, id, "provider_status: %s", status);
        else
            cmn_worker_result_sent(res, id, NULL);
        set_details(m, res, r->status, NULL, NULL, status);
        return;
    }
    classify_error(c, m, r, res);
}

static void wa_release(void *impl, void *msg)
{
    wa_msg_t *m = msg;
    if (m == NULL)
        return;
    if (m->easy != NULL)
        curl_easy_cleanup(m->easy);
    free(m->body);
    free(m->facts);
    free(m);
}

void wa_channel_bind(wa_channel_t *c, cmn_worker_channel_t *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->name = "whatsapp";
    ch->channel = CMN_CHANNEL_WHATSAPP;
    ch->provider = c->provider == WA_PROVIDER_META ? "meta" : "twilio";
    ch->impl = c;
    ch->capture_response = 1;
    ch->prepare = wa_prepare;
    ch->sender = wa_sender;
    ch->submit = wa_submit;
    ch->classify = wa_classify;
    ch->release = wa_release;
}
