/* http.c - the services' HTTP server on libmicrohttpd.
 *
 * libmicrohttpd (MHD) parses requests, enforces header memory and idle
 * timeouts, and answers malformed requests itself (400, 431). This file adds
 * body buffering with a size cap, the built-in operational endpoints, the
 * per-status request counter and the translation between MHD and the
 * cmn_http_request/response structs the services see. */
#include "crm/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crm/err.h"

/* MHD keeps its read buffer, the parsed header list and the response
 * headers in one per-connection pool. The configured header budget is for
 * the client's headers, so the pool gets this much on top for MHD's own use. */
#define HTTP_POOL_SLACK 4096
#define HTTP_DEFAULT_HEADER_BYTES (32 * 1024)
#define HTTP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HTTP_PROBLEM_CONTENT_TYPE "application/problem+json"

struct cmn_http_server {
    struct MHD_Daemon *daemon;
    cmn_http_config_t cfg;       /* copy; the pointers inside are borrowed */
    cmn_metrics_t *own_metrics;  /* owned: holds http_requests_total */
    int port;
};

/* Per-request state, hung on MHD's con_cls; freed by on_completed. */
typedef struct http_conn {
    cmn_buf_t body;
    bool too_large;   /* body passed max_body_bytes: the rest is discarded */
    bool no_memory;   /* appending the body failed */
    bool responded;   /* a response was already queued (early 413) */
} http_conn_t;

static void set_err(char *errstr, size_t errlen, const char *msg)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s", msg);
}

static void log_msg(const cmn_http_server_t *s, cmn_log_level_t level, const char *msg)
{
    if (s->cfg.log == NULL)
        return;
    cmn_logf(s->cfg.log, level, NULL, "%s", msg);
}

/* MHD's error log, routed to our JSON logger. MHD ends its messages with a
 * newline, which would show up escaped in the JSON line, so it is cut. Most
 * of what MHD reports once running is about clients (malformed requests,
 * hang-ups), which is not an operator problem, hence info; startup failures
 * also reach the caller through errstr. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    const cmn_http_server_t *s = cls;
    char msg[512];
    size_t n;

    if (s == NULL || s->cfg.log == NULL)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    cmn_logkv(s->cfg.log, CMN_LOG_INFO, NULL, (const char *[]){"component", "libmicrohttpd", NULL},
              "%s", msg);
}

const char *cmn_http_request_header(const cmn_http_request_t *req, const char *name)
{
    if (req == NULL || req->internal == NULL || name == NULL)
        return NULL;
    return MHD_lookup_connection_value((struct MHD_Connection *)req->internal, MHD_HEADER_KIND, name);
}

const char *cmn_http_request_query(const cmn_http_request_t *req, const char *name)
{
    if (req == NULL || req->internal == NULL || name == NULL)
        return NULL;
    return MHD_lookup_connection_value((struct MHD_Connection *)req->internal,
                                       MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_rebuild {
    cmn_buf_t *out;
    int rc;
    int first;
} query_rebuild_t;

static int query_encode(cmn_buf_t *out, const char *s)
{
    static const char HEX[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        unsigned char c = *p;
        int rc;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            rc = cmn_buf_putc(out, (char)c);
        } else {
            char esc[3] = {'%', HEX[c >> 4], HEX[c & 15]};
            rc = cmn_buf_append(out, esc, 3);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static enum MHD_Result query_rebuild_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    query_rebuild_t *q = cls;
    (void)kind;
    if (q->rc == 0 && !q->first)
        q->rc = cmn_buf_putc(q->out, '&');
    q->first = 0;
    if (q->rc == 0)
        q->rc = query_encode(q->out, key != NULL ? key : "");
    if (q->rc == 0 && value != NULL) {
        q->rc = cmn_buf_putc(q->out, '=');
        if (q->rc == 0)
            q->rc = query_encode(q->out, value);
    }
    return q->rc == 0 ? MHD_YES : MHD_NO;
}

int cmn_http_request_query_string(const cmn_http_request_t *req, cmn_buf_t *out)
{
    if (req == NULL || req->internal == NULL || out == NULL)
        return CMN_ERR_INVALID;
    query_rebuild_t q = {out, 0, 1};
    MHD_get_connection_values((struct MHD_Connection *)req->internal, MHD_GET_ARGUMENT_KIND, query_rebuild_one,
                              &q);
    return q.rc;
}

int cmn_http_problem(cmn_http_response_t *resp, int status, const char *title, const char *detail,
                     struct json_object *errors)
{
    int rc = 0;
    json_object *obj = NULL;
    json_object *errs = NULL;
    const char *text;
    bool has_errors = errors != NULL && json_object_is_type(errors, json_type_array) &&
                      json_object_array_length(errors) > 0;

    if (resp == NULL || status < 100 || status > 599)
        return CMN_ERR_INVALID;
    if (title == NULL)
        title = MHD_get_reason_phrase_for((unsigned int)status);
    if (title == NULL || title[0] == '\0')
        title = "Error";

    obj = json_object_new_object();
    if (obj == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    /* about:blank means "nothing beyond the status code" (RFC 9457 4.2);
     * field-level errors are more than that, so they get their own type. */
    json_object_object_add(obj, "type", json_object_new_string(has_errors ? "urn:crm:problem:invalid-request"
                                                                          : "about:blank"));
    json_object_object_add(obj, "title", json_object_new_string(title));
    json_object_object_add(obj, "status", json_object_new_int(status));
    if (detail != NULL)
        json_object_object_add(obj, "detail", json_object_new_string(detail));
    /* The object takes a reference of its own, so the caller's stays valid. */
    errs = has_errors ? json_object_get(errors) : json_object_new_array();
    json_object_object_add(obj, "errors", errs);

    text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (text == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    /* Whatever the handler appended before failing is not part of a problem. */
    cmn_buf_reset(&resp->body);
    rc = cmn_buf_puts(&resp->body, text);
    if (rc != 0)
        goto cleanup;
    resp->status = status;
    snprintf(resp->content_type, sizeof resp->content_type, "%s", HTTP_PROBLEM_CONTENT_TYPE);

cleanup:
    if (obj != NULL)
        json_object_put(obj);
    return rc;
}

