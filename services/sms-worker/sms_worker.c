/* sms_worker.c - the SMS channel: configuration table and the
 * prepare/sender/submit/classify/release implementation. See sms_worker.h. */
#include "sms_worker.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/phone.h"
#include "crm/provider_errors.h"
#include "crm/request.h"
#include "crm/sms.h"
#include "sms_request.h"
#include "sms_templates.h"
#include "sms_twilio.h"

#ifndef SMS_DEFAULT_TEMPLATES_DIR
#define SMS_DEFAULT_TEMPLATES_DIR "templates"
#endif

#define OFF(field) offsetof(sms_worker_config_t, field)

static const cmn_cfg_entry_t CONFIG_TABLE[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, OFF(kafka_brokers), "Kafka bootstrap servers.", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, OFF(http_bind), "Address of the /metrics, /healthz, /readyz server.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "9104", 0, OFF(http_port), "Port of the /metrics, /healthz, /readyz server (0 picks one).", 0, 65535},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, OFF(log_level), "debug, info, warn or error.", 0, 0},
    {"TWILIO_API_URL", CMN_CFG_STRING, "https://api.twilio.com", 0, OFF(twilio_api_url), "Base URL of the Twilio REST API (a sandbox or mock in tests).", 0, 0},
    {"TWILIO_ACCOUNT_SID", CMN_CFG_STRING, NULL, 0, OFF(twilio_account_sid), "Twilio account SID (AC...), the basic-auth user.", 0, 0},
    {"TWILIO_AUTH_TOKEN", CMN_CFG_STRING, NULL, 1, OFF(twilio_auth_token), "Twilio auth token, the basic-auth password.", 0, 0},
    {"TWILIO_PHONE_NUMBER", CMN_CFG_STRING, "", 0, OFF(twilio_phone_number), "Sender (From): E.164 number, short code or alphanumeric id; empty to let the Messaging Service pick.", 0, 0},
    {"TWILIO_MESSAGING_SERVICE_SID", CMN_CFG_STRING, "", 0, OFF(twilio_messaging_service_sid), "Messaging Service SID (MG...); used with or instead of TWILIO_PHONE_NUMBER.", 0, 0},
    {"TWILIO_CA_FILE", CMN_CFG_STRING, "", 0, OFF(twilio_ca_file), "PEM CA bundle to verify the API; empty uses the system store.", 0, 0},
    {"TWILIO_TIMEOUT_MS", CMN_CFG_INT, "15000", 0, OFF(twilio_timeout_ms), "Time limit of one Messages API request, connection included.", 100, 600000},
    {"SMS_STATUS_CALLBACK_URL", CMN_CFG_STRING, "", 0, OFF(status_callback_url), "Public URL of the webhook receiver's Twilio status endpoint; empty sends no StatusCallback.", 0, 0},
    {"SMS_TEMPLATES_DIR", CMN_CFG_STRING, SMS_DEFAULT_TEMPLATES_DIR, 0, OFF(templates_dir), "Directory of <message_type>/<locale>/sms.txt.mustache templates.", 0, 0},
    {"TEMPLATE_FALLBACK_LOCALE", CMN_CFG_STRING, "en", 0, OFF(fallback_locale), "Locale used when the recipient's has no template.", 0, 0},
    {"SMS_RATE_PER_SECOND", CMN_CFG_DOUBLE, "1", 0, OFF(rate_per_second), "Messages per second per sender (Twilio long code: 1); 0 disables the limit.", 0, 10000},
    {"SMS_RATE_BURST", CMN_CFG_INT, "1", 0, OFF(rate_burst), "Messages a sender may send at once after being idle.", 1, 100000},
    {"SMS_MAX_IN_FLIGHT", CMN_CFG_INT, "16", 0, OFF(max_in_flight), "Messages API requests running at once.", 1, 1024},
    {"SMS_BATCH_SIZE", CMN_CFG_INT, "100", 0, OFF(batch_size), "Dispatches consumed per batch.", 1, 10000},
    {"SMS_GROUP_ID", CMN_CFG_STRING, "crm-sms-worker", 0, OFF(group_id), "Kafka consumer group.", 0, 0},
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
};

