/* sbx_api.c - the Twilio Messages API stand-in. See sbx_api.h. */
#include "sbx_api.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/sms.h"
#include "crm/time.h"
#include "crm/uuid.h"

#define API_VERSION "2010-04-01"
#define ACCOUNTS_PREFIX "/" API_VERSION "/Accounts/"
#define MESSAGES_SUFFIX "/Messages.json"
#define REQUESTS_PATH "/_sandbox/requests"
#define CALLBACKS_PATH "/_sandbox/callbacks"
#define ACCEPTED_PATH "/_sandbox/accepted"
#define FORM_TYPE "application/x-www-form-urlencoded"
#define MORE_INFO "https://www.twilio.com/docs/errors/"
#define CALLBACK_TIMEOUT_MS 5000

/* --------------------------------------------------------- validation */

static void set_error(sbx_error_t *err, int http_status, long code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(sbx_error_t *err, int http_status, long code, const char *fmt, ...)
{
    va_list ap;
    err->http_status = http_status;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* The Twilio error code for a bad value of parameter name. */
static long value_error_code(const char *name)
{
    if (strcmp(name, "To") == 0)
        return 21211;
    if (strcmp(name, "From") == 0)
        return 21212;
    if (strcmp(name, "StatusCallback") == 0)
        return 21609;
    if (strcmp(name, "MediaUrl") == 0)
        return 21620;
    return 20001;
}

/* A From that is not a number: a short code (5 or 6 digits) or an
 * alphanumeric sender id (1 to 11 letters, digits and spaces, at least one
 * letter). The spec types From as phone-number, but its description and
 * Twilio accept both. */
static int other_sender(const char *s)
{
    size_t n = strlen(s);
    size_t digits = strspn(s, "0123456789");
    if (digits == n)
        return n == 5 || n == 6;
    if (n > 11 || s[0] == ' ')
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

static int present(const sbx_form_t *f, const char *name)
{
    const char *v = sbx_form_get(f, name);
    return v != NULL && v[0] != '\0';
}

int sbx_validate(const sbx_schema_t *schema, const sbx_form_t *form, sbx_error_t *err)
{
    char why[256];
    memset(err, 0, sizeof *err);
    for (size_t i = 0; i < form->n; i++) {
        const char *name = form->pairs[i].name;
        const char *value = form->pairs[i].value;
        const sbx_param_t *p = sbx_schema_find(schema, name);
        if (p == NULL) {
            set_error(err, 400, 20001, "Unknown parameter '%s': %s has no such property", name, schema->title);
            return -1;
        }
        int is_array = p->rule.type == SBX_T_ARRAY;
        if (!is_array && sbx_form_count(form, name) > 1) {
            set_error(err, 400, 20001, "Parameter '%s' is given %zu times; it takes one value", name,
                      sbx_form_count(form, name));
            return -1;
        }
        why[0] = '\0';
        /* A shallow copy, only read: the compiled pattern stays shared. */
        sbx_rule_t rule = is_array ? p->item : p->rule;
        if (strcmp(name, "From") == 0 && other_sender(value))
            rule.format = SBX_F_NONE;
        if (sbx_rule_check(&rule, value, why, sizeof why) != 0) {
            long code = value_error_code(name);
            if (code == 21211)
                set_error(err, 400, code, "The 'To' number %s is not a valid phone number (%s).", value, why);
            else
                set_error(err, 400, code, "Invalid '%s' parameter: %s", name, why);
            return -1;
        }
    }
    for (size_t i = 0; i < schema->n; i++) {
        if (schema->params[i].required && !present(form, schema->params[i].name)) {
            if (strcmp(schema->params[i].name, "To") == 0)
                set_error(err, 400, 21604, "A 'To' phone number is required.");
            else
                set_error(err, 400, 20001, "Parameter '%s' is required.", schema->params[i].name);
            return -1;
        }
    }
    /* Not in the schema (it marks only To required) but in Twilio's docs. */
    if (!present(form, "From") && !present(form, "MessagingServiceSid")) {
        set_error(err, 400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.");
        return -1;
    }
    if (!present(form, "Body") && !present(form, "MediaUrl") && !present(form, "ContentSid")) {
        set_error(err, 400, 21602, "Message body is required.");
        return -1;
    }
    const char *body = sbx_form_get(form, "Body");
    if (body != NULL && sbx_utf8_length(body) > SBX_BODY_MAX_CHARS) {
        set_error(err, 400, 21617, "The concatenated message body exceeds the %d character limit.",
                  SBX_BODY_MAX_CHARS);
        return -1;
    }
    if (sbx_form_count(form, "MediaUrl") > SBX_MEDIA_MAX) {
        set_error(err, 400, 21623, "Number of media files exceeds allowed limit of %d.", SBX_MEDIA_MAX);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- scripts */

int sbx_script_for(const char *to, sbx_script_t *out)
{
    char digits[32];
    size_t n = 0;
    memset(out, 0, sizeof *out);
    out->http_status = 201;
    for (const char *p = to != NULL ? to : ""; *p != '\0' && n < sizeof digits - 1; p++) {
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    }
    digits[n] = '\0';
    if (n < 6)
        return 0;
    const char *last5 = digits + n - 5;
    const char *last6 = digits + n - 6;
    if (strcmp(last5, "21211") == 0) {
        *out = (sbx_script_t){400, 21211, "The 'To' number %s is not a valid phone number.", 0, 0, 0};
    } else if (strcmp(last5, "21610") == 0) {
        *out = (sbx_script_t){400, 21610, "Attempt to send to unsubscribed recipient", 0, 0, 0};
    } else if (strcmp(last5, "21614") == 0) {
        *out = (sbx_script_t){400, 21614, "'To' number is not a valid mobile number", 0, 0, 0};
    } else if (strcmp(last5, "20429") == 0) {
        *out = (sbx_script_t){429, 20429, "Too Many Requests", 7, 0, 0};
    } else if (strcmp(last5, "20500") == 0) {
        *out = (sbx_script_t){500, 20500, "Internal Server Error", 0, 0, 0};
    } else if (strcmp(last5, "20503") == 0) {
        *out = (sbx_script_t){503, 20503, "Service Unavailable", 2, 0, 0};
    } else if (strcmp(last5, "30006") == 0) {
        *out = (sbx_script_t){201, 0, NULL, 0, 0, 30006};
    } else if (strcmp(last5, "63016") == 0) {
        *out = (sbx_script_t){201, 0, NULL, 0, 0, 63016};
    } else if (last6[0] == '8' && last6[1] == '8') {
        *out = (sbx_script_t){201, 0, NULL, 0, atoi(last6 + 2), 0};
    } else {
        return 0;
    }
    return 1;
}

/* The digits of s, at most outlen - 1 of them. */
static size_t digits_of(const char *s, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = s != NULL ? s : ""; *p != '\0' && n < outlen - 1; p++) {
        if (*p >= '0' && *p <= '9')
            out[n++] = *p;
    }
    out[n] = '\0';
    return n;
}

size_t sbx_receipts_for(const char *to, int has_content_sid, sbx_receipt_t out[SBX_RECEIPTS_MAX])
{
    char digits[32];
    size_t n = digits_of(to, digits, sizeof digits);
    const char *last5 = n >= 6 ? digits + n - 5 : "";
    size_t k = 0;
    if (strcmp(last5, "30003") == 0) {
        out[k++] = (sbx_receipt_t){"queued", 0};
        out[k++] = (sbx_receipt_t){"sent", 0};
        out[k++] = (sbx_receipt_t){"undelivered", 30003};
    } else if (strcmp(last5, "30006") == 0) {
        out[k++] = (sbx_receipt_t){"sent", 0};
        out[k++] = (sbx_receipt_t){"undelivered", 30006};
    } else if (strcmp(last5, "30008") == 0) {
        out[k++] = (sbx_receipt_t){"failed", 30008};
    } else if (strcmp(last5, "63016") == 0 && !has_content_sid) {
        /* Only a free-form Body hits the window: an approved template
         * (ContentSid) is delivered like any other message. */
        out[k++] = (sbx_receipt_t){"sent", 0};
        out[k++] = (sbx_receipt_t){"failed", 63016};
    } else if (strcmp(last5, "00000") == 0) {
        out[k++] = (sbx_receipt_t){"sent", 0};
    } else {
        out[k++] = (sbx_receipt_t){"sent", 0};
        out[k++] = (sbx_receipt_t){"delivered", 0};
        if (to != NULL && strncmp(to, "whatsapp:", 9) == 0)
            out[k++] = (sbx_receipt_t){"read", 0};
    }
    return k;
}

/* The value of query parameter name in url (not decoded: the workers write
 * UUIDs and digits), copied into out; 1 when present. */
static int query_value(const char *url, const char *name, char *out, size_t outlen)
{
    const char *q = url != NULL ? strchr(url, '?') : NULL;
    size_t nlen = strlen(name);
    out[0] = '\0';
    while (q != NULL) {
        q++;
        size_t len = strcspn(q, "&#");
        if (len > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t vlen = len - nlen - 1;
            if (vlen >= outlen)
                vlen = outlen - 1;
            memcpy(out, q + nlen + 1, vlen);
            out[vlen] = '\0';
            return 1;
        }
        q = q[len] == '&' ? q + len : NULL;
    }
    return 0;
}

int sbx_callback_ids(const char *url, char *id, size_t idlen, int *hop)
{
    char hop_text[16];
    *hop = -1;
    if (!query_value(url, "communication_id", id, idlen) || id[0] == '\0') {
        id[0] = '\0';
        return 0;
    }
    if (query_value(url, "hop", hop_text, sizeof hop_text) && hop_text[0] != '\0' &&
        strspn(hop_text, "0123456789") == strlen(hop_text) && strlen(hop_text) < 6)
        *hop = atoi(hop_text);
    return 1;
}

/* --------------------------------------------------------------- state */

typedef struct callback {
    struct callback *next;
    int64_t due_ms; /* monotonic */
    char *url;
    char *form;
    char signature[64];
    char sid[40];
    char status[24];
} callback_t;

struct sbx_api {
    sbx_api_config_t cfg;
    const sbx_schema_t *schema;
    const cmn_log_t *log;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    json_object *requests;  /* array of recorded requests */
    json_object *callbacks; /* array of posted callbacks */
    json_object *accepted;  /* "<id>/<hop>" -> count of 201 answers */
    int64_t accepted_total;
    uint64_t storm_state;   /* the storm's generator */
    int64_t seq;
    callback_t *pending;    /* unsorted; few at a time */
    int stopping;
    int thread_started;
    pthread_t thread;
};

static void callback_free(callback_t *c)
{
    if (c == NULL)
        return;
    free(c->url);
    free(c->form);
    free(c);
}

/* Appends entry (taking it) to arr, dropping the oldest past max. Caller
 * holds the lock. */
static void record_locked(json_object *arr, json_object *entry, size_t max)
{
    if (json_object_array_add(arr, entry) != 0) {
        json_object_put(entry);
        return;
    }
    while (max > 0 && json_object_array_length(arr) > max)
        json_object_array_del_idx(arr, 0, 1);
}

/* ----------------------------------------------------------- callbacks */

/* X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL followed by every
 * parameter name and value, sorted by name)). Twilio signs what it posts
 * that way, and the webhook receiver checks it. */
static int sign(const char *token, const char *url, const sbx_form_t *params, char out[64])
{
    cmn_buf_t data = CMN_BUF_INIT;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t order[32];
    size_t n = params->n < 32 ? params->n : 32;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++) { /* insertion sort: a dozen parameters */
        size_t k = i;
        while (k > 0 && strcmp(params->pairs[order[k - 1]].name, params->pairs[order[k]].name) > 0) {
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
            k--;
        }
    }
    int rc = cmn_buf_puts(&data, url);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = cmn_buf_puts(&data, params->pairs[order[i]].name);
        if (rc == 0)
            rc = cmn_buf_puts(&data, params->pairs[order[i]].value);
    }
    if (rc == 0 && HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)data.data, data.len, mac,
                        &maclen) == NULL)
        rc = CMN_ERR_INVALID;
    if (rc == 0)
        EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    cmn_buf_free(&data);
    return rc;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static void post_callback(sbx_api_t *api, const callback_t *c)
{
    long status = 0;
    CURLcode code = CURLE_FAILED_INIT;
    struct curl_slist *headers = NULL;
    char sig_header[96];
    CURL *easy = curl_easy_init();
    snprintf(sig_header, sizeof sig_header, "X-Twilio-Signature: %s", c->signature);
    headers = curl_slist_append(headers, sig_header);
    if (easy != NULL && headers != NULL) {
        curl_easy_setopt(easy, CURLOPT_URL, c->url);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, c->form);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_USERAGENT, "TwilioProxy/1.1");
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)CALLBACK_TIMEOUT_MS);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        code = curl_easy_perform(easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    }
    json_object *entry = json_object_new_object();
    if (entry != NULL) {
        char now[40];
        cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
        cmn_json_add_string(entry, "posted_at", now);
        cmn_json_add_string(entry, "url", c->url);
        cmn_json_add_string(entry, "form", c->form);
        cmn_json_add_string(entry, "signature", c->signature);
        cmn_json_add_string(entry, "message_sid", c->sid);
        cmn_json_add_string(entry, "message_status", c->status);
        cmn_json_add_int64(entry, "response_status", status);
        cmn_json_add_string(entry, "error", code == CURLE_OK ? NULL : curl_easy_strerror(code));
        pthread_mutex_lock(&api->lock);
        record_locked(api->callbacks, entry, api->cfg.record_max);
        pthread_mutex_unlock(&api->lock);
    }
    const char *kv[] = {"message_sid", c->sid, "message_status", c->status, NULL};
    cmn_logkv(api->log, code == CURLE_OK ? CMN_LOG_INFO : CMN_LOG_WARN, NULL, kv, "status callback answered %ld%s%s",
              status, code == CURLE_OK ? "" : ": ", code == CURLE_OK ? "" : curl_easy_strerror(code));
    curl_slist_free_all(headers);
    if (easy != NULL)
        curl_easy_cleanup(easy);
}