/* Adds each "Name: value" line of the handler's extra_headers. Malformed
 * lines are logged and skipped rather than failing the whole response. */
static void add_extra_headers(const cmn_http_server_t *s, struct MHD_Response *r,
                              const cmn_http_response_t *resp)
{
    char copy[sizeof resp->extra_headers + 1];
    size_t len = strnlen(resp->extra_headers, sizeof resp->extra_headers);
    char *line = copy;

    memcpy(copy, resp->extra_headers, len);
    copy[len] = '\0';
    while (line != NULL && *line != '\0') {
        char *next = strchr(line, '\n');
        char *colon;
        char *value;
        size_t n;

        if (next != NULL)
            *next++ = '\0';
        n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0) {
            line = next;
            continue;
        }
        colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            log_msg(s, CMN_LOG_WARN, "handler set a malformed extra header line; skipped");
            line = next;
            continue;
        }
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (MHD_add_response_header(r, line, value) != MHD_YES)
            log_msg(s, CMN_LOG_WARN, "libmicrohttpd refused an extra header; skipped");
        line = next;
    }
}

static void count_request(cmn_http_server_t *s, int status)
{
    char labels[32];

    snprintf(labels, sizeof labels, "code=\"%d\"", status);
    cmn_counter_add(cmn_metrics_counter(s->own_metrics, "http_requests_total",
                                        "HTTP requests answered, by status code.", labels),
                    1);
}

/* Queues resp on the connection and releases resp->body (its storage moves
 * into the MHD response, which frees it after sending). */
static enum MHD_Result queue_response(cmn_http_server_t *s, struct MHD_Connection *conn,
                                      const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    enum MHD_Result ret = MHD_NO;
    struct MHD_Response *r = NULL;
    size_t len = resp->body.len;
    char *data = NULL;

    if (resp->status < 100 || resp->status > 599) {
        if (s->cfg.log != NULL)
            cmn_logkv(s->cfg.log, CMN_LOG_ERROR, NULL, (const char *[]){"path", req->path, NULL},
                      "handler set invalid status %d", resp->status);
        cmn_http_problem(resp, 500, NULL, "The handler produced an invalid status.", NULL);
        len = resp->body.len;
    }
    resp->content_type[sizeof resp->content_type - 1] = '\0';
    if (resp->content_type[0] == '\0')
        snprintf(resp->content_type, sizeof resp->content_type, "application/json");

    if (len > 0) {
        data = cmn_buf_steal(&resp->body);
        if (data == NULL)
            goto cleanup;
        r = MHD_create_response_from_buffer_with_free_callback(len, data, free);
        if (r == NULL) {
            free(data);
            goto cleanup;
        }
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (r == NULL)
            goto cleanup;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type) != MHD_YES)
        log_msg(s, CMN_LOG_WARN, "libmicrohttpd refused the content type");
    add_extra_headers(s, r, resp);
    ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    if (ret == MHD_YES)
        count_request(s, resp->status);
    if (s->cfg.log != NULL) {
        char status[8];
        snprintf(status, sizeof status, "%d", resp->status);
        cmn_logkv(s->cfg.log, CMN_LOG_DEBUG, NULL,
                  (const char *[]){"method", req->method, "path", req->path, "status", status, NULL},
                  "http request");
    }