const cmn_cfg_entry_t *sms_worker_config_table(size_t *n)
{
    *n = sizeof CONFIG_TABLE / sizeof CONFIG_TABLE[0];
    return CONFIG_TABLE;
}

int sms_valid_sender(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0)
        return 0;
    if (s[0] == '+')
        return cmn_valid_e164(s);
    size_t digits = strspn(s, "0123456789");
    if (digits == n)
        return n == 5 || n == 6; /* a short code */
    if (n > 11 || s[0] == ' ' || s[n - 1] == ' ')
        return 0;
    int letters = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && !(c >= '0' && c <= '9') && c != ' ')
            return 0;
        letters += letter;
    }
    return letters > 0;
}

int sms_worker_config_check(const sms_worker_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_buf_t probe = CMN_BUF_INIT;
    int rc = 0;
    if (!sms_valid_sid(cfg->twilio_account_sid, "AC")) {
        snprintf(errstr, errlen, "TWILIO_ACCOUNT_SID: must be AC followed by 32 hex digits");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->twilio_auth_token[0] == '\0') {
        snprintf(errstr, errlen, "TWILIO_AUTH_TOKEN: must not be empty");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->twilio_phone_number[0] == '\0' && cfg->twilio_messaging_service_sid[0] == '\0') {
        snprintf(errstr, errlen, "TWILIO_PHONE_NUMBER: set it or TWILIO_MESSAGING_SERVICE_SID (a message needs a sender)");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->twilio_phone_number[0] != '\0' && !sms_valid_sender(cfg->twilio_phone_number)) {
        snprintf(errstr, errlen, "TWILIO_PHONE_NUMBER: must be an E.164 number like +14155552345, a short code or an "
                                 "alphanumeric sender id");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->twilio_messaging_service_sid[0] != '\0' && !sms_valid_sid(cfg->twilio_messaging_service_sid, "MG")) {
        snprintf(errstr, errlen, "TWILIO_MESSAGING_SERVICE_SID: must be MG followed by 32 hex digits");
        rc = CMN_ERR_CONFIG;
    } else if (sms_request_url(cfg->twilio_api_url, cfg->twilio_account_sid, &probe) != 0) {
        snprintf(errstr, errlen, "TWILIO_API_URL: must be an http(s) URL without query, like https://api.twilio.com");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->status_callback_url[0] != '\0' && !sms_valid_http_url(cfg->status_callback_url)) {
        snprintf(errstr, errlen, "SMS_STATUS_CALLBACK_URL: must be an http(s) URL without fragment");
        rc = CMN_ERR_CONFIG;
    } else if (!cmn_valid_locale(cfg->fallback_locale)) {
        snprintf(errstr, errlen, "TEMPLATE_FALLBACK_LOCALE: must be a BCP 47 language tag like en");
        rc = CMN_ERR_CONFIG;
    } else if (cfg->retry_cap_ms < cfg->retry_base_ms) {
        snprintf(errstr, errlen, "RETRY_CAP_MS: must not be below RETRY_BASE_MS");
        rc = CMN_ERR_CONFIG;
    }
    cmn_buf_free(&probe);
    return rc;
}

/* ---------------------------------------------------------------- channel */

struct sms_channel {
    const sms_worker_config_t *cfg;
    const cmn_log_t *log;
    sms_templates_t *templates;
    char *url;          /* the Messages.json URL */
    const char *sender; /* rate-limit key, borrowed from cfg */
};

/* One prepared message. */
typedef struct sms_msg {
    const sms_channel_t *c; /* borrowed */
    char *form;             /* owned: the request body */
    size_t form_len;
    CURL *easy;             /* owned once submitted */
    struct curl_slist *headers;
} sms_msg_t;

sms_channel_t *sms_channel_new(const sms_worker_config_t *cfg, const cmn_log_t *log, char *errstr, size_t errlen)
{
    cmn_buf_t url = CMN_BUF_INIT;
    sms_channel_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->log = log;
    /* Twilio limits each sender; with only a Messaging Service the service
     * is the sender as far as we can tell. */
    c->sender = cfg->twilio_phone_number[0] != '\0' ? cfg->twilio_phone_number : cfg->twilio_messaging_service_sid;
    c->templates = sms_templates_new(cfg->templates_dir, SMS_TEMPLATE_FILE, cfg->fallback_locale, errstr, errlen);
    if (c->templates == NULL)
        goto fail;
    if (sms_request_url(cfg->twilio_api_url, cfg->twilio_account_sid, &url) != 0) {
        snprintf(errstr, errlen, "TWILIO_API_URL or TWILIO_ACCOUNT_SID is not valid");
        goto fail;
    }
    c->url = cmn_buf_steal(&url);
    return c;
fail:
    cmn_buf_free(&url);
    sms_channel_destroy(c);
    return NULL;
}