static void *callback_thread(void *arg)
{
    sbx_api_t *api = arg;
    pthread_mutex_lock(&api->lock);
    while (!api->stopping) {
        callback_t **best = NULL;
        for (callback_t **pp = &api->pending; *pp != NULL; pp = &(*pp)->next) {
            if (best == NULL || (*pp)->due_ms < (*best)->due_ms)
                best = pp;
        }
        int64_t now = cmn_monotonic_ms();
        if (best == NULL || (*best)->due_ms > now) {
            /* Sleep until the next is due (or 1 s); a new callback or the
             * stop wakes the thread earlier. */
            int64_t wait_ms = best == NULL ? 1000 : (*best)->due_ms - now;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait_ms / 1000);
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&api->wake, &api->lock, &ts);
            continue;
        }
        callback_t *c = *best;
        *best = c->next;
        pthread_mutex_unlock(&api->lock);
        post_callback(api, c);
        callback_free(c);
        pthread_mutex_lock(&api->lock);
    }
    pthread_mutex_unlock(&api->lock);
    return NULL;
}

/* Queues the status callback of message sid reaching status after delay_ms. */
static void queue_callback(sbx_api_t *api, const sbx_form_t *req, const char *sid, const char *status, long error,
                           int64_t delay_ms)
{
    const char *url = sbx_form_get(req, "StatusCallback");
    sbx_form_t params = {.pairs = NULL, .n = 0};
    sbx_pair_t pairs[12];
    cmn_buf_t form = CMN_BUF_INIT;
    char code[16];
    size_t n = 0;
    callback_t *c = calloc(1, sizeof *c);
    if (c == NULL || url == NULL)
        goto cleanup;
    snprintf(code, sizeof code, "%ld", error);
    /* The fields Twilio posts for an SMS (webhook_and_error_examples.json,
     * status_callback.fields). */
    pairs[n++] = (sbx_pair_t){"MessageSid", (char *)sid};
    pairs[n++] = (sbx_pair_t){"SmsSid", (char *)sid};
    pairs[n++] = (sbx_pair_t){"AccountSid", (char *)api->cfg.account_sid};
    if (present(req, "MessagingServiceSid"))
        pairs[n++] = (sbx_pair_t){"MessagingServiceSid", (char *)sbx_form_get(req, "MessagingServiceSid")};
    if (present(req, "From"))
        pairs[n++] = (sbx_pair_t){"From", (char *)sbx_form_get(req, "From")};
    pairs[n++] = (sbx_pair_t){"To", (char *)sbx_form_get(req, "To")};
    pairs[n++] = (sbx_pair_t){"MessageStatus", (char *)status};
    pairs[n++] = (sbx_pair_t){"SmsStatus", (char *)status};
    if (error != 0)
        pairs[n++] = (sbx_pair_t){"ErrorCode", code};
    pairs[n++] = (sbx_pair_t){"ApiVersion", API_VERSION};
    params.pairs = pairs;
    params.n = n;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc = cmn_buf_putc(&form, '&');
        char *k = rc == 0 ? curl_easy_escape(NULL, pairs[i].name, 0) : NULL;
        char *v = k != NULL ? curl_easy_escape(NULL, pairs[i].value, 0) : NULL;
        rc = v != NULL ? cmn_buf_printf(&form, "%s=%s", k, v) : CMN_ERR_NOMEM;
        curl_free(k);
        curl_free(v);
    }
    if (rc != 0 || sign(api->cfg.auth_token, url, &params, c->signature) != 0)
        goto cleanup;
    c->url = strdup(url);
    c->form = cmn_buf_steal(&form);
    if (c->url == NULL || c->form == NULL)
        goto cleanup;
    snprintf(c->sid, sizeof c->sid, "%s", sid);
    snprintf(c->status, sizeof c->status, "%s", status);
    c->due_ms = cmn_monotonic_ms() + delay_ms;
    pthread_mutex_lock(&api->lock);
    c->next = api->pending;
    api->pending = c;
    pthread_cond_signal(&api->wake);
    pthread_mutex_unlock(&api->lock);
    c = NULL;
