/* email_worker.c - the email channel: configuration table and the
 * prepare/submit/classify/release implementation. See email_worker.h. */
#include "email_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "crm/time.h"
#include "crm/track.h"
#include "crm/uuid.h"
#include "email_mime.h"
#include "email_smtp.h"
#include "email_templates.h"

#ifndef EMAIL_DEFAULT_TEMPLATES_DIR
#define EMAIL_DEFAULT_TEMPLATES_DIR "templates"
#endif

#define OFF(field) offsetof(email_worker_config_t, field)

/* Longest TRACKING_BASE_URL: with "/u/" and the longest unsubscribe token
 * (about 400 characters) the URI stays within EMAIL_MIME_MAX_UNSUB_URI. */
#define EMAIL_TRACKING_BASE_MAX 400

static const cmn_cfg_entry_t CONFIG_TABLE[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, OFF(kafka_brokers), "Kafka bootstrap servers.", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, OFF(http_bind), "Address of the /metrics, /healthz, /readyz server.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "9102", 0, OFF(http_port), "Port of the /metrics, /healthz, /readyz server (0 picks one).", 0, 65535},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, OFF(log_level), "debug, info, warn or error.", 0, 0},
    {"SMTP_HOST", CMN_CFG_STRING, NULL, 0, OFF(smtp_host), "SMTP server host name or IP address.", 0, 0},
    {"SMTP_PORT", CMN_CFG_INT, "587", 0, OFF(smtp_port), "SMTP port: 587 submission (STARTTLS), 465 implicit TLS, 25 relay.", 1, 65535},
    {"SMTP_USERNAME", CMN_CFG_STRING, "", 0, OFF(smtp_username), "SMTP AUTH user; empty disables AUTH.", 0, 0},
    {"SMTP_PASSWORD", CMN_CFG_STRING, "", 1, OFF(smtp_password), "SMTP AUTH password.", 0, 0},
    {"SMTP_FROM_EMAIL", CMN_CFG_STRING, NULL, 0, OFF(smtp_from_email), "Sender address (From header and MAIL FROM).", 0, 0},
    {"SMTP_FROM_NAME", CMN_CFG_STRING, "", 0, OFF(smtp_from_name), "Sender display name in the From header.", 0, 0},
    {"SMTP_USE_TLS", CMN_CFG_BOOL, "true", 0, OFF(smtp_use_tls), "Require STARTTLS (port 465 always uses implicit TLS).", 0, 0},
    {"SMTP_CA_FILE", CMN_CFG_STRING, "", 0, OFF(smtp_ca_file), "PEM CA bundle to verify the server; empty uses the system store.", 0, 0},
    {"SMTP_TIMEOUT_MS", CMN_CFG_INT, "30000", 0, OFF(smtp_timeout_ms), "Time limit of one SMTP transfer, connection included.", 100, 600000},
    {"EMAIL_TEMPLATES_DIR", CMN_CFG_STRING, EMAIL_DEFAULT_TEMPLATES_DIR, 0, OFF(templates_dir), "Directory of <message_type>/<locale>/ templates and _partials/.", 0, 0},
    {"TEMPLATE_FALLBACK_LOCALE", CMN_CFG_STRING, "en", 0, OFF(fallback_locale), "Locale used when the recipient's has no templates.", 0, 0},
    {"EMAIL_MAX_IN_FLIGHT", CMN_CFG_INT, "32", 0, OFF(max_in_flight), "SMTP transfers running at once.", 1, 1024},
    {"EMAIL_BATCH_SIZE", CMN_CFG_INT, "200", 0, OFF(batch_size), "Dispatches consumed per batch.", 1, 10000},
    {"EMAIL_GROUP_ID", CMN_CFG_STRING, "crm-email-worker", 0, OFF(group_id), "Kafka consumer group.", 0, 0},
    {"KAFKA_SESSION_TIMEOUT_MS", CMN_CFG_INT, "45000", 0, OFF(session_timeout_ms), "Consumer group session timeout: how soon a dead replica's partitions move to a live one.", 6000, 300000},
    {"TRACKING_BASE_URL", CMN_CFG_STRING, "", 0, OFF(tracking_base_url), "Public base URL of the webhook receiver (https://hooks.example.com) for the open pixel, click links and the List-Unsubscribe https URI; empty disables open and click tracking.", 0, 0},
    {"CRM_TRACKING_KEY", CMN_CFG_STRING, "", 1, OFF(tracking_key), "Secret of 32+ characters that signs tracking and unsubscribe tokens; the webhook receiver must have the same. Required with TRACKING_BASE_URL or UNSUBSCRIBE_MAILTO.", 0, 0},
    {"UNSUBSCRIBE_MAILTO", CMN_CFG_STRING, "", 0, OFF(unsubscribe_mailto), "Address of the mailto: List-Unsubscribe URI (unsubscribe@example.com); empty leaves it out.", 0, 0},
    {"EMAIL_TRACK_OPENS", CMN_CFG_BOOL, "true", 0, OFF(track_opens), "Add the open pixel to HTML emails (needs TRACKING_BASE_URL).", 0, 0},
    {"EMAIL_TRACK_CLICKS", CMN_CFG_BOOL, "true", 0, OFF(track_clicks), "Rewrite http(s) links of HTML emails to signed click redirects (needs TRACKING_BASE_URL).", 0, 0},
    {"RETRY_MAX_ATTEMPTS", CMN_CFG_INT, "5", 0, OFF(retry_max_attempts), "Attempts per message on this channel, the first included; after the last, fallback to the next channel of the plan or dead (crm.dlq).", 1, 50},
    {"RETRY_BASE_MS", CMN_CFG_INT, "5000", 0, OFF(retry_base_ms), "First backoff window: the retry after attempt k waits a random time in [0, min(RETRY_CAP_MS, RETRY_BASE_MS * 2^(k-1))], at least the provider's Retry-After.", 1, 86400000},
    {"RETRY_CAP_MS", CMN_CFG_INT, "1800000", 0, OFF(retry_cap_ms), "Largest backoff window (at least RETRY_BASE_MS).", 1, 86400000},
};

