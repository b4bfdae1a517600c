/* wh_server.c - the HTTP, Kafka and PostgreSQL adapter of the webhook
 * receiver (see wh_server.h). The decisions live in the pure modules
 * (wh_sig, wh_twilio, wh_meta, wh_status, wh_optout, wh_track); this file
 * only moves bytes between them, the network and the stores. */
#include "wh_server.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crm/crypto.h"
#include "crm/err.h"
#include "crm/http.h"
#include "crm/inbound.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/preferences.h"
#include "crm/request.h"
#include "crm/signal.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/track.h"
#include "wh_db.h"
#include "wh_form.h"
#include "wh_meta.h"
#include "wh_optout.h"
#include "wh_sig.h"
#include "wh_status.h"
#include "wh_track.h"
#include "wh_twilio.h"

#define WH_SERVICE "webhook-receiver"
#define WH_CLIENT_ID "crm-webhook-receiver"
#define WH_RETRY_AFTER_S 5
#define WH_HTTP_IDLE_TIMEOUT_S 30
#define WH_RUN_TICK_MS 100
#define WH_PUBLIC_URL_MAX 512

#define OFF(f) offsetof(wh_config_t, f)
static const cmn_cfg_entry_t CONFIG_TABLE[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "127.0.0.1:9092", 0, OFF(kafka_brokers),
     "Kafka bootstrap servers (host:port,...).", 0, 0},
    {"DATABASE_URL", CMN_CFG_STRING, NULL, 1, OFF(database_url),
     "PostgreSQL of the projections: client_contacts and client_preferences for opt-outs, conversations for the "
     "WhatsApp window.",
     0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, OFF(http_bind), "IP address the webhooks listen on.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "8086", 0, OFF(http_port),
     "TCP port of the webhooks and of /metrics, /healthz, /readyz (0 picks a free port).", 0, 65535},
    {"HTTP_THREADS", CMN_CFG_INT, "8", 0, OFF(http_threads),
     "HTTP worker threads; each webhook holds one while it waits for Kafka.", 1, 1024},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, OFF(log_level), "debug, info, warn or error.", 0, 0},
    {"WEBHOOK_PUBLIC_URL", CMN_CFG_STRING, NULL, 0, OFF(public_url),
     "Public base URL the providers call (e.g. https://hooks.example.com); Twilio signs it, so behind a proxy "
     "it is the outside URL.",
     0, 0},
    {"TWILIO_AUTH_TOKEN", CMN_CFG_STRING, "", 1, OFF(twilio_auth_token),
     "Twilio auth token that signs X-Twilio-Signature; empty refuses every Twilio webhook (403).", 0, 0},
    {"WHATSAPP_APP_SECRET", CMN_CFG_STRING, "", 1, OFF(meta_app_secret),
     "Meta app secret that signs X-Hub-Signature-256; empty refuses every Meta POST (403).", 0, 0},
    {"WHATSAPP_WEBHOOK_VERIFY_TOKEN", CMN_CFG_STRING, "", 1, OFF(meta_verify_token),
     "Token Meta's subscription check must present (hub.verify_token); empty refuses the check.", 0, 0},
    {"CRM_DATA_KEY", CMN_CFG_STRING, NULL, 1, OFF(data_key),
     "Key of the address hashes (32+ characters; the same as the router's and the projector's).", 0, 0},
    {"CRM_TRACKING_KEY", CMN_CFG_STRING, "", 1, OFF(tracking_key),
     "Key of the email tracking tokens (32+ characters; the email worker's); empty disables /t/ and /u/.", 0, 0},
    {"CRM_TRACKING_KEY_PREVIOUS", CMN_CFG_STRING, "", 1, OFF(tracking_key_previous),
     "The tracking key before a rotation, still accepted for old links; empty: none.", 0, 0},
    {"SMS_HELP_TEXT", CMN_CFG_STRING, "Reply STOP to unsubscribe, START to subscribe again.", 0, OFF(help_text),
     "The answer to HELP on Twilio (SMS and WhatsApp), sent as TwiML.", 0, 0},
    {"TENANT_ID", CMN_CFG_STRING, "default", 0, OFF(tenant_id),
     "Tenant of the provider webhooks this receiver serves (email tracking tokens carry their own).", 0, 0},
    {"WEBHOOK_MAX_BODY_BYTES", CMN_CFG_INT, "1048576", 0, OFF(max_body_bytes),
     "Largest webhook body accepted (413 past it).", 1024, 67108864},
    {"WEBHOOK_KAFKA_TIMEOUT_MS", CMN_CFG_INT, "10000", 0, OFF(kafka_timeout_ms),
     "How long a webhook waits for Kafka acknowledgements before answering 503.", 100, 300000},
    {"WEBHOOK_DB_POOL_SIZE", CMN_CFG_INT, "4", 0, OFF(db_pool_size),
     "PostgreSQL connections shared by the HTTP threads.", 1, 256},
    {"WEBHOOK_DB_TIMEOUT_MS", CMN_CFG_INT, "5000", 0, OFF(db_timeout_ms),
     "How long a webhook waits for PostgreSQL (connection and query slot) before answering 503.", 100, 300000},
};
#undef OFF

const cmn_cfg_entry_t *wh_config_table(size_t *n)
{
    if (n != NULL)
        *n = sizeof CONFIG_TABLE / sizeof CONFIG_TABLE[0];
    return CONFIG_TABLE;
}