void sms_channel_destroy(sms_channel_t *c)
{
    if (c == NULL)
        return;
    sms_templates_destroy(c->templates);
    free(c->url);
    free(c);
}

static void msg_free(sms_msg_t *m)
{
    if (m == NULL)
        return;
    if (m->easy != NULL)
        curl_easy_cleanup(m->easy);
    curl_slist_free_all(m->headers);
    free(m->form);
    free(m);
}

/* Checks the recipient; on success writes the normalized number to e164. */
static int check_number(const sms_channel_t *c, const cmn_dispatch_t *d, char e164[CMN_PHONE_E164_MAX],
                        cmn_worker_result_t *res)
{
    cmn_phone_info_t info;
    int rc = cmn_phone_check(d->to, &info);
    if (rc == CMN_ERR_NOMEM) {
        cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
        return rc;
    }
    if (rc != 0 || !info.valid) {
        cmn_worker_result_permanent(res, "invalid_number", "invalid_number",
                                    "the recipient is not a valid phone number%s%s",
                                    info.region[0] != '\0' ? " for region " : "", info.region);
        return CMN_ERR_INVALID;
    }
    if (info.type == CMN_PHONE_FIXED_LINE) {
        cmn_worker_result_permanent(res, "landline", "landline",
                                    "the recipient is a fixed line (%s), which cannot receive SMS", info.region);
        return CMN_ERR_INVALID;
    }
    if (!cmn_phone_is_messageable(info.type)) {
        cmn_worker_result_permanent(res, "not_mobile", "not_mobile",
                                    "the recipient is a %s number (%s), which cannot receive SMS",
                                    cmn_phone_type_name(info.type), info.region);
        return CMN_ERR_INVALID;
    }
    cmn_log_debug(c->log, d->communication_id, "recipient is a %s number in %s", cmn_phone_type_name(info.type),
                  info.region);
    memcpy(e164, info.e164, CMN_PHONE_E164_MAX);
    return 0;
}

/* Renders the SMS body: the dispatch's explicit template when an SMS file
 * of that name exists (a request's template may name a WhatsApp or email
 * template instead), else the message type's. */
static int render(sms_channel_t *c, const cmn_dispatch_t *d, cmn_buf_t *body, char *locale_used,
                  cmn_worker_result_t *res)
{
    char why[256] = "";
    const char *locale = d->locale != NULL ? d->locale : d->recipient.locale;
    json_object *data = sms_templates_data_new(d->context, &d->recipient);
    int rc = CMN_ERR_NOTFOUND;
    if (data == NULL) {
        cmn_worker_result_retry(res, "out_of_memory", 0, "retryable: out of memory");
        return CMN_ERR_NOMEM;
    }
    if (d->template_name != NULL)
        rc = sms_templates_render(c->templates, d->template_name, locale, data, body, locale_used, why, sizeof why);
    if (rc == CMN_ERR_NOTFOUND || rc == CMN_ERR_INVALID)
        rc = sms_templates_render(c->templates, d->message_type, locale, data, body, locale_used, why, sizeof why);
    json_object_put(data);
    switch (rc) {
    case 0:
        return 0;
    case CMN_ERR_NOTFOUND:
        cmn_worker_result_permanent(res, "no_template", "no_template", "%s", why);
        break;
    case CMN_ERR_TEMPLATE:
    case CMN_ERR_INVALID:
        cmn_worker_result_permanent(res, "template_error", "template_error", "%s", why);
        break;
    default:
        /* A read error or memory shortage is about this process, not the
         * message: another attempt may well work. */
        cmn_worker_result_retry(res, "template_io", 0, "retryable: %s", why);
        break;
    }
    return rc;
}