static int tracking_config_check(const email_worker_config_t *cfg, char *errstr, size_t errlen);

const cmn_cfg_entry_t *email_worker_config_table(size_t *n)
{
    *n = sizeof CONFIG_TABLE / sizeof CONFIG_TABLE[0];
    return CONFIG_TABLE;
}

int email_worker_config_check(const email_worker_config_t *cfg, char *errstr, size_t errlen)
{
    email_mime_error_t err = {0};
    if (cfg->retry_cap_ms < cfg->retry_base_ms) {
        snprintf(errstr, errlen, "RETRY_CAP_MS: must not be below RETRY_BASE_MS");
        return CMN_ERR_CONFIG;
    }
    if (cfg->smtp_host[0] == '\0') {
        snprintf(errstr, errlen, "SMTP_HOST: must not be empty");
        return CMN_ERR_CONFIG;
    }
    if (!email_mime_valid_address(cfg->smtp_from_email)) {
        snprintf(errstr, errlen, "SMTP_FROM_EMAIL: must be an address like noreply@example.com");
        return CMN_ERR_CONFIG;
    }
    if (email_mime_check_header_value("SMTP_FROM_NAME", cfg->smtp_from_name, &err) != 0) {
        snprintf(errstr, errlen, "SMTP_FROM_NAME: %s", err.detail);
        return CMN_ERR_CONFIG;
    }
    if (!cmn_valid_locale(cfg->fallback_locale)) {
        snprintf(errstr, errlen, "TEMPLATE_FALLBACK_LOCALE: must be a BCP 47 language tag like en");
        return CMN_ERR_CONFIG;
    }
    if (cfg->smtp_username[0] != '\0' && !cfg->smtp_use_tls && cfg->smtp_port != 465) {
        snprintf(errstr, errlen, "SMTP_USE_TLS: must be true when SMTP_USERNAME is set (AUTH would send the password in clear)");
        return CMN_ERR_CONFIG;
    }
    return tracking_config_check(cfg, errstr, errlen);
}

/* The tracking settings: a base URL that tokens can be appended to and
 * that keeps the List-Unsubscribe line within bounds, a plain address, and
 * a key whenever anything is signed. */