int wh_config_check(const wh_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_log_t probe;
    cmn_buf_t a = CMN_BUF_INIT, b = CMN_BUF_INIT;
    int rc = 0;
    if (cfg == NULL)
        return CMN_ERR_INVALID;
    if (cmn_log_init(&probe, WH_SERVICE, cfg->log_level) != 0) {
        snprintf(errstr, errlen, "LOG_LEVEL: must be debug, info, warn or error");
        return CMN_ERR_CONFIG;
    }
    const char *url = cfg->public_url;
    if (url == NULL || strlen(url) > WH_PUBLIC_URL_MAX || strpbrk(url, "?# \t\r\n") != NULL ||
        wh_sig_url_variants(url, &a, &b) != 0) {
        snprintf(errstr, errlen, "WEBHOOK_PUBLIC_URL: must be an http(s) URL without query or fragment");
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    if (cfg->data_key == NULL || strlen(cfg->data_key) < CMN_DATA_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_DATA_KEY: must be at least %d characters", CMN_DATA_KEY_MIN);
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    if (cfg->tracking_key != NULL && cfg->tracking_key[0] != '\0' && strlen(cfg->tracking_key) < CMN_TRACK_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_TRACKING_KEY: must be at least %d characters", CMN_TRACK_KEY_MIN);
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    if (cfg->tracking_key_previous != NULL && cfg->tracking_key_previous[0] != '\0' &&
        strlen(cfg->tracking_key_previous) < CMN_TRACK_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_TRACKING_KEY_PREVIOUS: must be at least %d characters", CMN_TRACK_KEY_MIN);
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    char key[CMN_PREFS_KEY_MAX];
    if (cmn_preferences_key(cfg->tenant_id, "probe", key, sizeof key) != 0) {
        snprintf(errstr, errlen, "TENANT_ID: must be an id (1-128 printable characters) without ':'");
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    /* libpq's parse error may quote the URL (and its password): only the
     * verdict is reported. */
    PQconninfoOption *opts = PQconninfoParse(cfg->database_url, NULL);
    if (opts == NULL) {
        snprintf(errstr, errlen, "DATABASE_URL: not a valid PostgreSQL connection URL");
        rc = CMN_ERR_CONFIG;
        goto out;
    }
    PQconninfoFree(opts);
out:
    cmn_buf_free(&a);
    cmn_buf_free(&b);
    return rc;
}

/* --------------------------------------------------------------- context */

typedef enum wh_endpoint {
    EP_TWILIO_STATUS = 0,
    EP_TWILIO_INBOUND,
    EP_META_VERIFY,
    EP_META_EVENTS,
    EP_OPEN,
    EP_CLICK,
    EP_UNSUB_PAGE,
    EP_UNSUB,
    EP__COUNT
} wh_endpoint_t;

static const char *const EP_NAMES[EP__COUNT] = {"twilio_status", "twilio_inbound", "meta_verify", "meta_events",
                                                "email_open",    "email_click",    "unsubscribe_page",
                                                "unsubscribe"};

typedef enum wh_result {
    RES_ACCEPTED = 0, /* something was produced (or answered) */
    RES_IGNORED,      /* valid, but nothing to produce (queued, a system message) */
    RES_FORBIDDEN,    /* 403: bad or missing signature or token */
    RES_INVALID,      /* 4xx: malformed */
    RES_UNAVAILABLE,  /* 503: Kafka or PostgreSQL did not answer */
    RES__COUNT
} wh_result_t;

static const char *const RES_NAMES[RES__COUNT] = {"accepted", "ignored", "forbidden", "invalid", "unavailable"};

struct wh_ctx {
    const wh_config_t *cfg;          /* borrowed */
    cmn_log_t log;
    cmn_metrics_t *metrics;          /* owned */
    cmn_kafka_producer_t *producer;  /* owned */
    wh_db_t *db;                     /* owned */
    cmn_http_server_t *http;         /* owned */
    atomic_int accepting;            /* 0 until serving and again once stopping */
    char public_url[WH_PUBLIC_URL_MAX + 1]; /* WEBHOOK_PUBLIC_URL without trailing '/' */
    char timeout_prop[64];
    const char *kafka_extra[2];
    cmn_counter_t *requests[EP__COUNT][RES__COUNT]; /* owned by metrics */
};

static void count(wh_ctx_t *ctx, wh_endpoint_t ep, wh_result_t res)
{
    cmn_counter_add(ctx->requests[ep][res], 1);
}

static int wh_ready(void *arg)
{
    wh_ctx_t *ctx = arg;
    return ctx->producer != NULL && atomic_load(&ctx->accepting) ? 1 : 0;
}

/* ------------------------------------------------------------- outputs */

/* Everything one webhook produces, acknowledged together. */
typedef struct wh_out {
    cmn_kafka_batch_t batch;
    char traceparent[56];
    size_t n;
    int rc; /* first produce error */
} wh_out_t;

static int out_init(wh_out_t *o)
{
    memset(o, 0, sizeof *o);
    if (cmn_kafka_traceparent_new(o->traceparent) != 0)
        o->traceparent[0] = '\0';
    return cmn_kafka_batch_init(&o->batch);
}

static int emit(wh_ctx_t *ctx, wh_out_t *o, const char *topic, const char *key, const cmn_buf_t *value)
{
    cmn_kafka_header_t hdr = {CMN_HDR_TRACEPARENT, o->traceparent, strlen(o->traceparent)};
    int rc = cmn_kafka_produce_in_batch(ctx->producer, &o->batch, topic, key, strlen(key), value->data, value->len,
                                        &hdr, o->traceparent[0] != '\0' ? 1 : 0);
    if (rc == 0)
        o->n++;
    else if (o->rc == 0)
        o->rc = rc;
    return rc;
}

/* Waits for every acknowledgement and frees the batch. */
static int out_finish(wh_ctx_t *ctx, wh_out_t *o, char *errstr, size_t errlen)
{
    int rc = o->rc;
    if (rc != 0)
        snprintf(errstr, errlen, "produce: %s", cmn_strerror(rc));
    if (rc == 0 && o->n > 0)
        rc = cmn_kafka_batch_wait(&o->batch, (int)ctx->cfg->kafka_timeout_ms, errstr, errlen);
    /* Safe with messages still in flight: their delivery reports release
     * the batch. */
    cmn_kafka_batch_destroy(&o->batch);
    return rc;
}

static void unavailable(wh_ctx_t *ctx, wh_endpoint_t ep, const char *what, const char *err,
                        cmn_http_response_t *resp)
{
    count(ctx, ep, RES_UNAVAILABLE);
    cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"endpoint", EP_NAMES[ep], "error", err, NULL},
              "%s; answering 503", what);
    cmn_buf_reset(&resp->body);
    cmn_http_problem(resp, 503, NULL, "The event could not be stored in time; retry later.", NULL);
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n", WH_RETRY_AFTER_S);
}

/* A 4xx problem naming the field of a "field: reason" message. */
static void refuse(wh_ctx_t *ctx, wh_endpoint_t ep, int status, const char *detail, cmn_http_response_t *resp)
{
    json_object *errors = json_object_new_array();
    char field[128];
    const char *colon = strstr(detail, ": ");
    count(ctx, ep, status == 403 ? RES_FORBIDDEN : RES_INVALID);
    if (errors != NULL && colon != NULL) {
        json_object *e = json_object_new_object();
        snprintf(field, sizeof field, "%.*s", (int)(colon - detail), detail);
        if (e != NULL && cmn_json_add_string(e, "field", field) == 0 &&
            cmn_json_add_string(e, "reason", colon + 2) == 0)
            json_object_array_add(errors, e);
        else
            json_object_put(e);
    }
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"endpoint", EP_NAMES[ep], NULL}, "refused (%d): %s",
              status, detail);
    cmn_http_problem(resp, status, NULL, detail, errors);
    json_object_put(errors);
}

static void forbidden(wh_ctx_t *ctx, wh_endpoint_t ep, const char *detail, cmn_http_response_t *resp)
{
    count(ctx, ep, RES_FORBIDDEN);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"endpoint", EP_NAMES[ep], NULL}, "forbidden: %s",
              detail);
    cmn_http_problem(resp, 403, NULL, detail, NULL);
}

