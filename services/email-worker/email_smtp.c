/* email_smtp.c - SMTP submission through libcurl. See email_smtp.h. */
#include "email_smtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* Reply lines kept per transfer: enough to still hold the refusing reply
 * when libcurl closes the connection afterwards (QUIT and its 221). */
#define REPLY_RING 4
#define REPLY_MAX 400
#define CONNECT_TIMEOUT_CAP_MS 10000L

struct email_smtp {
    char *url;
    char *username, *password, *ca_file;
    char mail_from[300];
    int use_tls_required; /* STARTTLS over smtp:// */
    long timeout_ms;
};

struct email_smtp_transfer {
    const email_smtp_t *smtp;
    CURL *easy;
    struct curl_slist *rcpt;
    char *data;
    size_t len, pos;
    char lines[REPLY_RING][REPLY_MAX];
    size_t nlines; /* lines captured in all; the ring holds the last REPLY_RING */
    char errbuf[CURL_ERROR_SIZE];
};

static char *dup_or_null(const char *s)
{
    return (s != NULL && s[0] != '\0') ? strdup(s) : NULL;
}

email_smtp_t *email_smtp_new(const email_smtp_config_t *cfg, char *errstr, size_t errlen)
{
    email_smtp_t *s = NULL;
    char url[600];
    if (cfg == NULL || cfg->host == NULL || cfg->host[0] == '\0' || cfg->port < 1 || cfg->port > 65535 ||
        cfg->from_email == NULL || strchr(cfg->from_email, '@') == NULL || cfg->timeout_ms < 1) {
        snprintf(errstr, errlen, "SMTP settings incomplete: host, port, from address and timeout are required");
        return NULL;
    }
    /* A password must never cross the network in clear. Port 465 is always
     * implicit TLS, so only the STARTTLS-less plain mode is refused. */
    int implicit_tls = cfg->port == 465;
    if (cfg->username != NULL && cfg->username[0] != '\0' && !cfg->use_tls && !implicit_tls) {
        snprintf(errstr, errlen, "SMTP_USERNAME is set but SMTP_USE_TLS is false: AUTH would send the password in clear");
        return NULL;
    }
    if (strpbrk(cfg->host, "/?#@ \r\n") != NULL || strpbrk(cfg->from_email, "<>\r\n ") != NULL) {
        snprintf(errstr, errlen, "SMTP host or from address contains characters not allowed there");
        return NULL;
    }
    const char *domain = strchr(cfg->from_email, '@') + 1;
    int bracket = strchr(cfg->host, ':') != NULL; /* IPv6 literal */
    /* The URL path is what libcurl sends in EHLO; the sender's own domain is
     * the name receiving servers expect from a submitting client. */
    int n = snprintf(url, sizeof url, "%s://%s%s%s:%d/%s", implicit_tls ? "smtps" : "smtp", bracket ? "[" : "",
                     cfg->host, bracket ? "]" : "", cfg->port, domain);
    if (n < 0 || (size_t)n >= sizeof url) {
        snprintf(errstr, errlen, "SMTP host name too long");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto nomem;
    s->url = strdup(url);
    s->username = dup_or_null(cfg->username);
    s->password = cfg->password != NULL ? strdup(cfg->password) : strdup("");
    s->ca_file = dup_or_null(cfg->ca_file);
    if (s->url == NULL || s->password == NULL || (s->username == NULL && cfg->username != NULL && cfg->username[0] != '\0') ||
        (s->ca_file == NULL && cfg->ca_file != NULL && cfg->ca_file[0] != '\0'))
        goto nomem;
    n = snprintf(s->mail_from, sizeof s->mail_from, "<%s>", cfg->from_email);
    if (n < 0 || (size_t)n >= sizeof s->mail_from) {
        snprintf(errstr, errlen, "SMTP from address too long");
        email_smtp_destroy(s);
        return NULL;
    }
    s->use_tls_required = cfg->use_tls && !implicit_tls;
    s->timeout_ms = cfg->timeout_ms;
    return s;
nomem:
    snprintf(errstr, errlen, "out of memory");
    email_smtp_destroy(s);
    return NULL;
}

void email_smtp_destroy(email_smtp_t *s)
{
    if (s == NULL)
        return;
    free(s->url);
    free(s->username);
    if (s->password != NULL) {
        /* Do not leave the secret lying in freed heap memory. */
        volatile char *p = s->password;
        while (*p != '\0')
            *p++ = '\0';
        free(s->password);
    }
    free(s->ca_file);
    free(s);
}

const char *email_smtp_url(const email_smtp_t *s)
{
    return s != NULL ? s->url : "";
}

email_smtp_transfer_t *email_smtp_transfer_new(const email_smtp_t *s, const char *rcpt, char *data, size_t len)
{
    char addr[300];
    email_smtp_transfer_t *t = calloc(1, sizeof *t);
    int n = snprintf(addr, sizeof addr, "<%s>", rcpt != NULL ? rcpt : "");
    if (t == NULL || s == NULL || rcpt == NULL || n < 0 || (size_t)n >= sizeof addr)
        goto fail;
    t->smtp = s;
    t->data = data;
    t->len = len;
    t->rcpt = curl_slist_append(NULL, addr);
    if (t->rcpt == NULL) {
        t->data = NULL;
        goto fail;
    }
    return t;
fail:
    free(t);
    free(data);
    return NULL;
}

void email_smtp_transfer_free(email_smtp_transfer_t *t)
{
    if (t == NULL)
        return;
    if (t->easy != NULL)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->rcpt);
    free(t->data);
    free(t);
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    email_smtp_transfer_t *t = userdata;
    size_t room = size * nitems;
    size_t left = t->len - t->pos;
    size_t n = left < room ? left : room;
    memcpy(buf, t->data + t->pos, n);
    t->pos += n;
    return n;
}