static int tracking_config_check(const email_worker_config_t *cfg, char *errstr, size_t errlen)
{
    const char *base = cfg->tracking_base_url;
    const char *mailto = cfg->unsubscribe_mailto;
    if (base[0] != '\0') {
        cmn_buf_t probe = CMN_BUF_INIT;
        int rc = strlen(base) <= EMAIL_TRACKING_BASE_MAX ? cmn_track_url(base, CMN_TRACK_OPEN, "AA", &probe)
                                                          : CMN_ERR_INVALID;
        cmn_buf_free(&probe);
        if (rc != 0) {
            snprintf(errstr, errlen, "TRACKING_BASE_URL: must be an http(s) URL without query or fragment, at most %d "
                     "characters, like https://hooks.example.com", EMAIL_TRACKING_BASE_MAX);
            return CMN_ERR_CONFIG;
        }
    }
    if (mailto[0] != '\0' && !email_mime_valid_address(mailto)) {
        snprintf(errstr, errlen, "UNSUBSCRIBE_MAILTO: must be an address like unsubscribe@example.com");
        return CMN_ERR_CONFIG;
    }
    if ((base[0] != '\0' || mailto[0] != '\0') && strlen(cfg->tracking_key) < CMN_TRACK_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_TRACKING_KEY: must be at least %d characters when TRACKING_BASE_URL or "
                 "UNSUBSCRIBE_MAILTO is set", CMN_TRACK_KEY_MIN);
        return CMN_ERR_CONFIG;
    }
    return 0;
}

/* ---------------------------------------------------------------- channel */

struct email_channel {
    const email_worker_config_t *cfg;
    const cmn_log_t *log;
    email_templates_t *templates;
    email_smtp_t *smtp;
};

email_channel_t *email_channel_new(const email_worker_config_t *cfg, const cmn_log_t *log, char *errstr,
                                   size_t errlen)
{
    email_channel_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->log = log;
    c->templates = email_templates_new(cfg->templates_dir, cfg->fallback_locale, errstr, errlen);
    if (c->templates == NULL)
        goto fail;
    email_smtp_config_t sc = {
        .host = cfg->smtp_host,
        .port = (int)cfg->smtp_port,
        .username = cfg->smtp_username,
        .password = cfg->smtp_password,
        .from_email = cfg->smtp_from_email,
        .use_tls = cfg->smtp_use_tls,
        .ca_file = cfg->smtp_ca_file,
        .timeout_ms = cfg->smtp_timeout_ms,
    };
    c->smtp = email_smtp_new(&sc, errstr, errlen);
    if (c->smtp == NULL)
        goto fail;
    if (cfg->tracking_base_url[0] == '\0' && cfg->unsubscribe_mailto[0] == '\0')
        cmn_log_warn(log, NULL, "no List-Unsubscribe header: set TRACKING_BASE_URL and/or UNSUBSCRIBE_MAILTO "
                     "(bulk senders must offer one-click unsubscribe)");
    return c;
fail:
    email_channel_destroy(c);
    return NULL;
}

void email_channel_destroy(email_channel_t *c)
{
    if (c == NULL)
        return;
    email_templates_destroy(c->templates);
    email_smtp_destroy(c->smtp);
    free(c);
}

/* Renders the dispatch's template set: its explicit template when an email
 * set of that name exists (a request's template may name a WhatsApp
 * template instead), else the message type's. */
static int render(email_channel_t *c, const cmn_dispatch_t *d, json_object *data, email_rendered_t *out,
                  cmn_worker_result_t *res)
{
    char why[256] = "";
    const char *locale = d->locale != NULL ? d->locale : d->recipient.locale;
    int rc = CMN_ERR_NOTFOUND;
    if (d->template_name != NULL) {
        rc = email_templates_render(c->templates, d->template_name, locale, data, out, why, sizeof why);
        if (rc == CMN_ERR_NOTFOUND || rc == CMN_ERR_INVALID)
            email_rendered_clear(out);
    }
    if (rc == CMN_ERR_NOTFOUND || rc == CMN_ERR_INVALID)
        rc = email_templates_render(c->templates, d->message_type, locale, data, out, why, sizeof why);
    switch (rc) {
    case 0:
        return 0;
    case CMN_ERR_NOTFOUND:
        cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, "no_template", "%s", why);
        break;
    case CMN_ERR_TEMPLATE:
    case CMN_ERR_INVALID:
        cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, "template_error", "%s", why);
        break;
    default:
        /* A read error or memory shortage is about this process, not the
         * message: another attempt may well work. */
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "template_io", "retryable: %s", why);
        break;
    }
    return rc;
}