/* --------------------------------------------------------- shared steps */

/* Produces one receipt's StatusEvent, after tying it to its communication
 * through PostgreSQL when the webhook carried no id (or no hop). Returns 1
 * when an event was produced, 0 when the status is ignored, or a negative
 * code. */
static int emit_receipt(wh_ctx_t *ctx, wh_out_t *o, wh_receipt_t *r)
{
    cmn_status_event_t ev;
    cmn_buf_t details = CMN_BUF_INIT, value = CMN_BUF_INIT;
    char err[256] = "";
    int rc;

    if (!wh_status_map(r->provider_status, NULL, NULL))
        return 0;
    if (r->communication_id[0] == '\0' || r->hop < 0) {
        char id[CMN_UUID_STR_LEN + 1];
        int hop = -1, attempt = -1;
        rc = wh_db_find_message(ctx->db, r->provider_message_id, id, &hop, &attempt, err, sizeof err);
        if (rc == 0 && (r->communication_id[0] == '\0' || strcmp(r->communication_id, id) == 0)) {
            memcpy(r->communication_id, id, sizeof id);
            r->hop = hop;
            r->attempt = attempt;
        } else if (rc < 0) {
            /* Not fatal: the event goes out keyed by the provider message
             * id and the projector ties it to its communication. */
            cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL},
                      "cannot look up a provider message id");
        }
    }
    rc = wh_status_build(r, ctx->cfg->tenant_id, &ev, &details);
    if (rc == 1) {
        int prc = cmn_status_event_to_json(&ev, &value);
        if (prc == 0)
            prc = emit(ctx, o, CMN_TOPIC_STATUS, wh_status_key(&ev), &value);
        if (prc == 0)
            cmn_logkv(&ctx->log, CMN_LOG_DEBUG, ev.communication_id[0] != '\0' ? ev.communication_id : NULL,
                      (const char *[]){"provider_message_id", r->provider_message_id, "status",
                                       cmn_status_name(ev.status), NULL},
                      "receipt");
        rc = prc != 0 ? prc : 1;
    }
    cmn_buf_free(&details);
    cmn_buf_free(&value);
    return rc;
}

/* Produces one client's snapshot changed by change. The stored snapshot
 * may lag a change still on its way through the projector; the opt-out
 * itself is never lost, because it is written whatever was read. */
static int emit_client_optout_one(wh_ctx_t *ctx, wh_out_t *o, const char *tenant_id, const char *client_id,
                                  const wh_optout_change_t *change, char *errstr, size_t errlen)
{
    cmn_buf_t stored = CMN_BUF_INIT, value = CMN_BUF_INIT;
    char key[CMN_PREFS_KEY_MAX];
    int stored_ok = 0;
    int rc = wh_db_snapshot(ctx->db, tenant_id, client_id, &stored, errstr, errlen);
    if (rc < 0)
        goto out;
    rc = wh_optout_apply(rc == 0 ? stored.data : NULL, tenant_id, client_id, change, cmn_now_ms(), &value,
                         &stored_ok);
    if (rc == 0)
        rc = cmn_preferences_key(tenant_id, client_id, key, sizeof key);
    if (rc == 0)
        rc = emit(ctx, o, CMN_TOPIC_PREFERENCES, key, &value);
    if (rc != 0) {
        snprintf(errstr, errlen, "preferences of a client: %s", cmn_strerror(rc));
        goto out;
    }
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL,
              (const char *[]){"key", key, "channel", change->all_channels ? "all" : cmn_channel_name(change->channel),
                               NULL},
              "%s", change->opt_out ? "opted out" : "opted back in");
out:
    cmn_buf_free(&stored);
    cmn_buf_free(&value);
    return rc;
}

/* Produces the preference snapshots of every client of address (phone or
 * email) on channels, changed by change, read from client_preferences.
 * Returns 0 or a negative code with the reason in errstr. */
