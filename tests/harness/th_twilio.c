/* th_twilio.c - the Twilio sandbox for the tests. See th_twilio.h. */
#include "th_twilio.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crm/json.h"

#ifndef CRM_BINARY_DIR
#error "CRM_BINARY_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif
#ifndef CRM_SHARED_DIR
#error "CRM_SHARED_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

#define SANDBOX_BIN CRM_BINARY_DIR "/tools/sandbox-twilio/crm-sandbox-twilio"
#define SPEC CRM_SHARED_DIR "/oracles/twilio/twilio_api_v2010.json"
#define READY_TIMEOUT_MS 20000
#define LIST_MAX (4 << 20)

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int th_twilio_start(th_twilio_t *t, const char *const *extra_args)
{
    char port[16];
    char *argv[32];
    size_t n = 0;
    memset(t, 0, sizeof *t);
    if (access(SANDBOX_BIN, X_OK) != 0) {
        fprintf(stderr, "th_twilio: %s is not built\n", SANDBOX_BIN);
        return -1;
    }
    t->port = th_free_port();
    snprintf(port, sizeof port, "%d", t->port);
    snprintf(t->url, sizeof t->url, "http://127.0.0.1:%d", t->port);
    argv[n++] = SANDBOX_BIN;
    argv[n++] = "--account-sid";
    argv[n++] = TH_TWILIO_ACCOUNT_SID;
    argv[n++] = "--spec";
    argv[n++] = SPEC;
    argv[n++] = "--port";
    argv[n++] = port;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 31; i++)
        argv[n++] = (char *)extra_args[i];
    argv[n] = NULL;
    /* The token through the environment keeps it out of the process list. */
    char *const env[] = {"TWILIO_SANDBOX_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN, NULL};
    if (th_proc_start(&t->proc, "sandbox-twilio", argv, env) != 0)
        return -1;
    t->running = 1;
    char url[128], body[64];
    snprintf(url, sizeof url, "%s/_sandbox/requests", t->url);
    long long deadline = mono_ms() + READY_TIMEOUT_MS;
    while (mono_ms() < deadline) {
        long status = 0;
        if (th_http("GET", url, NULL, NULL, &status, body, sizeof body) == 0 && status == 200)
            return 0;
        if (!th_proc_alive(&t->proc)) {
            fprintf(stderr, "th_twilio: the sandbox exited; see %s\n", t->proc.log_path);
            t->running = 0;
            return -1;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "th_twilio: the sandbox did not answer; see %s\n", t->proc.log_path);
    th_twilio_stop(t);
    return -1;
}

void th_twilio_stop(th_twilio_t *t)
{
    if (t == NULL || !t->running)
        return;
    th_proc_stop(&t->proc, SIGTERM, 10000);
    t->running = 0;
}

json_object *th_twilio_requests(const th_twilio_t *t)
{
    char url[128], why[128];
    long status = 0;
    char *body = malloc(LIST_MAX);
    json_object *arr = NULL;
    if (body == NULL)
        return NULL;
    snprintf(url, sizeof url, "%s/_sandbox/requests", t->url);
    if (th_http("GET", url, NULL, NULL, &status, body, LIST_MAX) == 0 && status == 200)
        arr = cmn_json_parse(body, strlen(body), why, sizeof why);
    free(body);
    if (arr != NULL && !json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        arr = NULL;
    }
    return arr;
}

json_object *th_twilio_wait_requests(const th_twilio_t *t, size_t n, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        json_object *arr = th_twilio_requests(t);
        if (arr != NULL && (json_object_array_length(arr) >= n || mono_ms() >= deadline))
            return arr;
        json_object_put(arr);
        if (mono_ms() >= deadline)
            return NULL;
        sleep_ms(100);
    }
}

int th_twilio_reset(const th_twilio_t *t)
{
    char url[128], body[64];
    long status = 0;
    snprintf(url, sizeof url, "%s/_sandbox/requests", t->url);
    return th_http("DELETE", url, NULL, NULL, &status, body, sizeof body) == 0 && status == 204 ? 0 : -1;
}

json_object *th_twilio_find(json_object *arr, const char *to, int *count)
{
    json_object *found = NULL;
    *count = 0;
    for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
        json_object *r = json_object_array_get_idx(arr, i);
        const char *rto = cmn_json_get_string(cmn_json_get_object(r, "params"), "To");
        if (rto != NULL && strcmp(rto, to) == 0) {
            found = r;
            (*count)++;
        }
    }
    return found;
}

typedef struct sink {
    char *out;
    size_t len, cap;
    char *retry_after;
    size_t retry_cap;
} sink_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *s = userdata;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n && s->len + 1 < s->cap; i++)
        s->out[s->len++] = ptr[i];
    if (s->cap > 0)
        s->out[s->len] = '\0';
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *s = userdata;
    size_t n = size * nmemb;
    if (s->retry_after != NULL && n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        size_t start = 12, end = n;
        while (start < end && ptr[start] == ' ')
            start++;
        while (end > start && (ptr[end - 1] == '\r' || ptr[end - 1] == '\n' || ptr[end - 1] == ' '))
            end--;
        snprintf(s->retry_after, s->retry_cap, "%.*s", (int)(end - start), ptr + start);
    }
    return n;
}

int th_twilio_post(const char *url, const char *user, const char *password, const char *content_type,
                   const char *body, long *status, char *out, size_t outlen, char *retry_after,
                   size_t retry_after_len)
{
    char ctype[160];
    sink_t s = {out, 0, outlen, retry_after, retry_after_len};
    struct curl_slist *headers = NULL;
    int rc = -1;
    *status = 0;
    if (outlen > 0)
        out[0] = '\0';
    if (retry_after != NULL && retry_after_len > 0)
        retry_after[0] = '\0';
    CURL *curl = curl_easy_init();
    if (curl == NULL)
        return -1;
    snprintf(ctype, sizeof ctype, "Content-Type: %s",
             content_type != NULL ? content_type : "application/x-www-form-urlencoded");
    headers = curl_slist_append(headers, ctype);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &s);
    if (user != NULL) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERNAME, user);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, password != NULL ? password : "");
    }
    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
        rc = 0;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return rc;
}

const char *th_twilio_messages_url(const char *base, const char *sid, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/2010-04-01/Accounts/%s/Messages.json", base, sid);
    return out;
}