/* Decodes the dispatch's attachments ([{filename, content_type,
 * content_base64}]) into atts/blobs (both calloc'd with natts entries; the
 * caller frees every blob and both arrays). */
static int decode_attachments(const cmn_dispatch_t *d, email_attachment_t **atts, unsigned char ***blobs,
                              size_t *natts, cmn_worker_result_t *res)
{
    size_t n = d->attachments != NULL ? json_object_array_length(d->attachments) : 0;
    *atts = NULL;
    *blobs = NULL;
    *natts = 0;
    if (n == 0)
        return 0;
    if (n > CMN_REQ_MAX_ATTACHMENTS) {
        cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, "invalid_attachment", "more than %d attachments",
                           CMN_REQ_MAX_ATTACHMENTS);
        return CMN_ERR_INVALID;
    }
    *atts = calloc(n, sizeof **atts);
    *blobs = calloc(n, sizeof **blobs);
    if (*atts == NULL || *blobs == NULL) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "out_of_memory", "retryable: out of memory");
        return CMN_ERR_NOMEM;
    }
    *natts = n;
    for (size_t i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(d->attachments, i);
        const char *b64 = cmn_json_get_string(a, "content_base64");
        (*atts)[i].filename = cmn_json_get_string(a, "filename");
        (*atts)[i].content_type = cmn_json_get_string(a, "content_type");
        if (b64 == NULL || (*atts)[i].filename == NULL) {
            cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, "invalid_attachment",
                               "attachments[%zu] needs filename and content_base64", i);
            return CMN_ERR_INVALID;
        }
        size_t len = 0;
        int rc = email_mime_base64_decode(b64, strlen(b64), CMN_REQ_MAX_ATTACHMENT_BYTES, &(*blobs)[i], &len);
        if (rc == CMN_ERR_NOMEM) {
            cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "out_of_memory", "retryable: out of memory");
            return rc;
        }
        if (rc != 0) {
            cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, "invalid_attachment", "attachments[%zu].content_base64 %s", i,
                               rc == CMN_ERR_OVERFLOW ? "is too large" : "is not base64");
            return rc;
        }
        (*atts)[i].data = (*blobs)[i];
        (*atts)[i].len = len;
    }
    return 0;
}

/* What tracking adds to one message; strings are owned. */
typedef struct tracking {
    cmn_track_token_t ids;  /* tenant, client, communication, hop of the dispatch */
    char *unsubscribe_url;  /* TRACKING_BASE_URL/u/<token>, or NULL */
    char *unsubscribe_mailto; /* mailto:UNSUBSCRIBE_MAILTO?subject=unsubscribe-<token>, or NULL */
} tracking_t;

static void tracking_clear(tracking_t *t)
{
    free(t->unsubscribe_url);
    free(t->unsubscribe_mailto);
    t->unsubscribe_url = NULL;
    t->unsubscribe_mailto = NULL;
}

/* Makes the unsubscribe URIs of dispatch d, one token for both: the same
 * token identifies the message whichever way the person unsubscribes. */