static int emit_optout(wh_ctx_t *ctx, wh_out_t *o, const char *tenant_id, const char *address,
                       const char *const *channels, const wh_optout_change_t *change, size_t *n_clients,
                       char *errstr, size_t errlen)
{
    unsigned char hash[CMN_ADDRESS_HASH_LEN];
    char **ids = NULL;
    size_t n = 0;
    int rc = cmn_crypto_address_hash(ctx->cfg->data_key, address, hash);
    *n_clients = 0;
    if (rc == 0)
        rc = wh_db_clients(ctx->db, tenant_id, channels, hash, &ids, &n, errstr, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = emit_client_optout_one(ctx, o, tenant_id, ids[i], change, errstr, errlen);
        if (rc == 0)
            (*n_clients)++;
    }
    wh_db_ids_free(ids, n);
    return rc;
}

static const char *const PHONE_CHANNELS[] = {"sms", "whatsapp", NULL};

/* Everything an inbound message causes: the preference change of a STOP or
 * START, the WhatsApp window, and the InboundMessage itself. Returns 0 or a
 * negative code with the reason in errstr (then the webhook answers 503 and
 * the provider's retry does it all again, idempotently). */
static int emit_inbound(wh_ctx_t *ctx, wh_out_t *o, const cmn_inbound_t *m, char *errstr, size_t errlen)
{
    cmn_buf_t value = CMN_BUF_INIT;
    char key[CMN_REQ_MAX_ID + 64];
    int rc = 0;

    if (m->keyword == CMN_KEYWORD_STOP || m->keyword == CMN_KEYWORD_START) {
        wh_optout_change_t change = {
            .opt_out = m->keyword == CMN_KEYWORD_STOP,
            .all_channels = m->keyword == CMN_KEYWORD_STOP && wh_optout_is_all(m->body),
            .channel = m->channel,
        };
        size_t n = 0;
        rc = emit_optout(ctx, o, m->tenant_id, m->from, PHONE_CHANNELS, &change, &n, errstr, errlen);
        if (rc != 0)
            goto out;
        if (n == 0)
            cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"provider_message_id", m->provider_message_id,
                                                                      "channel", cmn_channel_name(m->channel), NULL},
                      "%s from a number of no known client", m->keyword == CMN_KEYWORD_STOP ? "stop" : "start");
    }
    if (m->channel == CMN_CHANNEL_WHATSAPP) {
        unsigned char hash[CMN_ADDRESS_HASH_LEN];
        char err[256] = "";
        int wrc = cmn_crypto_address_hash(ctx->cfg->data_key, m->from, hash);
        if (wrc == 0)
            wrc = wh_db_open_window(ctx->db, m->tenant_id, hash, m->received_at_ms, err, sizeof err);
        /* The projector opens the window from crm.inbound too; this write
         * only makes it open sooner, so a failure is a warning. */
        if (wrc != 0)
            cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL},
                      "cannot open the WhatsApp window now; the projector will");
    }
    rc = cmn_inbound_to_json(m, &value);
    if (rc == 0)
        rc = cmn_inbound_key(m, key, sizeof key);
    if (rc == 0)
        rc = emit(ctx, o, CMN_TOPIC_INBOUND, key, &value);
    if (rc != 0)
        snprintf(errstr, errlen, "inbound message: %s", cmn_strerror(rc));
out:
    cmn_buf_free(&value);
    return rc;
}

/* ---------------------------------------------------------------- Twilio */

/* The URL Twilio requested, as it signed it: the public base URL, the
 * path, and the query. */
static int signed_url(wh_ctx_t *ctx, const cmn_http_request_t *req, cmn_buf_t *url)
{
    cmn_buf_t query = CMN_BUF_INIT;
    int rc = cmn_http_request_query_string(req, &query);
    if (rc == 0)
        rc = cmn_buf_printf(url, "%s%s", ctx->public_url, req->path);
    if (rc == 0 && query.len > 0)
        rc = cmn_buf_printf(url, "?%s", query.data);
    cmn_buf_free(&query);
    return rc;
}

/* Reads Twilio's parameters: a form body, or a JSON object whose string
 * members are taken as the parameters (the bodySHA256 variant). Returns 0,
 * 415 or 400 (with errstr). */
static int twilio_params(const cmn_http_request_t *req, wh_form_t *form, char *errstr, size_t errlen)
{
    const char *ct = cmn_http_request_header(req, "Content-Type");
    if (ct != NULL && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
        if (wh_form_parse(req->body, req->body_len, form) != 0) {
            snprintf(errstr, errlen, "body: not a valid application/x-www-form-urlencoded form");
            return 400;
        }
        return 0;
    }
    if (ct != NULL && strncasecmp(ct, "application/json", 16) == 0) {
        char jerr[128];
        json_object *obj = cmn_json_parse(req->body, req->body_len, jerr, sizeof jerr);
        int status = 0;
        if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
            snprintf(errstr, errlen, "body: must be a JSON object");
            status = 400;
        } else {
            json_object_object_foreach(obj, name, val)
            {
                if (json_object_is_type(val, json_type_object) || json_object_is_type(val, json_type_array))
                    continue;
                if (wh_form_add(form, name, json_object_get_string(val)) != 0) {
                    snprintf(errstr, errlen, "body: too many members");
                    status = 400;
                    break;
                }
            }
        }
        json_object_put(obj);
        return status;
    }
    snprintf(errstr, errlen, "Content-Type: must be application/x-www-form-urlencoded");
    return 415;
}

/* Parses and authenticates a Twilio webhook. Returns 0 with form filled,
 * or answers resp and returns -1. */
