/* msbx_api.c - the Cloud API stand-in's request handling. See msbx_api.h. */
#include "msbx_api.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "msbx_webhook.h"

#define REQUESTS_PATH "/_sandbox/requests"
#define ACCEPTED_PATH "/_sandbox/accepted"
#define WEBHOOKS_PATH "/_sandbox/webhooks"
#define WEBHOOK_TIMEOUT_MS 5000
#define SEGMENT_MAX 64

/* One request as recorded for /_sandbox/requests. */
typedef struct record {
    long seq;
    int64_t received_ms;
    char path[160];
    int status;
    long error_code;
    char wamid[64];
    char communication_id[64]; /* biz_opaque_callback_data, "" without */
    sbx_storm_kind_t storm;
    char *body; /* owned */
} record_t;

/* One status webhook waiting for its time. */
typedef struct webhook {
    struct webhook *next;
    int64_t due_ms; /* monotonic */
    char *body;     /* owned */
    char signature[MSBX_SIGNATURE_LEN];
    char wamid[64];
    char status[16];
} webhook_t;

struct msbx_api {
    msbx_api_config_t cfg;
    const msbx_examples_t *ex;
    const cmn_log_t *log;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    record_t *records;    /* ring of cfg.record_max, oldest at start */
    size_t start, count;
    long seq;
    uint64_t storm_state;  /* the storm's generator */
    json_object *accepted; /* "<communication id>" -> count of 200 answers */
    int64_t accepted_total;
    json_object *webhooks; /* array of posted webhooks */
    webhook_t *pending;    /* unsorted; few at a time */
    int stopping;
    int thread_started;
    pthread_t thread;
};

/* ------------------------------------------------------------- scripts */