static int sms_prepare(void *impl, const cmn_dispatch_t *d, void **out, cmn_worker_result_t *res)
{
    sms_channel_t *c = impl;
    char e164[CMN_PHONE_E164_MAX];
    char locale_used[SMS_LOCALE_MAX + 1] = "";
    char why[256] = "";
    const char *media[SMS_MAX_MEDIA];
    size_t n_media = 0;
    cmn_buf_t body = CMN_BUF_INIT, callback = CMN_BUF_INIT, form = CMN_BUF_INIT;
    cmn_sms_info_t info;
    sms_msg_t *m = NULL;
    int rc;

    *out = NULL;
    /* The number first: a landline must never cost a render or a request. */
    rc = check_number(c, d, e164, res);
    if (rc != 0)
        goto cleanup;
    rc = render(c, d, &body, locale_used, res);
    if (rc != 0)
        goto cleanup;
    rc = cmn_sms_analyze(body.data, &info);
    if (rc != 0) {
        cmn_worker_result_permanent(res, "invalid_body", "invalid_body", "the rendered body is not valid UTF-8");
        goto cleanup;
    }
    rc = cmn_sms_details_json(&info, res->details_json, sizeof res->details_json);
    if (rc != 0) {
        res->details_json[0] = '\0'; /* the message can go without its details */
        rc = 0;
    }
    if (!info.within_limit) {
        cmn_worker_result_permanent(res, "body_too_long", "body_too_long",
                                    "the rendered body has %zu characters (%zu %s units); the limit is %d",
                                    info.characters, info.units, cmn_sms_encoding_name(info.encoding),
                                    CMN_SMS_MAX_UNITS);
        rc = CMN_ERR_OVERFLOW;
        goto cleanup;
    }
    rc = sms_request_media_urls(d->context, media, SMS_MAX_MEDIA, &n_media, why, sizeof why);
    if (rc != 0) {
        cmn_worker_result_permanent(res, "invalid_media", "invalid_media", "%s", why);
        goto cleanup;
    }
    if (info.characters == 0 && n_media == 0) {
        cmn_worker_result_permanent(res, "empty_body", "empty_body", "the rendered body is empty and there is no media");
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    if (c->cfg->status_callback_url[0] != '\0') {
        rc = sms_request_callback_url(c->cfg->status_callback_url, d->communication_id, d->hop, d->attempt, &callback);
        if (rc != 0) {
            /* The configured base was checked at start, so only the length
             * can fail here; no retry will shorten it. */
            cmn_worker_result_permanent(res, "invalid_callback", "invalid_callback",
                                        "cannot build the StatusCallback URL: %s", cmn_strerror(rc));
            goto cleanup;
        }
    }
    sms_request_t req = {
        .to = e164,
        .from = c->cfg->twilio_phone_number,
        .messaging_service_sid = c->cfg->twilio_messaging_service_sid,
        .body = body.data,
        .status_callback = callback.data,
        .media_urls = media,
        .n_media = n_media,
    };
    rc = sms_request_form(&req, &form);
    m = rc == 0 ? calloc(1, sizeof *m) : NULL;
    if (m == NULL) {
        cmn_worker_result_retry(res, rc == CMN_ERR_INVALID ? "internal_error" : "out_of_memory", 0,
                                "retryable: cannot build the request (%s)", cmn_strerror(rc != 0 ? rc : CMN_ERR_NOMEM));
        rc = rc != 0 ? rc : CMN_ERR_NOMEM;
        goto cleanup;
    }
    m->c = c;
    m->form_len = form.len;
    m->form = cmn_buf_steal(&form);
    *out = m;
    cmn_log_debug(c->log, d->communication_id, "prepared %s (locale %s, %s, %zu segments, %zu characters)",
                  n_media > 0 ? "mms" : "sms", locale_used, cmn_sms_encoding_name(info.encoding), info.segments,
                  info.characters);
cleanup:
    cmn_buf_free(&body);
    cmn_buf_free(&callback);
    cmn_buf_free(&form);
    return rc;
}

static const char *sms_sender(void *impl, const void *msg)
{
    const sms_msg_t *m = msg;
    return m->c->sender;
}

static int sms_submit(void *impl, void *msg, CURL **easy)
{
    sms_channel_t *c = impl;
    sms_msg_t *m = msg;
    const sms_worker_config_t *cfg = c->cfg;
    *easy = NULL;
    if (m->easy == NULL)
        m->easy = curl_easy_init();
    if (m->headers == NULL) {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
        struct curl_slist *h2 = h != NULL ? curl_slist_append(h, "Accept: application/json") : NULL;
        if (h2 == NULL)
            curl_slist_free_all(h);
        m->headers = h2;
    }
    if (m->easy == NULL || m->headers == NULL)
        return CMN_ERR_NOMEM;
    CURL *e = m->easy;
    int ok = curl_easy_setopt(e, CURLOPT_URL, c->url) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->form) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->form_len) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPHEADER, m->headers) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) == CURLE_OK;
    /* libcurl copies both strings; the token never enters our own buffers. */
    ok = ok && curl_easy_setopt(e, CURLOPT_USERNAME, cfg->twilio_account_sid) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PASSWORD, cfg->twilio_auth_token) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, cfg->twilio_timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, "crm-sms-worker/" "0.1") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    /* A redirect would resend the credentials elsewhere; Twilio never
     * redirects this endpoint. */
    ok = ok && curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    if (ok && cfg->twilio_ca_file[0] != '\0')
        ok = curl_easy_setopt(e, CURLOPT_CAINFO, cfg->twilio_ca_file) == CURLE_OK;
    if (!ok)
        return CMN_ERR_INVALID;
    *easy = e;
    return 0;
}

