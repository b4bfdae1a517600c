/* test_http.c - the HTTP server over real sockets: built-in endpoints, the
 * handler contract, size limits and hostile input. */
/* strcasestr() for case-insensitive header checks. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crm/err.h"
#include "crm/http.h"

#define MAX_BODY 1024

typedef struct test_ctx {
    atomic_int ready;
    cmn_metrics_t *metrics;
    cmn_log_t log;
    cmn_http_server_t *server;
    int port;
} test_ctx_t;

/* One server per test; Criterion runs each test in its own process. */
static test_ctx_t T;

/* /echo returns what it saw; /invalid answers a problem with field errors;
 * /crash-proof sets an out-of-range status the server must repair. */
static void handler(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    (void)ctx;
    if (strcmp(req->path, "/echo") == 0) {
        json_object *o = json_object_new_object();
        const char *xt = cmn_http_request_header(req, "x-test");
        const char *q = cmn_http_request_query(req, "q");
        json_object_object_add(o, "method", json_object_new_string(req->method));
        json_object_object_add(o, "path", json_object_new_string(req->path));
        json_object_object_add(o, "body", json_object_new_string_len(req->body, (int)req->body_len));
        json_object_object_add(o, "body_len", json_object_new_int64((int64_t)req->body_len));
        json_object_object_add(o, "x_test", xt != NULL ? json_object_new_string(xt) : NULL);
        json_object_object_add(o, "q", q != NULL ? json_object_new_string(q) : NULL);
        json_object_object_add(o, "nul_terminated", json_object_new_boolean(req->body[req->body_len] == '\0'));
        cmn_buf_puts(&resp->body, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        resp->status = 201;
        snprintf(resp->extra_headers, sizeof resp->extra_headers,
                 "X-Echo: yes\r\nRetry-After: 5\r\nmalformed line without colon\r\n");
        return;
    }
    if (strcmp(req->path, "/invalid") == 0) {
        json_object *errors = json_object_new_array();
        json_object *e = json_object_new_object();
        json_object_object_add(e, "field", json_object_new_string("recipient.email"));
        json_object_object_add(e, "reason", json_object_new_string("missing"));
        json_object_array_add(errors, e);
        cmn_buf_puts(&resp->body, "partial output that must vanish");
        cmn_http_problem(resp, 422, "Invalid request", "One field is wrong.", errors);
        /* Ownership of errors stayed here. */
        json_object_put(errors);
        return;
    }
    if (strcmp(req->path, "/badstatus") == 0) {
        resp->status = 42;
        return;
    }
    cmn_http_problem(resp, 404, NULL, "no route", NULL);
}

static int ready_fn(void *ctx)
{
    return atomic_load(&((test_ctx_t *)ctx)->ready);
}

static void start_server(cmn_http_handler_fn h)
{
    char err[256];
    memset(&T, 0, sizeof T);
    atomic_store(&T.ready, 1);
    cmn_log_init(&T.log, "test-http", "warn");
    T.metrics = cmn_metrics_new();
    cmn_counter_add(cmn_metrics_counter(T.metrics, "app_things_total", "Things.", "kind=\"x\""), 5);
    cmn_http_config_t cfg = {
        .bind_address = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .max_body_bytes = MAX_BODY,
        .max_header_bytes = 8192,
        .timeout_seconds = 5,
        .handler = h,
        .ready = ready_fn,
        .ctx = &T,
        .metrics = T.metrics,
        .log = &T.log,
    };
    T.server = cmn_http_server_new(&cfg, err, sizeof err);
    cr_assert_not_null(T.server, "server_new: %s", err);
    T.port = cmn_http_server_port(T.server);
    cr_assert_gt(T.port, 0);
}

static void setup_with_handler(void)
{
    start_server(handler);
}

static void setup_without_handler(void)
{
    start_server(NULL);
}

static void teardown(void)
{
    cmn_http_server_destroy(T.server);
    cmn_metrics_destroy(T.metrics);
}

typedef struct reply {
    long status;
    cmn_buf_t body;
    cmn_buf_t headers;
} reply_t;

static size_t body_cb(char *p, size_t size, size_t n, void *ud)
{
    cmn_buf_append(&((reply_t *)ud)->body, p, size * n);
    return size * n;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    cmn_buf_append(&((reply_t *)ud)->headers, p, size * n);
    return size * n;
}

/* Performs one request. extra is one "Name: value" header or NULL. With
 * chunked set, the body is sent with Transfer-Encoding: chunked. Returns the
 * curl result; the reply is freed by reply_free. */
static CURLcode request(const char *method, const char *path, const char *body, size_t body_len,
                        const char *extra, int chunked, reply_t *r)
{
    char url[256];
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    CURLcode cc;

    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", T.port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (extra != NULL)
        hdrs = curl_slist_append(hdrs, extra);
    if (chunked)
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    cmn_buf_puts(&r->body, "");
    cmn_buf_puts(&r->headers, "");
    return cc;
}

static void reply_free(reply_t *r)
{
    cmn_buf_free(&r->body);
    cmn_buf_free(&r->headers);
}

static int has_header(const reply_t *r, const char *line)
{
    return strcasestr(r->headers.data, line) != NULL;
}

static json_object *parse(const reply_t *r)
{
    json_object *o = json_tokener_parse(r->body.data);
    cr_assert_not_null(o, "not JSON: %s", r->body.data);
    return o;
}

static void assert_problem(const reply_t *r, int status)
{
    cr_assert_eq(r->status, status);
    cr_assert(has_header(r, "Content-Type: application/problem+json"), "%s", r->headers.data);
    json_object *o = parse(r);
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, "status", &v));
    cr_assert_eq(json_object_get_int(v), status);
    cr_assert(json_object_object_get_ex(o, "type", &v));
    cr_assert(json_object_object_get_ex(o, "title", &v));
    cr_assert_gt(strlen(json_object_get_string(v)), 0);
    cr_assert(json_object_object_get_ex(o, "errors", &v));
    cr_assert(json_object_is_type(v, json_type_array));
    json_object_put(o);
}