cleanup:
    if (r != NULL)
        MHD_destroy_response(r);
    cmn_buf_free(&resp->body);
    return ret;
}

static void response_init(cmn_http_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
}

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* Answers /metrics, /healthz and /readyz. Returns false for other paths. */
static bool builtin(cmn_http_server_t *s, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    bool metrics = strcmp(req->path, "/metrics") == 0;
    bool healthz = strcmp(req->path, "/healthz") == 0;
    bool readyz = strcmp(req->path, "/readyz") == 0;
    int rc = 0;

    if (!metrics && !healthz && !readyz)
        return false;
    if (!is_get(req->method)) {
        cmn_http_problem(resp, 405, NULL, "Only GET and HEAD are allowed here.", NULL);
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, HEAD\r\n");
        return true;
    }
    if (metrics) {
        snprintf(resp->content_type, sizeof resp->content_type, "%s", HTTP_METRICS_CONTENT_TYPE);
        if (s->cfg.metrics != NULL)
            rc = cmn_metrics_render(s->cfg.metrics, &resp->body);
        if (rc == 0)
            rc = cmn_metrics_render(s->own_metrics, &resp->body);
    } else if (healthz) {
        rc = cmn_buf_puts(&resp->body, "{\"status\":\"ok\"}");
    } else if (s->cfg.ready == NULL || s->cfg.ready(s->cfg.ctx) == 1) {
        rc = cmn_buf_puts(&resp->body, "{\"status\":\"ready\"}");
    } else {
        resp->status = 503;
        rc = cmn_buf_puts(&resp->body, "{\"status\":\"not ready\"}");
    }
    if (rc != 0)
        cmn_http_problem(resp, 500, NULL, "Could not build the response.", NULL);
    return true;
}

/* A request whose declared Content-Length is already over the limit. */
static bool declared_too_large(const cmn_http_server_t *s, struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long n;

    if (cl == NULL)
        return false;
    errno = 0;
    n = strtoull(cl, &end, 10);
    /* MHD has already rejected a malformed Content-Length; an overflow here
     * still means "too large". */
    if (errno == ERANGE)
        return true;
    return end != cl && n > (unsigned long long)s->cfg.max_body_bytes;
}

/* MHD calls this once when headers are in (*con_cls NULL), once per body
 * chunk (*upload_data_size > 0), and once more when the body is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    cmn_http_server_t *s = cls;
    http_conn_t *hc = *con_cls;
    cmn_http_request_t req = {.method = method, .path = url != NULL ? url : "/", .internal = conn};
    cmn_http_response_t resp;

    response_init(&resp);
    if (hc == NULL) {
        hc = calloc(1, sizeof *hc);
        if (hc == NULL)
            return MHD_NO; /* closes the connection: nothing better to do */
        *con_cls = hc;
        /* Answering now, before the body is read, makes MHD refuse the body
         * and close the connection, so a huge upload never gets buffered. */
        if (declared_too_large(s, conn)) {
            hc->too_large = true;
            hc->responded = true;
            cmn_http_problem(&resp, 413, NULL, "The request body is larger than this service accepts.", NULL);
            return queue_response(s, conn, &req, &resp);
        }
        return MHD_YES;
    }
    if (hc->responded)
        return MHD_YES;
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        /* MHD wants every byte consumed; past the limit they are dropped. */
        *upload_data_size = 0;
        if (hc->too_large || hc->no_memory)
            return MHD_YES;
        if (n > s->cfg.max_body_bytes || hc->body.len > s->cfg.max_body_bytes - n) {
            hc->too_large = true;
            cmn_buf_free(&hc->body);
            return MHD_YES;
        }
        if (cmn_buf_append(&hc->body, upload_data, n) != 0) {
            hc->no_memory = true;
            cmn_buf_free(&hc->body);
        }
        return MHD_YES;
    }

    hc->responded = true;
    req.body = hc->body.data != NULL ? hc->body.data : "";
    req.body_len = hc->body.len;
    if (hc->too_large) {
        cmn_http_problem(&resp, 413, NULL, "The request body is larger than this service accepts.", NULL);
    } else if (hc->no_memory) {
        cmn_http_problem(&resp, 503, NULL, "The server is out of memory.", NULL);
    } else if (!builtin(s, &req, &resp)) {
        if (s->cfg.handler != NULL)
            s->cfg.handler(s->cfg.ctx, &req, &resp);
        else
            cmn_http_problem(&resp, 404, NULL, "No such resource.", NULL);
    }
    return queue_response(s, conn, &req, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_conn_t *hc = *con_cls;

    if (hc == NULL)
        return;
    cmn_buf_free(&hc->body);
    free(hc);
    *con_cls = NULL;
}