int msbx_script_for(const char *to, msbx_script_t *out)
{
    static const struct {
        const char *suffix;
        msbx_script_t script;
    } SCRIPTS[] = {
        {"131047",
         {400, 131047, "(#131047) Re-engagement message",
          "Message failed to send because more than 24 hours have passed since the customer last replied to this "
          "number.",
          0, 0}},
        {"131056",
         {400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
          "Message failed to send because there were too many messages sent from this phone number to the same "
          "phone number in a short period of time.",
          0, 0}},
        {"130429", {429, 130429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached.", 0, 0}},
        {"131000", {500, 131000, "(#131000) Something went wrong", "Something went wrong.", 0, 0}},
        {"500500", {500, 0, "Internal Server Error", NULL, 1, 0}},
    };
    size_t n = to != NULL ? strlen(to) : 0;
    memset(out, 0, sizeof out[0]);
    for (size_t i = 0; i < sizeof SCRIPTS / sizeof SCRIPTS[0]; i++) {
        size_t sl = strlen(SCRIPTS[i].suffix);
        if (n > sl && strcmp(to + n - sl, SCRIPTS[i].suffix) == 0) {
            *out = SCRIPTS[i].script;
            return 1;
        }
    }
    /* ...88DDDD: a slow success. */
    if (n > 6 && to[n - 6] == '8' && to[n - 5] == '8' && isdigit((unsigned char)to[n - 4]) &&
        isdigit((unsigned char)to[n - 3]) && isdigit((unsigned char)to[n - 2]) && isdigit((unsigned char)to[n - 1])) {
        out->http_status = 200;
        out->delay_ms = atoi(to + n - 4);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ webhooks */

static void webhook_free(webhook_t *w)
{
    if (w == NULL)
        return;
    free(w->body);
    free(w);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* Appends entry (taking it) to the posted list, dropping the oldest past
 * record_max. Caller holds the lock. */
static void webhooks_record_locked(msbx_api_t *api, json_object *entry)
{
    if (json_object_array_add(api->webhooks, entry) != 0) {
        json_object_put(entry);
        return;
    }
    while (json_object_array_length(api->webhooks) > api->cfg.record_max)
        json_object_array_del_idx(api->webhooks, 0, 1);
}

static void post_webhook(msbx_api_t *api, const webhook_t *w)
{
    long status = 0;
    CURLcode code = CURLE_FAILED_INIT;
    struct curl_slist *headers = NULL;
    char sig_header[MSBX_SIGNATURE_LEN + 32];
    CURL *easy = curl_easy_init();
    snprintf(sig_header, sizeof sig_header, "X-Hub-Signature-256: %s", w->signature);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (headers != NULL)
        headers = curl_slist_append(headers, sig_header);
    if (easy != NULL && headers != NULL) {
        curl_easy_setopt(easy, CURLOPT_URL, api->cfg.webhook_url);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, w->body);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_USERAGENT, "facebookexternalua");
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        code = curl_easy_perform(easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    }
    json_object *entry = json_object_new_object();
    if (entry != NULL) {
        char now[40], why[64];
        cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
        cmn_json_add_string(entry, "posted_at", now);
        cmn_json_add_string(entry, "status", w->status);
        cmn_json_add_string(entry, "wamid", w->wamid);
        json_object *body = cmn_json_parse(w->body, strlen(w->body), why, sizeof why);
        json_object_object_add(entry, "body", body != NULL ? body : json_object_new_string(w->body));
        cmn_json_add_int64(entry, "response_status", status);
        cmn_json_add_string(entry, "error", code == CURLE_OK ? NULL : curl_easy_strerror(code));
        pthread_mutex_lock(&api->lock);
        webhooks_record_locked(api, entry);
        pthread_mutex_unlock(&api->lock);
    }
    const char *kv[] = {"wamid", w->wamid, "message_status", w->status, NULL};
    cmn_logkv(api->log, code == CURLE_OK ? CMN_LOG_INFO : CMN_LOG_WARN, NULL, kv, "status webhook answered %ld%s%s",
              status, code == CURLE_OK ? "" : ": ", code == CURLE_OK ? "" : curl_easy_strerror(code));
    curl_slist_free_all(headers);
    if (easy != NULL)
        curl_easy_cleanup(easy);
}

/* Posts pending webhooks when due, one at a time, so the statuses of one
 * message arrive in order. */
static void *webhook_thread(void *arg)
{
    msbx_api_t *api = arg;
    pthread_mutex_lock(&api->lock);
    while (!api->stopping) {
        webhook_t **best = NULL;
        for (webhook_t **pp = &api->pending; *pp != NULL; pp = &(*pp)->next) {
            if (best == NULL || (*pp)->due_ms < (*best)->due_ms)
                best = pp;
        }
        int64_t now = cmn_monotonic_ms();
        if (best == NULL || (*best)->due_ms > now) {
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
        webhook_t *w = *best;
        *best = w->next;
        pthread_mutex_unlock(&api->lock);
        post_webhook(api, w);
        webhook_free(w);
        pthread_mutex_lock(&api->lock);
    }
    pthread_mutex_unlock(&api->lock);
    return NULL;
}

/* Queues the status webhooks of an accepted send (msbx_receipts_for). */
static void queue_webhooks(msbx_api_t *api, const char *to, const char *wamid, const char *biz_opaque)
{
    msbx_receipt_t receipts[MSBX_RECEIPTS_MAX];
    size_t n = msbx_receipts_for(to, receipts);
    int64_t base = cmn_monotonic_ms();
    for (size_t i = 0; i < n; i++) {
        cmn_buf_t body = CMN_BUF_INIT;
        webhook_t *w = calloc(1, sizeof *w);
        msbx_status_in_t in = {
            .waba_id = api->cfg.waba_id,
            .display_phone_number = api->cfg.display_phone_number,
            .phone_number_id = api->cfg.phone_number_id,
            .wamid = wamid,
            .recipient_id = to,
            .biz_opaque = biz_opaque,
            .timestamp_s = cmn_now_ms() / 1000 + (int64_t)i,
            .receipt = &receipts[i],
        };
        if (w == NULL || msbx_status_payload(&in, &body) != 0 ||
            msbx_sign(api->cfg.app_secret, body.data, body.len, w->signature) != 0) {
            cmn_buf_free(&body);
            webhook_free(w);
            return;
        }
        w->body = cmn_buf_steal(&body);
        if (w->body == NULL) {
            webhook_free(w);
            return;
        }
        snprintf(w->wamid, sizeof w->wamid, "%s", wamid);
        snprintf(w->status, sizeof w->status, "%s", receipts[i].status);
        w->due_ms = base + (int64_t)(i + 1) * api->cfg.webhook_delay_ms;
        pthread_mutex_lock(&api->lock);
        w->next = api->pending;
        api->pending = w;
        pthread_cond_signal(&api->wake);
        pthread_mutex_unlock(&api->lock);
    }
}

/* ----------------------------------------------------------- lifecycle */

msbx_api_t *msbx_api_new(const msbx_api_config_t *cfg, const msbx_examples_t *ex, const cmn_log_t *log,
                         char *errstr, size_t errlen)
{
    if (cfg == NULL || ex == NULL || cfg->access_token == NULL || cfg->api_version == NULL ||
        cfg->phone_number_id == NULL || cfg->record_max == 0) {
        snprintf(errstr, errlen, "sandbox: invalid configuration");
        return NULL;
    }
    msbx_api_t *api = calloc(1, sizeof *api);
    if (api == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    api->records = calloc(cfg->record_max, sizeof *api->records);
    api->accepted = json_object_new_object();
    api->webhooks = json_object_new_array();
    if (api->records == NULL || api->accepted == NULL || api->webhooks == NULL ||
        pthread_mutex_init(&api->lock, NULL) != 0) {
        json_object_put(api->accepted);
        json_object_put(api->webhooks);
        free(api->records);
        free(api);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pthread_cond_init(&api->wake, NULL);
    api->cfg = *cfg;
    api->ex = ex;
    api->log = log;
    api->storm_state = cfg->storm.seed;
    if (cfg->webhook_url != NULL && cfg->webhook_url[0] != '\0') {
        if (cfg->app_secret == NULL || cfg->app_secret[0] == '\0' || cfg->waba_id == NULL ||
            cfg->display_phone_number == NULL) {
            snprintf(errstr, errlen, "sandbox: a webhook URL needs the app secret, WABA id and display number");
            msbx_api_destroy(api);
            return NULL;
        }
        if (pthread_create(&api->thread, NULL, webhook_thread, api) != 0) {
            snprintf(errstr, errlen, "cannot start the webhook thread");
            msbx_api_destroy(api);
            return NULL;
        }
        api->thread_started = 1;
    }
    return api;
}

static void records_clear(msbx_api_t *api)
{
    for (size_t i = 0; i < api->count; i++)
        free(api->records[(api->start + i) % api->cfg.record_max].body);
    api->start = 0;
    api->count = 0;
}

void msbx_api_destroy(msbx_api_t *api)
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
        webhook_t *w = api->pending;
        api->pending = w->next;
        webhook_free(w);
    }
    records_clear(api);
    json_object_put(api->accepted);
    json_object_put(api->webhooks);
    pthread_cond_destroy(&api->wake);
    pthread_mutex_destroy(&api->lock);
    free(api->records);
    free(api);
}

/* ------------------------------------------------------------- answers */

/* Answers the Graph error envelope. */
static void graph_error(cmn_http_response_t *resp, int status, long code, long subcode, const char *type,
                        const char *message, const char *details)
{
    char trace[CMN_UUID_STR_LEN + 1] = "";
    json_object *o = json_object_new_object();
    json_object *e = json_object_new_object();
    resp->status = status;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    if (o == NULL || e == NULL) {
        json_object_put(o);
        json_object_put(e);
        cmn_buf_puts(&resp->body, "{\"error\":{\"message\":\"out of memory\",\"type\":\"OAuthException\",\"code\":1}}");
        return;
    }
    cmn_json_add_string(e, "message", message);
    cmn_json_add_string(e, "type", type);
    cmn_json_add_int64(e, "code", code);
    if (subcode != 0)
        cmn_json_add_int64(e, "error_subcode", subcode);
    if (details != NULL) {
        json_object *d = json_object_new_object();
        if (d != NULL) {
            cmn_json_add_string(d, "messaging_product", "whatsapp");
            cmn_json_add_string(d, "details", details);
            json_object_object_add(e, "error_data", d);
        }
    }
    /* Graph's fbtrace_id is an opaque token per request. */
    if (cmn_uuid_v4(trace) == 0)
        cmn_json_add_string(e, "fbtrace_id", trace);
    json_object_object_add(o, "error", e);
    cmn_json_to_buf(o, &resp->body);
    json_object_put(o);
}

#define WAMID_HEX 40

/* A fresh message id in the wamid.<opaque> form Meta uses: "wamid.HBgL"
 * and 40 upper-case hex digits from two random UUIDs. out must hold 51 bytes. */
static void new_wamid(char out[64])
{
    char a[CMN_UUID_STR_LEN + 1] = "", b[CMN_UUID_STR_LEN + 1] = "";
    char hex[WAMID_HEX + 1];
    size_t k = 0;
    cmn_uuid_v4(a);
    cmn_uuid_v4(b);
    for (const char *p = a; *p != '\0' && k < WAMID_HEX; p++) {
        if (*p != '-')
            hex[k++] = (char)toupper((unsigned char)*p);
    }
    for (const char *p = b; *p != '\0' && k < WAMID_HEX; p++) {
        if (*p != '-')
            hex[k++] = (char)toupper((unsigned char)*p);
    }
    hex[k] = '\0';
    memcpy(out, "wamid.HBgL", 10);
    memcpy(out + 10, hex, k + 1);
}

static void success(cmn_http_response_t *resp, const char *to, const char *wamid)
{
    json_object *o = json_object_new_object();
    json_object *contacts = json_object_new_array();
    json_object *contact = json_object_new_object();
    json_object *messages = json_object_new_array();
    json_object *message = json_object_new_object();
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    if (o == NULL || contacts == NULL || contact == NULL || messages == NULL || message == NULL) {
        json_object_put(o);
        json_object_put(contacts);
        json_object_put(contact);
        json_object_put(messages);
        json_object_put(message);
        graph_error(resp, 500, 1, 0, "OAuthException", "out of memory", NULL);
        return;
    }
    /* The official example echoes the number as given, with its '+'. */
    char input[24];
    snprintf(input, sizeof input, "+%s", to);
    cmn_json_add_string(contact, "input", input);
    cmn_json_add_string(contact, "wa_id", to);
    json_object_array_add(contacts, contact);
    cmn_json_add_string(message, "id", wamid);
    json_object_array_add(messages, message);
    json_object_object_add(o, "contacts", contacts);
    json_object_object_add(o, "messages", messages);
    cmn_json_add_string(o, "messaging_product", "whatsapp");
    cmn_json_to_buf(o, &resp->body);
    json_object_put(o);
}

/* --------------------------------------------------------------- record */

static void record(msbx_api_t *api, const cmn_http_request_t *req, int status, long error_code, const char *wamid,
                   const char *communication_id, sbx_storm_kind_t storm)
{
    pthread_mutex_lock(&api->lock);
    size_t max = api->cfg.record_max;
    if (api->count == max) {
        free(api->records[api->start].body);
        api->start = (api->start + 1) % max;
        api->count--;
    }
    record_t *r = &api->records[(api->start + api->count) % max];
    memset(r, 0, sizeof *r);
    r->seq = ++api->seq;
    r->received_ms = cmn_now_ms();
    snprintf(r->path, sizeof r->path, "%s", req->path);
    r->status = status;
    r->error_code = error_code;
    snprintf(r->wamid, sizeof r->wamid, "%s", wamid != NULL ? wamid : "");
    snprintf(r->communication_id, sizeof r->communication_id, "%s", communication_id != NULL ? communication_id : "");
    r->storm = storm;
    r->body = strndup(req->body != NULL ? req->body : "", req->body_len);
    api->count++;
    pthread_mutex_unlock(&api->lock);
}

static void list_records(msbx_api_t *api, cmn_http_response_t *resp)
{
    json_object *arr = json_object_new_array();
    char why[64], ts[40];
    pthread_mutex_lock(&api->lock);
    for (size_t i = 0; arr != NULL && i < api->count; i++) {
        const record_t *r = &api->records[(api->start + i) % api->cfg.record_max];
        json_object *o = json_object_new_object();
        if (o == NULL)
            break;
        cmn_json_add_int64(o, "seq", r->seq);
        cmn_time_format_rfc3339(r->received_ms, ts, sizeof ts);
        cmn_json_add_string(o, "received_at", ts);
        cmn_json_add_string(o, "path", r->path);
        cmn_json_add_int64(o, "status", r->status);
        if (r->error_code != 0)
            cmn_json_add_int64(o, "error_code", r->error_code);
        if (r->wamid[0] != '\0')
            cmn_json_add_string(o, "wamid", r->wamid);
        if (r->communication_id[0] != '\0')
            cmn_json_add_string(o, "communication_id", r->communication_id);
        if (r->storm != SBX_STORM_NONE)
            cmn_json_add_string(o, "storm", sbx_storm_name(r->storm));
        json_object *body = r->body != NULL ? cmn_json_parse(r->body, strlen(r->body), why, sizeof why) : NULL;
        json_object_object_add(o, "body", body != NULL ? body : json_object_new_string(r->body != NULL ? r->body : ""));
        json_object_array_add(arr, o);
    }
    pthread_mutex_unlock(&api->lock);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    if (arr == NULL || cmn_json_to_buf(arr, &resp->body) != 0) {
        cmn_buf_reset(&resp->body);
        resp->status = 500;
        cmn_buf_puts(&resp->body, "{\"error\":\"out of memory\"}");
    }
    json_object_put(arr);
}

/* -------------------------------------------------------------- handler */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Splits "/v23.0/1234/messages" into its three segments; 0 or -1. */
static int split_path(const char *path, char seg[3][SEGMENT_MAX])
{
    const char *p = path;
    for (int i = 0; i < 3; i++) {
        if (*p != '/')
            return -1;
        p++;
        size_t len = strcspn(p, "/");
        if (len == 0 || len >= SEGMENT_MAX)
            return -1;
        memcpy(seg[i], p, len);
        seg[i][len] = '\0';
        p += len;
    }
    return *p == '\0' ? 0 : -1;
}

/* One more accepted send of communication id for /_sandbox/accepted. */
static void count_accepted(msbx_api_t *api, const char *id)
{
    json_object *count = NULL;
    pthread_mutex_lock(&api->lock);
    if (json_object_object_get_ex(api->accepted, id, &count))
        json_object_int_inc(count, 1);
    else
        json_object_object_add(api->accepted, id, json_object_new_int64(1));
    api->accepted_total++;
    pthread_mutex_unlock(&api->lock);
}

/* GET or DELETE of /_sandbox/accepted and /_sandbox/webhooks. */
static void sandbox_list(msbx_api_t *api, const cmn_http_request_t *req, int accepted, cmn_http_response_t *resp)
{
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    if (strcmp(req->method, "DELETE") == 0) {
        json_object *fresh = accepted ? json_object_new_object() : json_object_new_array();
        if (fresh == NULL) {
            resp->status = 500;
            return;
        }
        pthread_mutex_lock(&api->lock);
        json_object **slot = accepted ? &api->accepted : &api->webhooks;
        json_object *old = *slot;
        *slot = fresh;
        if (accepted)
            api->accepted_total = 0;
        pthread_mutex_unlock(&api->lock);
        json_object_put(old);
        resp->status = 200;
        cmn_buf_puts(&resp->body, "{}");
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        resp->status = 405;
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, DELETE\r\n");
        cmn_buf_puts(&resp->body, "{\"error\":\"GET or DELETE\"}");
        return;
    }
    int rc;
    pthread_mutex_lock(&api->lock);
    if (accepted) {
        const char *map =
            json_object_to_json_string_ext(api->accepted, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        rc = cmn_buf_printf(&resp->body, "{\"accepted\":%lld,\"by_id\":%s}", (long long)api->accepted_total,
                            map != NULL ? map : "{}");
    } else {
        rc = cmn_json_to_buf(api->webhooks, &resp->body);
    }
    pthread_mutex_unlock(&api->lock);
    resp->status = rc == 0 ? 200 : 500;
}

static void handle_send(msbx_api_t *api, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    char seg[3][SEGMENT_MAX];
    char why[512] = "", msg[700];
    char wamid[64] = "";
    char comm_id[64] = "";
    long error_code = 0;
    json_object *body = NULL;
    msbx_script_t script;
    sbx_storm_kind_t storm = SBX_STORM_NONE;

    if (split_path(req->path, seg) != 0 || strcmp(seg[2], "messages") != 0) {
        snprintf(msg, sizeof msg, "Unknown path components: %s", req->path);
        graph_error(resp, 404, 2500, 0, "OAuthException", msg, NULL);
        error_code = 2500;
        goto cleanup;
    }
    const char *auth = cmn_http_request_header(req, "Authorization");
    size_t tlen = strlen(api->cfg.access_token);
    if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) != tlen ||
        strcmp(auth + 7, api->cfg.access_token) != 0) {
        graph_error(resp, 401, 190, 0, "OAuthException", "Invalid OAuth access token - Cannot parse access token",
                    NULL);
        error_code = 190;
        goto cleanup;
    }
    if (strcmp(seg[0], api->cfg.api_version) != 0) {
        snprintf(msg, sizeof msg, "(#100) Unsupported API version %s: this sandbox serves %s", seg[0],
                 api->cfg.api_version);
        graph_error(resp, 400, 100, 0, "OAuthException", msg, NULL);
        error_code = 100;
        goto cleanup;
    }
    if (strcmp(seg[1], api->cfg.phone_number_id) != 0) {
        snprintf(msg, sizeof msg,
                 "Unsupported post request. Object with ID '%s' does not exist, cannot be loaded due to missing "
                 "permissions, or does not support this operation.",
                 seg[1]);
        graph_error(resp, 400, 100, 33, "GraphMethodException", msg, NULL);
        error_code = 100;
        goto cleanup;
    }
    const char *ctype = cmn_http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        graph_error(resp, 400, 100, 0, "OAuthException", "(#100) Invalid parameter",
                    "Content-Type must be application/json");
        error_code = 100;
        goto cleanup;
    }
    body = cmn_json_parse(req->body != NULL ? req->body : "", req->body_len, why, sizeof why);
    if (body == NULL) {
        snprintf(msg, sizeof msg, "the body is not JSON: %s", why);
        graph_error(resp, 400, 100, 0, "OAuthException", "(#100) Invalid parameter", msg);
        error_code = 100;
        goto cleanup;
    }
    if (msbx_check(api->ex, body, why, sizeof why) != 0) {
        graph_error(resp, 400, 100, 0, "OAuthException", "(#100) Invalid parameter", why);
        error_code = 100;
        cmn_logkv(api->log, CMN_LOG_INFO, NULL, (const char *[]){"reason", why, NULL}, "request refused");
        goto cleanup;
    }
    const char *to = cmn_json_get_string(body, "to");
    const char *opaque = cmn_json_get_string(body, "biz_opaque_callback_data");
    snprintf(comm_id, sizeof comm_id, "%s", opaque != NULL ? opaque : "");
    pthread_mutex_lock(&api->lock);
    storm = sbx_storm_draw(&api->cfg.storm, &api->storm_state);
    pthread_mutex_unlock(&api->lock);
    if (storm == SBX_STORM_500) {
        graph_error(resp, 500, 131000, 0, "OAuthException", "(#131000) Something went wrong", "Something went wrong.");
        error_code = 131000;
        goto cleanup;
    }
    if (storm == SBX_STORM_429) {
        graph_error(resp, 429, 130429, 0, "OAuthException", "(#130429) Rate limit hit",
                    "Cloud API message throughput has been reached.");
        if (api->cfg.storm.retry_after_s > 0)
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n",
                     api->cfg.storm.retry_after_s);
        error_code = 130429;
        goto cleanup;
    }
    if (storm == SBX_STORM_TIMEOUT) {
        /* Held past the client's time limit, then refused: nothing is sent. */
        sleep_ms(api->cfg.storm.timeout_ms);
        graph_error(resp, 503, 131000, 0, "OAuthException", "(#131000) Something went wrong",
                    "Service temporarily unavailable.");
        error_code = 131000;
        goto cleanup;
    }
    if (api->cfg.scripts && msbx_script_for(to, &script)) {
        if (script.delay_ms > 0)
            sleep_ms(script.delay_ms);
        if (script.raw) {
            resp->status = script.http_status;
            snprintf(resp->content_type, sizeof resp->content_type, "text/html");
            cmn_buf_puts(&resp->body, "<html><body><h1>500 Internal Server Error</h1></body></html>");
            goto cleanup;
        }
        if (script.http_status != 200) {
            graph_error(resp, script.http_status, script.code, 0, "OAuthException", script.message, script.details);
            error_code = script.code;
            goto cleanup;
        }
    }
    new_wamid(wamid);
    success(resp, to, wamid);
    if (resp->status == 200) {
        if (comm_id[0] != '\0')
            count_accepted(api, comm_id);
        if (api->thread_started)
            queue_webhooks(api, to, wamid, comm_id);
    }
cleanup:
    record(api, req, resp->status, error_code, wamid[0] != '\0' ? wamid : NULL, comm_id, storm);
    json_object_put(body);
}

void msbx_api_handle(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    msbx_api_t *api = ctx;
    if (strcmp(req->path, REQUESTS_PATH) == 0) {
        if (strcmp(req->method, "GET") == 0) {
            list_records(api, resp);
            return;
        }
        if (strcmp(req->method, "DELETE") == 0) {
            pthread_mutex_lock(&api->lock);
            size_t n = api->count;
            records_clear(api);
            pthread_mutex_unlock(&api->lock);
            resp->status = 200;
            cmn_buf_printf(&resp->body, "{\"deleted\":%zu}", n);
            return;
        }
        resp->status = 405;
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, DELETE\r\n");
        cmn_buf_puts(&resp->body, "{\"error\":\"GET or DELETE\"}");
        return;
    }
    if (strcmp(req->path, ACCEPTED_PATH) == 0 || strcmp(req->path, WEBHOOKS_PATH) == 0) {
        sandbox_list(api, req, strcmp(req->path, ACCEPTED_PATH) == 0, resp);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "Unsupported %s request.", req->method);
        graph_error(resp, 400, 100, 0, "GraphMethodException", msg, NULL);
        return;
    }
    handle_send(api, req, resp);
}
