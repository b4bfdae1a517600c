/* msbx_api.c - the Cloud API stand-in's request handling. See msbx_api.h. */
#include "msbx_api.h"

#include <ctype.h>
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

#define REQUESTS_PATH "/_sandbox/requests"
#define SEGMENT_MAX 64

/* One request as recorded for /_sandbox/requests. */
typedef struct record {
    long seq;
    int64_t received_ms;
    char path[160];
    int status;
    long error_code;
    char wamid[64];
    char *body; /* owned */
} record_t;

struct msbx_api {
    msbx_api_config_t cfg;
    const msbx_examples_t *ex;
    const cmn_log_t *log;
    pthread_mutex_t lock; /* guards everything below */
    record_t *records;    /* ring of cfg.record_max, oldest at start */
    size_t start, count;
    long seq;
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
        {"131026", {400, 131026, "(#131026) Message undeliverable", "Message Undeliverable.", 0, 0}},
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
    if (api->records == NULL || pthread_mutex_init(&api->lock, NULL) != 0) {
        free(api->records);
        free(api);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    api->cfg = *cfg;
    api->ex = ex;
    api->log = log;
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
    records_clear(api);
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

static void record(msbx_api_t *api, const cmn_http_request_t *req, int status, long error_code, const char *wamid)
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

static void handle_send(msbx_api_t *api, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    char seg[3][SEGMENT_MAX];
    char why[512] = "", msg[700];
    char wamid[64] = "";
    long error_code = 0;
    json_object *body = NULL;
    msbx_script_t script;

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
cleanup:
    record(api, req, resp->status, error_code, wamid[0] != '\0' ? wamid : NULL);
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
    if (strcmp(req->method, "POST") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "Unsupported %s request.", req->method);
        graph_error(resp, 400, 100, 0, "GraphMethodException", msg, NULL);
        return;
    }
    handle_send(api, req, resp);
}