/* Keeps the server's reply lines (CURLINFO_HEADER_IN); everything else in
 * the debug stream, our own commands and the message included, is ignored
 * and never printed. */
static int debug_cb(CURL *easy, curl_infotype type, char *data, size_t size, void *userptr)
{
    email_smtp_transfer_t *t = userptr;
    if (type != CURLINFO_HEADER_IN)
        return 0;
    size_t i = 0;
    while (i < size) {
        size_t end = i;
        while (end < size && data[end] != '\r' && data[end] != '\n')
            end++;
        if (end > i) {
            char *line = t->lines[t->nlines % REPLY_RING];
            size_t n = end - i < REPLY_MAX - 1 ? end - i : REPLY_MAX - 1;
            /* Replies go into JSON events: keep printable ASCII only. */
            for (size_t k = 0; k < n; k++) {
                unsigned char c = (unsigned char)data[i + k];
                line[k] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
            }
            line[n] = '\0';
            t->nlines++;
        }
        i = end + 1;
    }
    return 0;
}

CURL *email_smtp_transfer_easy(email_smtp_transfer_t *t)
{
    if (t == NULL)
        return NULL;
    if (t->easy != NULL)
        return t->easy;
    const email_smtp_t *s = t->smtp;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                                \
    do {                                                                                                             \
        if (rc == CURLE_OK)                                                                                          \
            rc = curl_easy_setopt(e, opt, val);                                                                      \
    } while (0)
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_MAIL_FROM, s->mail_from);
    SET(CURLOPT_MAIL_RCPT, t->rcpt);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, read_cb);
    SET(CURLOPT_READDATA, t);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->len);
    SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms < CONNECT_TIMEOUT_CAP_MS ? s->timeout_ms : CONNECT_TIMEOUT_CAP_MS);
    /* Verification stays on: these are the defaults, set explicitly so no
     * later edit can mistake them for optional. */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->use_tls_required)
        SET(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (s->ca_file != NULL)
        SET(CURLOPT_CAINFO, s->ca_file);
    if (s->username != NULL) {
        SET(CURLOPT_USERNAME, s->username);
        SET(CURLOPT_PASSWORD, s->password);
    }
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_DEBUGFUNCTION, debug_cb);
    SET(CURLOPT_DEBUGDATA, t);
    SET(CURLOPT_VERBOSE, 1L); /* feeds debug_cb; nothing reaches stderr */
#undef SET
    if (rc != CURLE_OK) {
        curl_easy_cleanup(e);
        return NULL;
    }
    t->easy = e;
    return e;
}

const char *email_smtp_transfer_reply(const email_smtp_transfer_t *t, long code)
{
    if (t == NULL || t->nlines == 0)
        return "";
    size_t kept = t->nlines < REPLY_RING ? t->nlines : REPLY_RING;
    char want[8];
    snprintf(want, sizeof want, "%03ld", code);
    for (size_t k = 0; k < kept; k++) {
        const char *line = t->lines[(t->nlines - 1 - k) % REPLY_RING];
        if (code > 0 && strncmp(line, want, 3) == 0)
            return line;
    }
    return t->lines[(t->nlines - 1) % REPLY_RING];
}

const char *email_smtp_transfer_error(const email_smtp_transfer_t *t)
{
    return t != NULL ? t->errbuf : "";
}

cmn_worker_class_t email_smtp_classify(CURLcode code, long smtp_code)
{
    if (smtp_code >= 500 && smtp_code <= 599)
        return CMN_WORKER_PERMANENT;
    if (smtp_code >= 400 && smtp_code <= 499)
        return CMN_WORKER_RETRYABLE;
    if (code == CURLE_OK)
        return CMN_WORKER_SENT;
    /* Connection refused, DNS, timeouts, TLS handshake or verification,
     * dropped connections: all can clear up, and the retry tiers bound how
     * long we keep trying. */
    return CMN_WORKER_RETRYABLE;
}

/* A short stable code for a transport failure without an SMTP reply code. */
static const char *transport_code(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return "dns_error";
    case CURLE_COULDNT_CONNECT:
        return "connect_error";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_USE_SSL_FAILED:
        return "tls_error";
    case CURLE_LOGIN_DENIED:
        return "auth_error";
    default:
        return "transport_error";
    }
}

void email_smtp_transfer_result(email_smtp_transfer_t *t, CURLcode code, cmn_worker_result_t *res)
{
    long smtp_code = 0;
    if (t->easy != NULL)
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &smtp_code);
    cmn_worker_class_t cls = email_smtp_classify(code, smtp_code);
    const char *reply = email_smtp_transfer_reply(t, smtp_code);
    const char *prefix = cls == CMN_WORKER_RETRYABLE ? "retryable: " : "";
    res->cls = cls;
    if (cls == CMN_WORKER_SENT) {
        snprintf(res->detail, sizeof res->detail, "smtp_reply: %s", reply);
        return;
    }
    if (smtp_code >= 400 && smtp_code <= 599) {
        char num[16];
        snprintf(num, sizeof num, "%ld", smtp_code);
        cmn_worker_result_fail(res, cls, num, "%s%s", prefix, reply[0] != '\0' ? reply : curl_easy_strerror(code));
        return;
    }
    cmn_worker_result_fail(res, cls, transport_code(code), "%s%s%s%s", prefix, curl_easy_strerror(code),
                       t->errbuf[0] != '\0' ? ": " : "", t->errbuf);
}