static int twilio_accept(wh_ctx_t *ctx, wh_endpoint_t ep, const cmn_http_request_t *req, wh_form_t *form,
                         wh_form_t *query, cmn_http_response_t *resp)
{
    cmn_buf_t url = CMN_BUF_INIT;
    char err[256];
    int status = twilio_params(req, form, err, sizeof err);
    int result = -1;
    const char *signature = cmn_http_request_header(req, "X-Twilio-Signature");

    /* The signature first: nothing about an unsigned request is worth a
     * more precise answer than 403. */
    if (signature == NULL || signature[0] == '\0') {
        forbidden(ctx, ep, "X-Twilio-Signature is missing.", resp);
        goto out;
    }
    if (status != 0) {
        refuse(ctx, ep, status, err, resp);
        goto out;
    }
    if (signed_url(ctx, req, &url) != 0) {
        cmn_http_problem(resp, 500, NULL, "The server could not process the request.", NULL);
        goto out;
    }
    if (ctx->cfg->twilio_auth_token[0] == '\0' ||
        !wh_sig_twilio_valid(ctx->cfg->twilio_auth_token, url.data, form, req->body, req->body_len, signature)) {
        forbidden(ctx, ep, "X-Twilio-Signature does not match this request.", resp);
        goto out;
    }
    const char *q = strchr(url.data, '?');
    if (q != NULL && wh_form_parse(q + 1, strlen(q + 1), query) != 0) {
        refuse(ctx, ep, 400, "query: malformed", resp);
        goto out;
    }
    result = 0;
out:
    cmn_buf_free(&url);
    return result;
}

static void twilio_status(wh_ctx_t *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    wh_form_t form = {0}, query = {0};
    wh_receipt_t r;
    wh_out_t o;
    char err[320] = "";

    if (twilio_accept(ctx, EP_TWILIO_STATUS, req, &form, &query, resp) != 0)
        goto out;
    if (wh_twilio_status_parse(&form, &query, cmn_now_ms(), &r, err, sizeof err) != 0) {
        refuse(ctx, EP_TWILIO_STATUS, 400, err, resp);
        goto out;
    }
    if (out_init(&o) != 0) {
        unavailable(ctx, EP_TWILIO_STATUS, "cannot start a Kafka batch", "out of memory", resp);
        goto out;
    }
    int rc = emit_receipt(ctx, &o, &r);
    int frc = out_finish(ctx, &o, err, sizeof err);
    if (rc < 0 || frc != 0) {
        unavailable(ctx, EP_TWILIO_STATUS, "kafka did not acknowledge a receipt", err, resp);
        goto out;
    }
    count(ctx, EP_TWILIO_STATUS, rc == 1 ? RES_ACCEPTED : RES_IGNORED);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain; charset=utf-8");
out:
    wh_form_clear(&form);
    wh_form_clear(&query);
}

static void twilio_inbound(wh_ctx_t *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    wh_form_t form = {0}, query = {0};
    cmn_inbound_t m;
    wh_out_t o;
    char err[320] = "";

    memset(&m, 0, sizeof m);
    if (twilio_accept(ctx, EP_TWILIO_INBOUND, req, &form, &query, resp) != 0)
        goto out;
    int rc = wh_twilio_inbound_parse(&form, ctx->cfg->tenant_id, cmn_now_ms(), &m, err, sizeof err);
    if (rc == CMN_ERR_INVALID) {
        refuse(ctx, EP_TWILIO_INBOUND, 400, err, resp);
        goto out;
    }
    if (rc == 0)
        rc = out_init(&o);
    if (rc != 0) {
        unavailable(ctx, EP_TWILIO_INBOUND, "cannot read an inbound message", cmn_strerror(rc), resp);
        goto out;
    }
    rc = emit_inbound(ctx, &o, &m, err, sizeof err);
    char ferr[256] = "";
    int frc = out_finish(ctx, &o, ferr, sizeof ferr);
    if (rc != 0 || frc != 0) {
        unavailable(ctx, EP_TWILIO_INBOUND, "an inbound message could not be stored", rc != 0 ? err : ferr, resp);
        goto out;
    }
    /* HELP is answered here, in the reply to the webhook; STOP and START
     * are confirmed by Twilio itself (Advanced Opt-Out) or the carrier, so
     * the reply is empty for them and for everything else. */
    if (wh_twilio_twiml(m.keyword == CMN_KEYWORD_HELP ? ctx->cfg->help_text : NULL, &resp->body) != 0) {
        cmn_http_problem(resp, 500, NULL, "The message was stored but the answer could not be built.", NULL);
        goto out;
    }
    count(ctx, EP_TWILIO_INBOUND, RES_ACCEPTED);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/xml; charset=utf-8");
out:
    cmn_inbound_clear(&m);
    wh_form_clear(&form);
    wh_form_clear(&query);
}

/* ------------------------------------------------------------------ Meta */

static void meta_verify(wh_ctx_t *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    const char *challenge = NULL, *field = NULL;
    char detail[128];
    int status = wh_meta_verify(cmn_http_request_query(req, "hub.mode"), cmn_http_request_query(req, "hub.verify_token"),
                                cmn_http_request_query(req, "hub.challenge"), ctx->cfg->meta_verify_token,
                                &challenge, &field);
    if (status == 400) {
        snprintf(detail, sizeof detail, "%s: is required (printable, at most 256 characters)", field);
        refuse(ctx, EP_META_VERIFY, 400, detail, resp);
        return;
    }
    if (status != 200) {
        forbidden(ctx, EP_META_VERIFY, "The verify token does not match.", resp);
        return;
    }
    count(ctx, EP_META_VERIFY, RES_ACCEPTED);
    cmn_buf_puts(&resp->body, challenge);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain; charset=utf-8");
}