static int tracking_prepare(const email_worker_config_t *cfg, const cmn_dispatch_t *d, tracking_t *t)
{
    cmn_buf_t token = CMN_BUF_INIT, url = CMN_BUF_INIT, mailto = CMN_BUF_INIT;
    int rc = 0;
    cmn_track_token_init(&t->ids);
    t->unsubscribe_url = NULL;
    t->unsubscribe_mailto = NULL;
    t->ids.channel = CMN_CHANNEL_EMAIL;
    t->ids.hop = d->hop;
    snprintf(t->ids.tenant_id, sizeof t->ids.tenant_id, "%s", d->tenant_id);
    snprintf(t->ids.client_id, sizeof t->ids.client_id, "%s", d->client_id);
    snprintf(t->ids.communication_id, sizeof t->ids.communication_id, "%s", d->communication_id);
    if (cfg->tracking_base_url[0] == '\0' && cfg->unsubscribe_mailto[0] == '\0')
        return 0;
    cmn_track_token_t u = t->ids;
    u.kind = CMN_TRACK_UNSUBSCRIBE;
    rc = cmn_track_token_make(cfg->tracking_key, &u, &token);
    if (rc == 0 && cfg->tracking_base_url[0] != '\0') {
        rc = cmn_track_url(cfg->tracking_base_url, CMN_TRACK_UNSUBSCRIBE, token.data, &url);
        if (rc == 0)
            t->unsubscribe_url = cmn_buf_steal(&url);
    }
    if (rc == 0 && cfg->unsubscribe_mailto[0] != '\0') {
        rc = cmn_track_mailto(cfg->unsubscribe_mailto, token.data, &mailto);
        if (rc == 0)
            t->unsubscribe_mailto = cmn_buf_steal(&mailto);
    }
    cmn_buf_free(&token);
    cmn_buf_free(&url);
    cmn_buf_free(&mailto);
    if (rc != 0)
        tracking_clear(t);
    return rc;
}

/* Rewrites r->html for opens and clicks when TRACKING_BASE_URL is set.
 * The text part keeps its links as they are: people copy them, and a long
 * redirect URL in plain text is both ugly and easy to break. */
static int tracking_rewrite_html(const email_worker_config_t *cfg, const tracking_t *t, email_rendered_t *r,
                                 int *links)
{
    *links = 0;
    if (r->html == NULL || cfg->tracking_base_url[0] == '\0' || (!cfg->track_opens && !cfg->track_clicks))
        return 0;
    cmn_track_html_t o = {
        .key = cfg->tracking_key,
        .base_url = cfg->tracking_base_url,
        .ids = &t->ids,
        .track_opens = cfg->track_opens,
        .track_clicks = cfg->track_clicks,
    };
    cmn_buf_t out = CMN_BUF_INIT;
    int rc = cmn_track_html_rewrite(&o, r->html, strlen(r->html), &out, links);
    if (rc == 0 && out.data == NULL)
        rc = cmn_buf_puts(&out, "");
    if (rc == 0) {
        free(r->html);
        r->html = cmn_buf_steal(&out);
    }
    cmn_buf_free(&out);
    return rc;
}