cleanup:
    cmn_buf_free(&form);
    callback_free(c);
}

/* ----------------------------------------------------------- lifecycle */

sbx_api_t *sbx_api_new(const sbx_api_config_t *cfg, const sbx_schema_t *schema, const cmn_log_t *log, char *errstr,
                       size_t errlen)
{
    if (cfg == NULL || schema == NULL || log == NULL || cfg->account_sid == NULL || cfg->auth_token == NULL ||
        cfg->auth_token[0] == '\0') {
        snprintf(errstr, errlen, "sandbox: account SID and auth token are required");
        return NULL;
    }
    sbx_api_t *api = calloc(1, sizeof *api);
    if (api == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    api->cfg = *cfg;
    api->schema = schema;
    api->log = log;
    api->requests = json_object_new_array();
    api->callbacks = json_object_new_array();
    api->accepted = json_object_new_object();
    api->storm_state = cfg->storm.seed;
    if (api->requests == NULL || api->callbacks == NULL || api->accepted == NULL ||
        pthread_mutex_init(&api->lock, NULL) != 0) {
        json_object_put(api->requests);
        json_object_put(api->callbacks);
        json_object_put(api->accepted);
        free(api);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pthread_cond_init(&api->wake, NULL);
    if (cfg->callbacks) {
        if (pthread_create(&api->thread, NULL, callback_thread, api) != 0) {
            snprintf(errstr, errlen, "cannot start the callback thread");
            sbx_api_destroy(api);
            return NULL;
        }
        api->thread_started = 1;
    }
    return api;
}

void sbx_api_destroy(sbx_api_t *api)
{
    if (api == NULL)
        return;
    pthread_mutex_lock(&api->lock);
    api->stopping = 1;
    pthread_cond_signal(&api->wake);
    pthread_mutex_unlock(&api->lock);
    if (api->thread_started)
        pthread_join(api->thread, NULL);
    while (api->pending != NULL) {
        callback_t *c = api->pending;
        api->pending = c->next;
        callback_free(c);
    }
    json_object_put(api->requests);
    json_object_put(api->callbacks);
    json_object_put(api->accepted);
    pthread_cond_destroy(&api->wake);
    pthread_mutex_destroy(&api->lock);
    free(api);
}

/* ------------------------------------------------------------- answers */

static void twilio_error(cmn_http_response_t *resp, int http_status, long code, const char *message)
{
    json_object *o = json_object_new_object();
    char info[96];
    snprintf(info, sizeof info, MORE_INFO "%ld", code);
    resp->status = http_status;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    cmn_buf_reset(&resp->body);
    if (o == NULL)
        return;
    cmn_json_add_int64(o, "code", code);
    cmn_json_add_string(o, "message", message);
    cmn_json_add_string(o, "more_info", info);
    cmn_json_add_int64(o, "status", http_status);
    cmn_json_to_buf(o, &resp->body);
    json_object_put(o);
}

/* "Thu, 24 Aug 2023 05:01:45 +0000": the RFC 2822 dates of the resource. */
static void rfc2822_now(char *out, size_t outlen)
{
    static const char *const DAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", DAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The 201 body, shaped like the official "create" example. */
static int created_body(const sbx_api_t *api, const sbx_form_t *f, const char *sid, cmn_buf_t *out)
{
    char date[40], num[16], uri[160], media[200];
    json_object *o = json_object_new_object();
    json_object *subs = json_object_new_object();
    if (o == NULL || subs == NULL) {
        json_object_put(o);
        json_object_put(subs);
        return CMN_ERR_NOMEM;
    }
    const char *body = sbx_form_get(f, "Body");
    rfc2822_now(date, sizeof date);
    snprintf(uri, sizeof uri, "/" API_VERSION "/Accounts/%s/Messages/%s.json", api->cfg.account_sid, sid);
    snprintf(media, sizeof media, "/" API_VERSION "/Accounts/%s/Messages/%s/Media.json", api->cfg.account_sid, sid);
    cmn_json_add_string(o, "account_sid", api->cfg.account_sid);
    cmn_json_add_string(o, "api_version", API_VERSION);
    cmn_json_add_string(o, "body", body != NULL ? body : "");
    cmn_json_add_string(o, "date_created", date);
    json_object_object_add(o, "date_sent", NULL); /* queued: not sent yet */
    cmn_json_add_string(o, "date_updated", date);
    cmn_json_add_string(o, "direction", "outbound-api");
    json_object_object_add(o, "error_code", NULL);
    json_object_object_add(o, "error_message", NULL);
    json_object_object_add(o, "from", present(f, "From") ? json_object_new_string(sbx_form_get(f, "From")) : NULL);
    snprintf(num, sizeof num, "%zu", sbx_form_count(f, "MediaUrl"));
    cmn_json_add_string(o, "num_media", num);
    cmn_sms_info_t info;
    if (cmn_sms_analyze(body != NULL ? body : "", &info) != 0)
        info.segments = 0;
    snprintf(num, sizeof num, "%zu", info.segments);
    cmn_json_add_string(o, "num_segments", num);
    json_object_object_add(o, "price", NULL);
    json_object_object_add(o, "price_unit", NULL);
    json_object_object_add(o, "messaging_service_sid",
                           present(f, "MessagingServiceSid")
                               ? json_object_new_string(sbx_form_get(f, "MessagingServiceSid"))
                               : NULL);
    cmn_json_add_string(o, "sid", sid);
    cmn_json_add_string(o, "status", "queued");
    cmn_json_add_string(subs, "media", media);
    json_object_object_add(o, "subresource_uris", subs);
    cmn_json_add_string(o, "to", sbx_form_get(f, "To"));
    cmn_json_add_string(o, "uri", uri);
    int rc = cmn_json_to_buf(o, out);
    json_object_put(o);
    return rc;
}

/* ------------------------------------------------------------ requests */

/* 1 when the Authorization header is Basic for the configured account. */
static int authenticated(const sbx_api_t *api, const cmn_http_request_t *req, char *user, size_t userlen)
{
    const char *h = cmn_http_request_header(req, "Authorization");
    unsigned char decoded[512];
    user[0] = '\0';
    if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
        return 0;
    const char *b64 = h + 6;
    while (*b64 == ' ')
        b64++;
    size_t len = strlen(b64);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= sizeof decoded)
        return 0;
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return 0;
    /* EVP_DecodeBlock counts the padding as output bytes. */
    if (len >= 1 && b64[len - 1] == '=')
        n--;
    if (len >= 2 && b64[len - 2] == '=')
        n--;
    decoded[n] = '\0';
    char *colon = memchr(decoded, ':', (size_t)n);
    if (colon == NULL)
        return 0;
    *colon = '\0';
    size_t ulen = strlen((const char *)decoded);
    if (ulen >= userlen)
        return 0; /* longer than any account SID */
    memcpy(user, decoded, ulen + 1);
    const char *pass = colon + 1;
    size_t plen = strlen(pass), tlen = strlen(api->cfg.auth_token);
    int user_ok = strcmp((const char *)decoded, api->cfg.account_sid) == 0;
    /* Constant time over the token, so timing does not leak it. */
    int pass_ok = plen == tlen && CRYPTO_memcmp(pass, api->cfg.auth_token, tlen) == 0;
    return user_ok && pass_ok;
}

/* The form as recorded: array properties (MediaUrl) as arrays, the rest as
 * strings (a repeated scalar keeps its last value; validation refused it). */
static json_object *params_json(const sbx_api_t *api, const sbx_form_t *f)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; o != NULL && i < f->n; i++) {
        const sbx_param_t *p = sbx_schema_find(api->schema, f->pairs[i].name);
        if (p != NULL && p->rule.type == SBX_T_ARRAY) {
            json_object *arr = NULL;
            if (!json_object_object_get_ex(o, f->pairs[i].name, &arr)) {
                arr = json_object_new_array();
                json_object_object_add(o, f->pairs[i].name, arr);
            }
            json_object_array_add(arr, json_object_new_string(f->pairs[i].value));
        } else {
            cmn_json_add_string(o, f->pairs[i].name, f->pairs[i].value);
        }
    }
    return o;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One more accepted send of (id, hop) for /_sandbox/accepted. */
static void count_accepted(sbx_api_t *api, const char *id, int hop)
{
    char key[96];
    json_object *count = NULL;
    snprintf(key, sizeof key, "%s/%d", id, hop < 0 ? 0 : hop);
    pthread_mutex_lock(&api->lock);
    if (json_object_object_get_ex(api->accepted, key, &count))
        json_object_int_inc(count, 1);
    else
        json_object_object_add(api->accepted, key, json_object_new_int64(1));
    api->accepted_total++;
    pthread_mutex_unlock(&api->lock);
}

static void accepted_answer(sbx_api_t *api, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    if (strcmp(req->method, "DELETE") == 0) {
        json_object *fresh = json_object_new_object();
        if (fresh == NULL) {
            resp->status = 500;
            return;
        }
        pthread_mutex_lock(&api->lock);
        json_object *old = api->accepted;
        api->accepted = fresh;
        api->accepted_total = 0;
        pthread_mutex_unlock(&api->lock);
        json_object_put(old);
        resp->status = 204;
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, DELETE\r\n");
        twilio_error(resp, 405, 20004, "Method not allowed");
        return;
    }
    pthread_mutex_lock(&api->lock);
    const char *map =
        json_object_to_json_string_ext(api->accepted, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = cmn_buf_printf(&resp->body, "{\"accepted\":%lld,\"by_id\":%s}", (long long)api->accepted_total,
                            map != NULL ? map : "{}");
    pthread_mutex_unlock(&api->lock);
    resp->status = rc == 0 ? 200 : 500;
}

static void create_message(sbx_api_t *api, const cmn_http_request_t *req, const char *path_sid,
                           cmn_http_response_t *resp)
{
    char user[128], why[256] = "", id[CMN_UUID_STR_LEN + 1], sid[40] = "", now[40], retry[48] = "";
    sbx_form_t form = {.pairs = NULL, .n = 0};
    sbx_error_t err = {0, 0, ""};
    sbx_script_t script;
    sbx_storm_kind_t storm = SBX_STORM_NONE;
    char comm_id[64] = "";
    int hop = -1;
    int parsed = 0;
    int scripted = 0;
    memset(&script, 0, sizeof script);

    if (!authenticated(api, req, user, sizeof user)) {
        set_error(&err, 401, 20003, "Authenticate");
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "WWW-Authenticate: Basic realm=\"Twilio API\"\r\n");
        goto answer;
    }
    why[0] = '\0';
    if (sbx_rule_check(&api->schema->account_sid, path_sid, why, sizeof why) != 0) {
        set_error(&err, 404, 20404, "The requested resource /" API_VERSION "/Accounts/%s/Messages.json was not found",
                  path_sid);
        goto answer;
    }
    if (strcmp(path_sid, user) != 0) {
        set_error(&err, 401, 20003, "Authenticate: the AccountSid in the URL is not the authenticated account");
        goto answer;
    }
    const char *ctype = cmn_http_request_header(req, "Content-Type");
    size_t tlen = strlen(FORM_TYPE);
    if (ctype == NULL || strncasecmp(ctype, FORM_TYPE, tlen) != 0 || (ctype[tlen] != '\0' && ctype[tlen] != ';')) {
        set_error(&err, 400, 20001, "Content-Type must be " FORM_TYPE " (got %s)", ctype != NULL ? ctype : "none");
        goto answer;
    }
    if (sbx_form_parse(req->body, req->body_len, &form, why, sizeof why) != 0) {
        set_error(&err, 400, 20001, "The request body is not valid form data: %s", why);
        goto answer;
    }
    parsed = 1;
    if (sbx_validate(api->schema, &form, &err) != 0)
        goto answer;
    pthread_mutex_lock(&api->lock);
    storm = sbx_storm_draw(&api->cfg.storm, &api->storm_state);
    pthread_mutex_unlock(&api->lock);
    if (storm == SBX_STORM_500) {
        set_error(&err, 500, 20500, "Internal Server Error");
        goto answer;
    }
    if (storm == SBX_STORM_429) {
        set_error(&err, 429, 20429, "Too Many Requests");
        if (api->cfg.storm.retry_after_s > 0)
            snprintf(retry, sizeof retry, "Retry-After: %d\r\n", api->cfg.storm.retry_after_s);
        goto answer;
    }
    if (storm == SBX_STORM_TIMEOUT) {
        /* Held past the client's time limit, then refused: the message is
         * never created, as when Twilio's edge gives up on a request. */
        sleep_ms(api->cfg.storm.timeout_ms);
        set_error(&err, 503, 20503, "Service Unavailable");
        goto answer;
    }
    scripted = api->cfg.scripts && sbx_script_for(sbx_form_get(&form, "To"), &script);
    if (scripted && script.delay_ms > 0)
        sleep_ms(script.delay_ms);
    if (scripted && script.http_status != 201) {
        char text[256];
        /* The scripted texts quote the number the way Twilio does. */
        if (strstr(script.message, "%s") != NULL)
            snprintf(text, sizeof text, "The 'To' number %s is not a valid phone number.", sbx_form_get(&form, "To"));
        else
            snprintf(text, sizeof text, "%s", script.message);
        set_error(&err, script.http_status, script.code, "%s", text);
        if (script.retry_after_s > 0)
            snprintf(retry, sizeof retry, "Retry-After: %d\r\n", script.retry_after_s);
        goto answer;
    }
    if (cmn_uuid_v4(id) != 0) {
        set_error(&err, 500, 20500, "Internal Server Error");
        goto answer;
    }
    /* "SM" (or "MM" with media) and 32 hex digits: the UUID's, unhyphenated. */
    size_t k = 0;
    sid[k++] = sbx_form_count(&form, "MediaUrl") > 0 ? 'M' : 'S';
    sid[k++] = 'M';
    for (size_t i = 0; id[i] != '\0' && k < 34; i++) {
        if (id[i] != '-')
            sid[k++] = id[i];
    }
    sid[k] = '\0';
    if (created_body(api, &form, sid, &resp->body) != 0) {
        set_error(&err, 500, 20500, "Internal Server Error");
        sid[0] = '\0';
        goto answer;
    }
    resp->status = 201;
    if (sbx_callback_ids(sbx_form_get(&form, "StatusCallback"), comm_id, sizeof comm_id, &hop))
        count_accepted(api, comm_id, hop);
    if (api->cfg.callbacks && present(&form, "StatusCallback")) {
        sbx_receipt_t receipts[SBX_RECEIPTS_MAX];
        size_t nr = sbx_receipts_for(sbx_form_get(&form, "To"), present(&form, "ContentSid"), receipts);
        int64_t d = api->cfg.callback_delay_ms;
        for (size_t i = 0; i < nr; i++)
            queue_callback(api, &form, sid, receipts[i].status, receipts[i].error, (int64_t)(i + 1) * d);
    }
answer:
    if (err.http_status != 0) {
        twilio_error(resp, err.http_status, err.code, err.message);
        if (retry[0] != '\0')
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "%s", retry);
    }
    /* Record the request whatever its outcome, so tests can tell "refused"
     * from "never arrived". */
    json_object *entry = json_object_new_object();
    if (entry != NULL) {
        cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
        cmn_json_add_string(entry, "received_at", now);
        cmn_json_add_string(entry, "method", req->method);
        cmn_json_add_string(entry, "path", req->path);
        cmn_json_add_string(entry, "account_sid", path_sid);
        cmn_json_add_string(entry, "content_type", cmn_http_request_header(req, "Content-Type"));
        cmn_json_add_int64(entry, "status", resp->status);
        if (err.code != 0)
            cmn_json_add_int64(entry, "error_code", err.code);
        if (sid[0] != '\0')
            cmn_json_add_string(entry, "sid", sid);
        if (storm != SBX_STORM_NONE)
            cmn_json_add_string(entry, "storm", sbx_storm_name(storm));
        if (parsed && comm_id[0] == '\0')
            sbx_callback_ids(sbx_form_get(&form, "StatusCallback"), comm_id, sizeof comm_id, &hop);
        if (comm_id[0] != '\0') {
            cmn_json_add_string(entry, "communication_id", comm_id);
            cmn_json_add_int64(entry, "hop", hop);
        }
        json_object_object_add(entry, "params", parsed ? params_json(api, &form) : NULL);
        pthread_mutex_lock(&api->lock);
        cmn_json_add_int64(entry, "seq", ++api->seq);
        record_locked(api->requests, entry, api->cfg.record_max);
        pthread_mutex_unlock(&api->lock);
    }
    /* Ids and codes only: numbers and bodies stay out of the log. */
    char status_text[16], code_text[16];
    snprintf(status_text, sizeof status_text, "%d", resp->status);
    snprintf(code_text, sizeof code_text, "%ld", err.code);
    const char *kv[] = {"status", status_text, "error_code", code_text, "sid", sid, NULL};
    cmn_logkv(api->log, CMN_LOG_INFO, NULL, kv, "POST Messages.json");
    sbx_form_clear(&form);
}