static void meta_events(wh_ctx_t *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    wh_meta_batch_t b;
    wh_out_t o;
    char err[320] = "", ferr[256] = "";
    size_t produced = 0;
    int rc = 0;

    memset(&b, 0, sizeof b);
    const char *signature = cmn_http_request_header(req, "X-Hub-Signature-256");
    if (signature == NULL || signature[0] == '\0') {
        forbidden(ctx, EP_META_EVENTS, "X-Hub-Signature-256 is missing.", resp);
        return;
    }
    if (!wh_sig_meta_valid(ctx->cfg->meta_app_secret, req->body, req->body_len, signature)) {
        forbidden(ctx, EP_META_EVENTS, "X-Hub-Signature-256 does not match the body.", resp);
        return;
    }
    rc = wh_meta_parse(req->body, req->body_len, ctx->cfg->tenant_id, &b, err, sizeof err);
    if (rc == CMN_ERR_INVALID) {
        refuse(ctx, EP_META_EVENTS, 400, err, resp);
        return;
    }
    if (rc == 0)
        rc = out_init(&o);
    if (rc != 0) {
        unavailable(ctx, EP_META_EVENTS, "cannot read a Meta webhook", cmn_strerror(rc), resp);
        wh_meta_batch_clear(&b);
        return;
    }
    for (size_t i = 0; rc == 0 && i < b.n_receipts; i++) {
        int erc = emit_receipt(ctx, &o, &b.receipts[i]);
        if (erc < 0) {
            rc = erc;
            snprintf(err, sizeof err, "receipt: %s", cmn_strerror(erc));
        }
        produced += erc == 1 ? 1 : 0;
    }
    for (size_t i = 0; rc == 0 && i < b.n_messages; i++) {
        rc = emit_inbound(ctx, &o, &b.messages[i], err, sizeof err);
        produced += rc == 0 ? 1 : 0;
    }
    int frc = out_finish(ctx, &o, ferr, sizeof ferr);
    if (rc != 0 || frc != 0) {
        unavailable(ctx, EP_META_EVENTS, "a Meta webhook could not be stored", rc != 0 ? err : ferr, resp);
    } else {
        count(ctx, EP_META_EVENTS, produced > 0 ? RES_ACCEPTED : RES_IGNORED);
        resp->status = 200;
        snprintf(resp->content_type, sizeof resp->content_type, "text/plain; charset=utf-8");
    }
    wh_meta_batch_clear(&b);
}

/* ------------------------------------------------------- email tracking */

/* Parses a token with the current key, then with the previous one when
 * only the signature failed (a key rotation in progress). */
static int track_parse(wh_ctx_t *ctx, const char *text, cmn_track_kind_t kind, cmn_track_token_t *t,
                       cmn_track_reason_t *reason)
{
    int64_t now_s = cmn_now_ms() / 1000;
    int rc = cmn_track_token_parse(ctx->cfg->tracking_key, text, kind, now_s, t, reason);
    if (rc != 0 && *reason == CMN_TRACK_R_SIGNATURE && ctx->cfg->tracking_key_previous[0] != '\0')
        rc = cmn_track_token_parse(ctx->cfg->tracking_key_previous, text, kind, now_s, t, reason);
    return rc;
}

/* Token checks shared by the tracking endpoints. Returns 0 with *t filled,
 * or answers resp and returns -1. */
static int track_accept(wh_ctx_t *ctx, wh_endpoint_t ep, const char *text, cmn_track_kind_t kind,
                        cmn_track_token_t *t, cmn_http_response_t *resp)
{
    cmn_track_reason_t reason = CMN_TRACK_R_OK;
    char detail[96];
    if (ctx->cfg->tracking_key[0] == '\0') {
        count(ctx, ep, RES_INVALID);
        cmn_http_problem(resp, 404, NULL, "Email tracking is not configured on this server (CRM_TRACKING_KEY).",
                         NULL);
        return -1;
    }
    if (track_parse(ctx, text, kind, t, &reason) != 0) {
        snprintf(detail, sizeof detail, "token: %s", cmn_track_reason_str(reason));
        refuse(ctx, ep, wh_track_refusal_status(reason), detail, resp);
        return -1;
    }
    return 0;
}

/* Opens and clicks never hold the person up: when Kafka cannot take the
 * event in time the pixel is still served and the redirect still happens;
 * the miss is logged and counted. */
static void track_emit(wh_ctx_t *ctx, wh_endpoint_t ep, const cmn_track_token_t *t)
{
    cmn_status_event_t ev;
    cmn_buf_t details = CMN_BUF_INIT, value = CMN_BUF_INIT;
    wh_out_t o;
    char err[256] = "";
    int rc = wh_track_event(t, cmn_now_ms(), &ev, &details);
    if (rc == 0)
        rc = cmn_status_event_to_json(&ev, &value);
    if (rc == 0)
        rc = out_init(&o);
    if (rc == 0) {
        emit(ctx, &o, CMN_TOPIC_STATUS, ev.communication_id, &value);
        rc = out_finish(ctx, &o, err, sizeof err);
    }
    if (rc != 0) {
        count(ctx, ep, RES_UNAVAILABLE);
        cmn_logkv(&ctx->log, CMN_LOG_WARN, t->communication_id,
                  (const char *[]){"endpoint", EP_NAMES[ep], "error", err[0] != '\0' ? err : cmn_strerror(rc), NULL},
                  "tracking event lost");
    } else {
        count(ctx, ep, RES_ACCEPTED);
    }
    cmn_buf_free(&details);
    cmn_buf_free(&value);
}

#define NO_CACHE "Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\nPragma: no-cache\r\nExpires: 0\r\n"

static void track_open(wh_ctx_t *ctx, const char *token, cmn_http_response_t *resp)
{
    cmn_track_token_t t;
    if (track_accept(ctx, EP_OPEN, token, CMN_TRACK_OPEN, &t, resp) != 0)
        return;
    track_emit(ctx, EP_OPEN, &t);
    cmn_buf_append(&resp->body, CMN_TRACK_PIXEL_GIF, CMN_TRACK_PIXEL_GIF_LEN);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "image/gif");
    snprintf(resp->extra_headers, sizeof resp->extra_headers, NO_CACHE);
}

static void track_click(wh_ctx_t *ctx, const char *token, cmn_http_response_t *resp)
{
    cmn_track_token_t t;
    if (track_accept(ctx, EP_CLICK, token, CMN_TRACK_CLICK, &t, resp) != 0)
        return;
    /* The parser verified the MAC over the target; checking its shape
     * again keeps CR/LF out of the header whatever a future format allows. */
    if (!cmn_track_target_ok(t.target)) {
        refuse(ctx, EP_CLICK, 400, "token: the target is not a redirectable URL", resp);
        return;
    }
    track_emit(ctx, EP_CLICK, &t);
    resp->status = 302;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain; charset=utf-8");
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "Location: %s\r\n" NO_CACHE, t.target);
}