static int email_prepare(void *impl, const cmn_dispatch_t *d, void **msg, cmn_worker_result_t *res)
{
    email_channel_t *c = impl;
    email_rendered_t r;
    email_attachment_t *atts = NULL;
    unsigned char **blobs = NULL;
    size_t natts = 0;
    cmn_buf_t mime = CMN_BUF_INIT;
    char msgid[EMAIL_MIME_MSGID_MAX];
    char id_token[CMN_UUID_STR_LEN + 1], boundary[CMN_UUID_STR_LEN + 1];
    char name[160];
    email_mime_error_t err = {0};
    tracking_t track = {0};
    json_object *data = NULL;
    int links = 0;
    int rc;

    memset(&r, 0, sizeof r);
    *msg = NULL;
    rc = tracking_prepare(c->cfg, d, &track);
    if (rc != 0) {
        /* The dispatch's ids were validated, so only memory can fail here. */
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "internal_error", "retryable: cannot make tracking links");
        goto cleanup;
    }
    /* The visible link goes to the unsubscribe page, or to the mailbox when
     * there is no page. */
    data = email_templates_data_new(d->context, &d->recipient,
                                    track.unsubscribe_url != NULL ? track.unsubscribe_url : track.unsubscribe_mailto);
    if (data == NULL) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "out_of_memory", "retryable: out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = render(c, d, data, &r, res);
    if (rc != 0)
        goto cleanup;
    rc = tracking_rewrite_html(c->cfg, &track, &r, &links);
    if (rc != 0) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "internal_error", "retryable: cannot add tracking links");
        goto cleanup;
    }
    rc = decode_attachments(d, &atts, &blobs, &natts, res);
    if (rc != 0)
        goto cleanup;

    /* The Message-ID is a function of (communication, hop, attempt): a
     * dispatch redelivered after a crash gets the same id, which receivers
     * use to drop the duplicate. The boundary only has to be unpredictable. */
    int n = snprintf(name, sizeof name, "email-message-id|%s|%d|%d", d->communication_id, d->hop, d->attempt);
    rc = (n > 0 && (size_t)n < sizeof name) ? cmn_uuid_v5(CMN_UUID_NS_EVENT, name, (size_t)n, id_token)
                                            : CMN_ERR_OVERFLOW;
    if (rc == 0)
        rc = cmn_uuid_v4(boundary);
    if (rc != 0) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "internal_error", "retryable: cannot make message ids");
        goto cleanup;
    }
    /* UUID without its hyphens: 32 hex characters for the boundary. */
    size_t k = 0;
    for (size_t i = 0; boundary[i] != '\0'; i++) {
        if (boundary[i] != '-')
            boundary[k++] = boundary[i];
    }
    boundary[k] = '\0';

    email_mime_input_t in = {
        .from = {.name = c->cfg->smtp_from_name, .addr = c->cfg->smtp_from_email},
        .to = {.name = d->recipient.name, .addr = d->to},
        .subject = r.subject,
        .text = r.text,
        .html = r.html,
        .attachments = atts,
        .n_attachments = natts,
        .date_ms = cmn_now_ms(),
        .id_token = id_token,
        .boundary_token = boundary,
        .unsubscribe_url = track.unsubscribe_url,
        .unsubscribe_mailto = track.unsubscribe_mailto,
    };
    rc = email_mime_build(&in, &mime, msgid, &err);
    if (rc == CMN_ERR_NOMEM) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "out_of_memory", "retryable: out of memory");
        goto cleanup;
    }
    if (rc != 0) {
        /* Bad data in the message itself: no attempt can succeed, and the
         * message must not go out in any "cleaned" form. */
        cmn_worker_result_fail(res, CMN_WORKER_PERMANENT, err.code != NULL ? err.code : "invalid_message", "%s",
                           err.detail);
        goto cleanup;
    }
    size_t len = mime.len;
    email_smtp_transfer_t *tx = email_smtp_transfer_new(c->smtp, d->to, cmn_buf_steal(&mime), len);
    if (tx == NULL) {
        cmn_worker_result_fail(res, CMN_WORKER_RETRYABLE, "out_of_memory", "retryable: out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    snprintf(res->provider_message_id, sizeof res->provider_message_id, "%s", msgid);
    *msg = tx;
    cmn_log_debug(c->log, d->communication_id, "prepared %s email (locale %s, %zu bytes, %zu attachments, %d tracked links)",
                  r.html != NULL ? "text+html" : "text", r.locale, len, natts, links);
cleanup:
    for (size_t i = 0; blobs != NULL && i < natts; i++)
        free(blobs[i]);
    free(blobs);
    free(atts);
    cmn_buf_free(&mime);
    email_rendered_clear(&r);
    json_object_put(data);
    tracking_clear(&track);
    return rc;
}

static int email_submit(void *impl, void *msg, CURL **easy)
{
    *easy = email_smtp_transfer_easy(msg);
    return *easy != NULL ? 0 : CMN_ERR_NOMEM;
}

static void email_classify(void *impl, void *msg, const cmn_worker_response_t *resp, cmn_worker_result_t *res)
{
    email_smtp_transfer_result(msg, resp->code, res);
}

static void email_release(void *impl, void *msg)
{
    email_smtp_transfer_free(msg);
}

void email_channel_bind(email_channel_t *c, cmn_worker_channel_t *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->name = "email";
    ch->channel = CMN_CHANNEL_EMAIL;
    ch->provider = "smtp";
    ch->impl = c;
    ch->prepare = email_prepare;
    ch->submit = email_submit;
    ch->classify = email_classify;
    ch->release = email_release;
}
