/* http.h - the HTTP server every service runs, on libmicrohttpd.
 *
 * The server runs a pool of worker threads (libmicrohttpd's internal thread
 * pool); handlers may block (ingest waits for Kafka acknowledgements). It
 * buffers the whole request body up to max_body_bytes (413 past that), caps
 * header memory, and times out idle connections. GET /metrics, /healthz and
 * /readyz are answered by the server itself on every service; everything else
 * goes to the service's handler. */
#ifndef CRM_HTTP_H
#define CRM_HTTP_H

#include <stddef.h>

#include "crm/buf.h"
#include "crm/log.h"
#include "crm/metrics.h"

typedef struct cmn_http_server cmn_http_server_t;

typedef struct cmn_http_request {
    const char *method;      /* "GET", "POST", ... */
    const char *path;        /* URL path without the query string, e.g. "/v1/communications" */
    const char *body;        /* raw body, NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    void *internal;          /* the server's connection handle; use the accessors below */
} cmn_http_request_t;

typedef struct cmn_http_response {
    int status;              /* 200 unless the handler sets it */
    char content_type[96];   /* default "application/json" */
    cmn_buf_t body;          /* the handler appends; the server frees */
    /* "Name: value\r\n" lines, e.g. "Retry-After: 5\r\n"; room for a Location
     * header with a click target of CMN_TRACK_TARGET_MAX (2048) bytes. */
    char extra_headers[4096];
} cmn_http_response_t;

/* Header (case-insensitive) and query-argument lookups; borrowed, NULL if absent. */
const char *cmn_http_request_header(const cmn_http_request_t *req, const char *name);
const char *cmn_http_request_query(const cmn_http_request_t *req, const char *name);

/* Appends the request's query string (without the '?') rebuilt from its
 * parsed arguments, in the order received, each name and value
 * percent-encoded (RFC 3986 unreserved bytes kept, others as upper-case
 * %XX) and joined with '&' ("name" alone for an argument without '=').
 * Nothing is appended when there is no query. It equals the raw query for
 * any query written in that canonical form (such as the URLs the engine
 * builds itself), which is what a check that signs the requested URL
 * (Twilio's webhooks) needs. Returns 0, CMN_ERR_INVALID or CMN_ERR_NOMEM. */
int cmn_http_request_query_string(const cmn_http_request_t *req, cmn_buf_t *out);

/* ctx is the service context. Called from a server thread; must be thread-safe. */
typedef void (*cmn_http_handler_fn)(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp);
/* Returns 1 when the service is ready to take traffic (dependencies reachable). */
typedef int (*cmn_http_ready_fn)(void *ctx);

typedef struct cmn_http_config {
    const char *bind_address;   /* "0.0.0.0" or "127.0.0.1" */
    int port;                   /* 0 picks a free port (see cmn_http_server_port) */
    int threads;                /* worker threads, >= 1 */
    size_t max_body_bytes;      /* 413 past this */
    size_t max_header_bytes;    /* per-connection memory for headers */
    int timeout_seconds;        /* idle connection timeout */
    cmn_http_handler_fn handler; /* NULL: only the built-in endpoints (404 otherwise) */
    cmn_http_ready_fn ready;    /* NULL: always ready */
    void *ctx;
    cmn_metrics_t *metrics;     /* rendered at /metrics; the server adds http_requests_total */
    const cmn_log_t *log;
} cmn_http_config_t;

/* Starts listening. Borrows cfg's pointers for the server's life. */
cmn_http_server_t *cmn_http_server_new(const cmn_http_config_t *cfg, char *errstr, size_t errlen);
int cmn_http_server_port(const cmn_http_server_t *s);
/* Stops accepting, finishes requests in flight, frees everything. */
void cmn_http_server_destroy(cmn_http_server_t *s);

/* Fills resp with an RFC 9457 application/problem+json body. errors is NULL
 * or a json-c array of {"field": ..., "reason": ...} objects (ownership
 * stays with the caller). */
struct json_object;
int cmn_http_problem(cmn_http_response_t *resp, int status, const char *title, const char *detail,
                     struct json_object *errors);

#endif