static void unsubscribe_page(wh_ctx_t *ctx, const char *token, cmn_http_response_t *resp)
{
    cmn_track_token_t t;
    if (track_accept(ctx, EP_UNSUB_PAGE, token, CMN_TRACK_UNSUBSCRIBE, &t, resp) != 0)
        return;
    count(ctx, EP_UNSUB_PAGE, RES_ACCEPTED);
    if (wh_track_page(token, 0, &resp->body) != 0) {
        cmn_http_problem(resp, 500, NULL, "The page could not be built.", NULL);
        return;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/html; charset=utf-8");
    snprintf(resp->extra_headers, sizeof resp->extra_headers, NO_CACHE);
}

static void unsubscribe(wh_ctx_t *ctx, const cmn_http_request_t *req, const char *token, cmn_http_response_t *resp)
{
    cmn_track_token_t t;
    wh_out_t o;
    char err[320] = "", ferr[256] = "";
    if (track_accept(ctx, EP_UNSUB, token, CMN_TRACK_UNSUBSCRIBE, &t, resp) != 0)
        return;
    if (!cmn_track_one_click_form(req->body, req->body_len)) {
        refuse(ctx, EP_UNSUB, 400, "List-Unsubscribe: the body must be List-Unsubscribe=One-Click (RFC 8058)", resp);
        return;
    }
    if (out_init(&o) != 0) {
        unavailable(ctx, EP_UNSUB, "cannot start a Kafka batch", "out of memory", resp);
        return;
    }
    wh_optout_change_t change = {.opt_out = 1, .all_channels = 0, .channel = CMN_CHANNEL_EMAIL};
    int rc = emit_client_optout_one(ctx, &o, t.tenant_id, t.client_id, &change, err, sizeof err);
    int frc = out_finish(ctx, &o, ferr, sizeof ferr);
    if (rc != 0 || frc != 0) {
        unavailable(ctx, EP_UNSUB, "an unsubscribe could not be stored", rc != 0 ? err : ferr, resp);
        return;
    }
    count(ctx, EP_UNSUB, RES_ACCEPTED);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, t.communication_id, (const char *[]){"client_id", t.client_id, NULL},
              "unsubscribed from email");
    if (wh_track_page(token, 1, &resp->body) != 0) {
        cmn_http_problem(resp, 500, NULL, "The unsubscribe was stored but the page could not be built.", NULL);
        return;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/html; charset=utf-8");
    snprintf(resp->extra_headers, sizeof resp->extra_headers, NO_CACHE);
}

/* --------------------------------------------------------------- routing */

/* The token of "<prefix><token>" (no further '/'), or NULL. */
static const char *path_token(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return NULL;
    const char *tok = path + n;
    if (tok[0] == '\0' || strchr(tok, '/') != NULL || strlen(tok) > CMN_TRACK_TOKEN_MAX)
        return NULL;
    return tok;
}

static void not_allowed(cmn_http_response_t *resp, const char *allow)
{
    cmn_http_problem(resp, 405, NULL, "This method is not allowed on this resource; see the Allow header.", NULL);
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n", allow);
}

typedef enum wh_route {
    ROUTE_NONE = 0,
    ROUTE_TWILIO_STATUS,
    ROUTE_TWILIO_INBOUND,
    ROUTE_META,
    ROUTE_OPEN,
    ROUTE_CLICK,
    ROUTE_UNSUBSCRIBE
} wh_route_t;

/* The route of path, with the token of the tracking routes in *tok. */
static wh_route_t route_of(const char *path, const char **tok)
{
    static const struct {
        const char *prefix;
        wh_route_t route;
    } TOKEN_ROUTES[] = {{"/t/o/", ROUTE_OPEN}, {"/t/c/", ROUTE_CLICK}, {"/u/", ROUTE_UNSUBSCRIBE}};
    *tok = NULL;
    if (strcmp(path, "/twilio/status") == 0)
        return ROUTE_TWILIO_STATUS;
    if (strcmp(path, "/twilio/inbound") == 0)
        return ROUTE_TWILIO_INBOUND;
    if (strcmp(path, "/meta/webhook") == 0)
        return ROUTE_META;
    for (size_t i = 0; i < sizeof TOKEN_ROUTES / sizeof TOKEN_ROUTES[0]; i++) {
        *tok = path_token(path, TOKEN_ROUTES[i].prefix);
        if (*tok != NULL)
            return TOKEN_ROUTES[i].route;
    }
    return ROUTE_NONE;
}

static void handle(void *arg, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    wh_ctx_t *ctx = arg;
    int get = strcmp(req->method, "GET") == 0;
    int post = strcmp(req->method, "POST") == 0;
    const char *tok = NULL;

    switch (route_of(req->path, &tok)) {
    case ROUTE_TWILIO_STATUS:
        if (post)
            twilio_status(ctx, req, resp);
        else
            not_allowed(resp, "POST");
        break;
    case ROUTE_TWILIO_INBOUND:
        if (post)
            twilio_inbound(ctx, req, resp);
        else
            not_allowed(resp, "POST");
        break;
    case ROUTE_META:
        if (get)
            meta_verify(ctx, req, resp);
        else if (post)
            meta_events(ctx, req, resp);
        else
            not_allowed(resp, "GET, POST");
        break;
    case ROUTE_OPEN:
        if (get)
            track_open(ctx, tok, resp);
        else
            not_allowed(resp, "GET");
        break;
    case ROUTE_CLICK:
        if (get)
            track_click(ctx, tok, resp);
        else
            not_allowed(resp, "GET");
        break;
    case ROUTE_UNSUBSCRIBE:
        if (get)
            unsubscribe_page(ctx, tok, resp);
        else if (post)
            unsubscribe(ctx, req, tok, resp);
        else
            not_allowed(resp, "GET, POST");
        break;
    default:
        cmn_http_problem(resp, 404, NULL, "No such resource.", NULL);
        break;
    }
}

/* ------------------------------------------------------------- lifecycle */

static int register_metrics(wh_ctx_t *ctx)
{
    static const char help[] = "Webhook and tracking requests, by endpoint and outcome.";
    for (int e = 0; e < EP__COUNT; e++) {
        for (int r = 0; r < RES__COUNT; r++) {
            char labels[96];
            snprintf(labels, sizeof labels, "endpoint=\"%s\",result=\"%s\"", EP_NAMES[e], RES_NAMES[r]);
            ctx->requests[e][r] = cmn_metrics_counter(ctx->metrics, "webhook_requests_total", help, labels);
            if (ctx->requests[e][r] == NULL)
                return CMN_ERR_NOMEM;
        }
    }
    return 0;
}

wh_ctx_t *wh_ctx_new(const wh_config_t *cfg, char *errstr, size_t errlen)
{
    wh_ctx_t *ctx = NULL;
    wh_ctx_t *result = NULL;
    char why[256] = "";

    if (cfg == NULL || wh_config_check(cfg, errstr, errlen) != 0)
        goto cleanup;
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    ctx->cfg = cfg;
    atomic_init(&ctx->accepting, 0);
    cmn_log_init(&ctx->log, WH_SERVICE, cfg->log_level);
    snprintf(ctx->public_url, sizeof ctx->public_url, "%s", cfg->public_url);
    for (size_t n = strlen(ctx->public_url); n > 0 && ctx->public_url[n - 1] == '/'; n--)
        ctx->public_url[n - 1] = '\0';

    ctx->metrics = cmn_metrics_new();
    if (ctx->metrics == NULL || register_metrics(ctx) != 0) {
        snprintf(errstr, errlen, "metrics: out of memory");
        goto cleanup;
    }
    /* A record Kafka cannot store within the webhook's wait is failed by
     * librdkafka at about the time the provider gets its 503, so it does
     * not land later behind the provider's retry. */
    snprintf(ctx->timeout_prop, sizeof ctx->timeout_prop, "message.timeout.ms=%ld", cfg->kafka_timeout_ms);
    ctx->kafka_extra[0] = ctx->timeout_prop;
    ctx->kafka_extra[1] = NULL;
    cmn_kafka_config_t kcfg = {
        .brokers = cfg->kafka_brokers,
        .client_id = WH_CLIENT_ID,
        .group_id = NULL,
        .extra = ctx->kafka_extra,
        .log = &ctx->log,
        .metrics = ctx->metrics,
    };
    ctx->producer = cmn_kafka_producer_new(&kcfg, why, sizeof why);
    if (ctx->producer == NULL) {
        snprintf(errstr, errlen, "kafka: %s", why);
        goto cleanup;
    }
    ctx->db = wh_db_new(cfg->database_url, (size_t)cfg->db_pool_size, (int)cfg->db_timeout_ms, why, sizeof why);
    if (ctx->db == NULL) {
        snprintf(errstr, errlen, "postgresql: %s", why);
        goto cleanup;
    }
    cmn_http_config_t hcfg = {
        .bind_address = cfg->http_bind,
        .port = (int)cfg->http_port,
        .threads = (int)cfg->http_threads,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .max_header_bytes = 0,
        .timeout_seconds = WH_HTTP_IDLE_TIMEOUT_S,
        .handler = handle,
        .ready = wh_ready,
        .ctx = ctx,
        .metrics = ctx->metrics,
        .log = &ctx->log,
    };
    ctx->http = cmn_http_server_new(&hcfg, why, sizeof why);
    if (ctx->http == NULL) {
        snprintf(errstr, errlen, "%s", why);
        goto cleanup;
    }
    if (cfg->twilio_auth_token[0] == '\0')
        cmn_log_warn(&ctx->log, NULL, "TWILIO_AUTH_TOKEN is empty: every Twilio webhook will be refused (403)");
    if (cfg->meta_app_secret[0] == '\0')
        cmn_log_warn(&ctx->log, NULL, "WHATSAPP_APP_SECRET is empty: every Meta webhook will be refused (403)");
    if (cfg->tracking_key[0] == '\0')
        cmn_log_warn(&ctx->log, NULL, "CRM_TRACKING_KEY is empty: email tracking links answer 404");
    atomic_store(&ctx->accepting, 1);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"brokers", cfg->kafka_brokers, NULL},
              "webhook receiver ready on port %d", cmn_http_server_port(ctx->http));
    result = ctx;
    ctx = NULL;