cmn_http_server_t *cmn_http_server_new(const cmn_http_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_http_server_t *s = NULL;
    cmn_http_server_t *result = NULL;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    const struct sockaddr *addr;
    unsigned int flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    const char *bind_address;
    size_t header_bytes;
    const union MHD_DaemonInfo *info;

    set_err(errstr, errlen, "");
    if (cfg == NULL || cfg->threads < 1 || cfg->port < 0 || cfg->port > 65535 || cfg->timeout_seconds < 0) {
        set_err(errstr, errlen, "http: invalid config (need threads >= 1, port 0..65535, timeout >= 0)");
        goto cleanup;
    }
    bind_address = cfg->bind_address != NULL ? cfg->bind_address : "0.0.0.0";
    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    if (inet_pton(AF_INET, bind_address, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, bind_address, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        if (errstr != NULL && errlen > 0)
            snprintf(errstr, errlen, "http: bind address '%s' is not an IP address", bind_address);
        goto cleanup;
    }

    s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(errstr, errlen, "http: out of memory");
        goto cleanup;
    }
    s->cfg = *cfg;
    s->own_metrics = cmn_metrics_new();
    if (s->own_metrics == NULL) {
        set_err(errstr, errlen, "http: out of memory");
        goto cleanup;
    }
    header_bytes = cfg->max_header_bytes > 0 ? cfg->max_header_bytes : HTTP_DEFAULT_HEADER_BYTES;

    /* The logger goes first so MHD routes messages about the later options
     * through it too. A pool of one is no pool: MHD wants 0 then. */
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                                 MHD_OPTION_SOCK_ADDR, addr,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(cfg->threads > 1 ? cfg->threads : 0),
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(header_bytes + HTTP_POOL_SLACK),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->timeout_seconds,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_END);
    if (s->daemon == NULL) {
        if (errstr != NULL && errlen > 0)
            snprintf(errstr, errlen, "http: cannot listen on %s:%d", bind_address, cfg->port);
        goto cleanup;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? (int)info->port : cfg->port;
    if (s->port == 0) {
        set_err(errstr, errlen, "http: could not learn the bound port");
        goto cleanup;
    }
    if (cfg->log != NULL)
        cmn_logf(cfg->log, CMN_LOG_INFO, NULL, "http server listening on %s:%d (%d threads)",
                 bind_address, s->port, cfg->threads);
    result = s;
    s = NULL;

cleanup:
    cmn_http_server_destroy(s);
    return result;
}

int cmn_http_server_port(const cmn_http_server_t *s)
{
    return s != NULL ? s->port : -1;
}

void cmn_http_server_destroy(cmn_http_server_t *s)
{
    if (s == NULL)
        return;
    if (s->daemon != NULL) {
        /* Quiescing first closes the door to new connections while the pool
         * threads finish the requests they are running; MHD_stop_daemon then
         * joins them. The listen socket is ours to close after quiescing. */
        MHD_socket lsock = MHD_quiesce_daemon(s->daemon);
        MHD_stop_daemon(s->daemon);
        if (lsock != MHD_INVALID_SOCKET)
            close(lsock);
    }
    cmn_metrics_destroy(s->own_metrics);
    free(s);
}