void sms_classify_response(const cmn_worker_response_t *resp, cmn_worker_result_t *res)
{
    if (resp->code != CURLE_OK) {
        /* No answer (connection refused, timeout, TLS): Twilio may or may
         * not have the message; the retry tiers decide, as for a 5xx. */
        cmn_provider_outcome_t o = cmn_provider_classify_twilio(0, 0);
        cmn_worker_result_retry(res, o.reason, 0, "retryable: %s", curl_easy_strerror(resp->code));
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        sms_twilio_created_t created;
        if (sms_twilio_parse_created(resp->body, resp->body_len, &created) == 0) {
            cmn_worker_result_sent(res, created.sid, "twilio_status: %s",
                                   created.status[0] != '\0' ? created.status : "unknown");
        } else {
            /* Twilio took the message: sending it again would duplicate it,
             * so it counts as sent even though its sid is unknown. */
            cmn_worker_result_sent(res, NULL, "twilio_status: unknown (HTTP %ld without a message sid)",
                                   resp->status);
        }
        return;
    }
    sms_twilio_error_t err;
    char code[CMN_WORKER_CODE_MAX], text[SMS_TWILIO_TEXT_MAX + 32];
    int parsed = sms_twilio_parse_error(resp->body, resp->body_len, &err) == 0;
    long twilio_code = parsed ? err.code : 0;
    cmn_provider_outcome_t o = cmn_provider_classify_twilio((int)resp->status, twilio_code);
    if (twilio_code != 0)
        snprintf(code, sizeof code, "%ld", twilio_code);
    else
        snprintf(code, sizeof code, "http_%ld", resp->status);
    if (parsed && err.message[0] != '\0')
        snprintf(text, sizeof text, "%s", err.message);
    else
        snprintf(text, sizeof text, "HTTP %ld from the Messages API", resp->status);
    if (cmn_provider_class_is_retryable(o.cls)) {
        cmn_worker_result_retry(res, code, resp->retry_after_ms > 0 ? resp->retry_after_ms : 0, "retryable: %s",
                                text);
    } else {
        cmn_worker_result_permanent(res, code, o.reason, "%s", text);
    }
}

static void sms_classify(void *impl, void *msg, const cmn_worker_response_t *resp, cmn_worker_result_t *res)
{
    sms_classify_response(resp, res);
}

static void sms_release(void *impl, void *msg)
{
    msg_free(msg);
}

void sms_channel_bind(sms_channel_t *c, cmn_worker_channel_t *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->name = "sms";
    ch->channel = CMN_CHANNEL_SMS;
    ch->provider = "twilio";
    ch->impl = c;
    ch->capture_response = 1;
    ch->prepare = sms_prepare;
    ch->sender = sms_sender;
    ch->submit = sms_submit;
    ch->classify = sms_classify;
    ch->release = sms_release;
}