cleanup:
    wh_ctx_destroy(ctx);
    return result;
}

int wh_run(wh_ctx_t *ctx)
{
    if (ctx == NULL)
        return CMN_ERR_INVALID;
    /* The work happens on the HTTP and Kafka threads; this thread only
     * waits for the stop signal. */
    while (!cmn_stop_requested) {
        struct timespec ts = {0, WH_RUN_TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    cmn_log_info(&ctx->log, NULL, "stop requested; draining");
    return 0;
}

void wh_ctx_destroy(wh_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    atomic_store(&ctx->accepting, 0);
    /* Intake first: webhooks in flight still need the producer and the
     * database for their answers. */
    cmn_http_server_destroy(ctx->http);
    ctx->http = NULL;
    if (ctx->producer != NULL) {
        if (cmn_kafka_producer_flush(ctx->producer, (int)ctx->cfg->kafka_timeout_ms) != 0)
            cmn_log_warn(&ctx->log, NULL, "kafka flush did not complete before shutdown");
        cmn_kafka_producer_destroy(ctx->producer);
    }
    wh_db_destroy(ctx->db);
    cmn_metrics_destroy(ctx->metrics);
    if (ctx->log.service != NULL)
        cmn_log_info(&ctx->log, NULL, "webhook receiver stopped");
    free(ctx);
}