static void list_or_reset(sbx_api_t *api, const cmn_http_request_t *req, json_object **arr,
                          cmn_http_response_t *resp)
{
    if (strcmp(req->method, "GET") == 0) {
        pthread_mutex_lock(&api->lock);
        const char *text = json_object_to_json_string_ext(*arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        int rc = cmn_buf_puts(&resp->body, text != NULL ? text : "[]");
        pthread_mutex_unlock(&api->lock);
        resp->status = rc == 0 ? 200 : 500;
        return;
    }
    if (strcmp(req->method, "DELETE") == 0) {
        json_object *fresh = json_object_new_array();
        if (fresh == NULL) {
            resp->status = 500;
            return;
        }
        pthread_mutex_lock(&api->lock);
        json_object *old = *arr;
        *arr = fresh;
        pthread_mutex_unlock(&api->lock);
        json_object_put(old);
        resp->status = 204;
        return;
    }
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, DELETE\r\n");
    twilio_error(resp, 405, 20004, "Method not allowed");
}

void sbx_api_handle(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    sbx_api_t *api = ctx;
    const char *path = req->path;
    size_t plen = strlen(path), pre = strlen(ACCOUNTS_PREFIX), suf = strlen(MESSAGES_SUFFIX);
    if (strcmp(path, REQUESTS_PATH) == 0) {
        list_or_reset(api, req, &api->requests, resp);
        return;
    }
    if (strcmp(path, CALLBACKS_PATH) == 0) {
        list_or_reset(api, req, &api->callbacks, resp);
        return;
    }
    if (strcmp(path, ACCEPTED_PATH) == 0) {
        accepted_answer(api, req, resp);
        return;
    }
    if (plen > pre + suf && strncmp(path, ACCOUNTS_PREFIX, pre) == 0 &&
        strcmp(path + plen - suf, MESSAGES_SUFFIX) == 0) {
        char sid[64];
        size_t slen = plen - pre - suf;
        if (slen < sizeof sid && memchr(path + pre, '/', slen) == NULL) {
            memcpy(sid, path + pre, slen);
            sid[slen] = '\0';
            if (strcmp(req->method, "POST") == 0) {
                create_message(api, req, sid, resp);
            } else {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: POST\r\n");
                twilio_error(resp, 405, 20004, "Method not allowed");
            }
            return;
        }
    }
    char msg[300];
    snprintf(msg, sizeof msg, "The requested resource %.200s was not found", path);
    twilio_error(resp, 404, 20404, msg);
}