/* Connects a raw TCP socket to the server. */
static int raw_connect(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

/* Reads whatever the server sends until it closes or goes quiet for wait_ms. */
static size_t raw_read_wait(int fd, char *buf, size_t len, int wait_ms)
{
    size_t used = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) <= 0 || used + 1 >= len)
            break;
        ssize_t n = recv(fd, buf + used, len - 1 - used, 0);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    return used;
}

static size_t raw_read(int fd, char *buf, size_t len)
{
    return raw_read_wait(fd, buf, len, 3000);
}

static void assert_healthy(void)
{
    reply_t r;
    cr_assert_eq(request("GET", "/healthz", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    reply_free(&r);
}

TestSuite(http, .init = setup_with_handler, .fini = teardown, .timeout = 60);

Test(http, healthz)
{
    reply_t r;
    cr_assert_eq(request("GET", "/healthz", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body.data, "{\"status\":\"ok\"}");
    cr_assert(has_header(&r, "Content-Type: application/json"));
    reply_free(&r);
}

Test(http, readyz_follows_ready_callback)
{
    reply_t r;
    cr_assert_eq(request("GET", "/readyz", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    reply_free(&r);

    atomic_store(&T.ready, 0);
    cr_assert_eq(request("GET", "/readyz", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 503);
    reply_free(&r);

    atomic_store(&T.ready, 1);
    cr_assert_eq(request("HEAD", "/readyz", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    reply_free(&r);
}

Test(http, metrics_renders_registry_and_request_counter)
{
    reply_t r;
    assert_healthy();
    assert_healthy();
    cr_assert_eq(request("GET", "/nowhere", NULL, 0, NULL, 0, &r), CURLE_OK);
    reply_free(&r);

    cr_assert_eq(request("GET", "/metrics", NULL, 0, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    cr_assert(has_header(&r, "Content-Type: text/plain; version=0.0.4"), "%s", r.headers.data);
    cr_assert_not_null(strstr(r.body.data, "# TYPE app_things_total counter\napp_things_total{kind=\"x\"} 5\n"),
                       "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "# HELP http_requests_total "), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "# TYPE http_requests_total counter\n"), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "http_requests_total{code=\"200\"} 2\n"), "%s", r.body.data);
    cr_assert_not_null(strstr(r.body.data, "http_requests_total{code=\"404\"} 1\n"), "%s", r.body.data);
    /* One family header even with two codes. */
    cr_assert_null(strstr(strstr(r.body.data, "# TYPE http_requests_total") + 1, "# TYPE http_requests_total"));
    reply_free(&r);
}

Test(http, wrong_method_on_builtin_is_405)
{
    reply_t r;
    cr_assert_eq(request("POST", "/metrics", "x", 1, NULL, 0, &r), CURLE_OK);
    assert_problem(&r, 405);
    cr_assert(has_header(&r, "Allow: GET, HEAD"), "%s", r.headers.data);
    reply_free(&r);
    cr_assert_eq(request("DELETE", "/healthz", NULL, 0, NULL, 0, &r), CURLE_OK);
    assert_problem(&r, 405);
    reply_free(&r);
}

Test(http, handler_sees_method_path_headers_query_body)
{
    reply_t r;
    static const char body[] = "{\"hello\":\"w\\u00f6rld\"}";
    cr_assert_eq(request("POST", "/echo?q=a%20b&other=1", body, strlen(body), "X-Test: header value", 0, &r),
                 CURLE_OK);
    cr_assert_eq(r.status, 201, "%s", r.body.data);
    cr_assert(has_header(&r, "X-Echo: yes"), "%s", r.headers.data);
    cr_assert(has_header(&r, "Retry-After: 5"), "%s", r.headers.data);
    cr_assert(has_header(&r, "Content-Type: application/json"), "%s", r.headers.data);
    json_object *o = parse(&r);
    json_object *v = NULL;
    json_object_object_get_ex(o, "method", &v);
    cr_assert_str_eq(json_object_get_string(v), "POST");
    json_object_object_get_ex(o, "path", &v);
    cr_assert_str_eq(json_object_get_string(v), "/echo");
    json_object_object_get_ex(o, "body", &v);
    cr_assert_str_eq(json_object_get_string(v), body);
    json_object_object_get_ex(o, "x_test", &v);
    cr_assert_str_eq(json_object_get_string(v), "header value");
    json_object_object_get_ex(o, "q", &v);
    cr_assert_str_eq(json_object_get_string(v), "a b");
    json_object_object_get_ex(o, "nul_terminated", &v);
    cr_assert(json_object_get_boolean(v));
    json_object_put(o);
    reply_free(&r);

    /* No body: an empty, NUL-terminated string. */
    cr_assert_eq(request("GET", "/echo", NULL, 0, NULL, 0, &r), CURLE_OK);
    o = parse(&r);
    json_object_object_get_ex(o, "body_len", &v);
    cr_assert_eq(json_object_get_int(v), 0);
    json_object_object_get_ex(o, "x_test", &v);
    cr_assert_null(v);
    json_object_put(o);
    reply_free(&r);
}

Test(http, body_exactly_at_limit_is_accepted)
{
    reply_t r;
    char body[MAX_BODY];
    memset(body, 'a', sizeof body);
    cr_assert_eq(request("POST", "/echo", body, sizeof body, NULL, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 201);
    reply_free(&r);
}

Test(http, body_over_limit_is_413)
{
    reply_t r;
    size_t big = 4 * 1024 * 1024;
    char *body = malloc(big);
    memset(body, 'a', big);
    /* Declared with Content-Length: refused before the body is read. curl
     * may see the connection close while still sending, which is fine as
     * long as the 413 arrived. */
    CURLcode cc = request("POST", "/echo", body, MAX_BODY + 1, NULL, 0, &r);
    cr_assert_eq(cc, CURLE_OK, "%s", curl_easy_strerror(cc));
    assert_problem(&r, 413);
    reply_free(&r);

    cc = request("POST", "/echo", body, big, NULL, 0, &r);
    cr_assert(cc == CURLE_OK || cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR, "%s", curl_easy_strerror(cc));
    if (cc == CURLE_OK)
        assert_problem(&r, 413);
    reply_free(&r);

    /* Chunked: no length up front, so the server counts and discards. */
    cc = request("POST", "/echo", body, 64 * 1024, NULL, 1, &r);
    cr_assert_eq(cc, CURLE_OK, "%s", curl_easy_strerror(cc));
    assert_problem(&r, 413);
    reply_free(&r);
    free(body);
    assert_healthy();
}

Test(http, handler_problem_with_errors)
{
    reply_t r;
    cr_assert_eq(request("POST", "/invalid", "{}", 2, NULL, 0, &r), CURLE_OK);
    assert_problem(&r, 422);
    json_object *o = parse(&r);
    json_object *v = NULL;
    json_object_object_get_ex(o, "type", &v);
    cr_assert_str_eq(json_object_get_string(v), "urn:crm:problem:invalid-request");
    json_object_object_get_ex(o, "title", &v);
    cr_assert_str_eq(json_object_get_string(v), "Invalid request");
    json_object_object_get_ex(o, "detail", &v);
    cr_assert_str_eq(json_object_get_string(v), "One field is wrong.");
    json_object_object_get_ex(o, "errors", &v);
    cr_assert_eq(json_object_array_length(v), 1);
    json_object *e = json_object_array_get_idx(v, 0);
    json_object_object_get_ex(e, "field", &v);
    cr_assert_str_eq(json_object_get_string(v), "recipient.email");
    json_object_put(o);
    reply_free(&r);
}

Test(http, invalid_handler_status_becomes_500)
{
    reply_t r;
    cr_assert_eq(request("GET", "/badstatus", NULL, 0, NULL, 0, &r), CURLE_OK);
    assert_problem(&r, 500);
    reply_free(&r);
}

Test(http, garbage_on_raw_socket_does_not_crash)
{
    static const char *const garbage[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
        "NOT A REQUEST\r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        "GET /\x01\x02\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort", /* then hang up */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        char buf[4096];
        int fd = raw_connect();
        send(fd, garbage[i], strlen(garbage[i]), MSG_NOSIGNAL);
        if (i + 1 < sizeof garbage / sizeof garbage[0])
            raw_read(fd, buf, sizeof buf);
        close(fd);
    }
    /* A NUL byte in the request line. */
    {
        char buf[4096];
        static const char nul_req[] = "GET /he\0lthz HTTP/1.1\r\nHost: x\r\n\r\n";
        int fd = raw_connect();
        send(fd, nul_req, sizeof nul_req - 1, MSG_NOSIGNAL);
        raw_read(fd, buf, sizeof buf);
        close(fd);
    }
    assert_healthy();
}

Test(http, random_bytes_do_not_crash)
{
    unsigned int seed = 12345;
    for (int i = 0; i < 50; i++) {
        char junk[700];
        char buf[2048];
        size_t n = (size_t)(rand_r(&seed) % (int)sizeof junk) + 1;
        for (size_t k = 0; k < n; k++)
            junk[k] = (char)(rand_r(&seed) & 0xff);
        /* Half of them start like a real request so the header parser,
         * not just the request-line parser, sees the junk. */
        if (i % 2 == 0 && n > 20)
            memcpy(junk, "POST /echo HTTP/1.1\r\n", 21);
        int fd = raw_connect();
        send(fd, junk, n, MSG_NOSIGNAL);
        /* Half-closing makes the server see the end of input at once. */
        shutdown(fd, SHUT_WR);
        raw_read_wait(fd, buf, sizeof buf, 200);
        close(fd);
    }
    assert_healthy();
}

Test(http, huge_headers_are_refused)
{
    char buf[4096];
    size_t n = 64 * 1024;
    char *req = malloc(n + 128);
    int len = snprintf(req, 128, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + len, 'a', n);
    memcpy(req + len + n, "\r\n\r\n", 4);
    int fd = raw_connect();
    send(fd, req, (size_t)len + n + 4, MSG_NOSIGNAL);
    size_t got = raw_read(fd, buf, sizeof buf);
    close(fd);
    free(req);
    /* MHD answers 431 or simply closes; it must not answer 200. */
    if (got > 0)
        cr_assert(strncmp(buf, "HTTP/1.1 4", 10) == 0, "%s", buf);
    assert_healthy();
}

Test(http, keep_alive_and_pipelined_requests)
{
    char buf[8192];
    static const char two[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = raw_connect();
    send(fd, two, sizeof two - 1, MSG_NOSIGNAL);
    raw_read(fd, buf, sizeof buf);
    close(fd);
    cr_assert_not_null(strstr(buf, "{\"status\":\"ok\"}"), "%s", buf);
    cr_assert_not_null(strstr(buf, "{\"status\":\"ready\"}"), "%s", buf);
}

Test(http_nohandler, unknown_path_is_404_problem, .init = setup_without_handler, .fini = teardown)
{
    reply_t r;
    cr_assert_eq(request("GET", "/v1/anything", NULL, 0, NULL, 0, &r), CURLE_OK);
    assert_problem(&r, 404);
    json_object *o = parse(&r);
    json_object *v = NULL;
    json_object_object_get_ex(o, "type", &v);
    cr_assert_str_eq(json_object_get_string(v), "about:blank");
    json_object_object_get_ex(o, "title", &v);
    cr_assert_str_eq(json_object_get_string(v), "Not Found");
    json_object_put(o);
    reply_free(&r);
    assert_healthy();
}

Test(http_config, bad_config_is_refused)
{
    char err[256];
    cmn_http_config_t cfg = {.bind_address = "127.0.0.1", .port = 0, .threads = 0, .max_body_bytes = 10};
    cr_assert_null(cmn_http_server_new(&cfg, err, sizeof err));
    cr_assert_gt(strlen(err), 0);
    cfg.threads = 1;
    cfg.bind_address = "not-an-ip";
    cr_assert_null(cmn_http_server_new(&cfg, err, sizeof err));
    cr_assert_not_null(strstr(err, "not-an-ip"));
    cr_assert_null(cmn_http_server_new(NULL, NULL, 0));
}

Test(http_config, port_in_use_is_an_error)
{
    char err[256];
    cmn_http_config_t cfg = {.bind_address = "127.0.0.1", .port = 0, .threads = 1, .max_body_bytes = 10};
    cmn_http_server_t *a = cmn_http_server_new(&cfg, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cfg.port = cmn_http_server_port(a);
    cr_assert_null(cmn_http_server_new(&cfg, err, sizeof err));
    cr_assert_gt(strlen(err), 0);
    cmn_http_server_destroy(a);
}

Test(http_problem, fills_response_and_keeps_caller_errors)
{
    cmn_http_response_t resp;
    memset(&resp, 0, sizeof resp);
    json_object *errors = json_object_new_array();
    json_object_array_add(errors, json_object_new_string("x"));
    cmn_buf_puts(&resp.body, "stale");
    cr_assert_eq(cmn_http_problem(&resp, 400, NULL, "d/e", errors), 0);
    cr_assert_eq(resp.status, 400);
    cr_assert_str_eq(resp.content_type, "application/problem+json");
    cr_assert_str_eq(resp.body.data, "{\"type\":\"urn:crm:problem:invalid-request\",\"title\":\"Bad Request\","
                                     "\"status\":400,\"detail\":\"d/e\",\"errors\":[\"x\"]}");
    cr_assert_eq(json_object_array_length(errors), 1);
    json_object_put(errors);
    cr_assert_eq(cmn_http_problem(&resp, 1000, NULL, NULL, NULL), CMN_ERR_INVALID);
    cmn_buf_free(&resp.body);
}
