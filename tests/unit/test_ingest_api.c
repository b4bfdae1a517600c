/* test_ingest_api.c - the pure batch handling of POST /v1/communications
 * (services/ingest/ingest_api.h): routing, content type, body shapes,
 * limits, error listing and the 202 body. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/uuid.h"
#include "ingest_api.h"

#define REQ(id, phone)                                                                                          \
    "{\"request_id\":\"" id "\",\"client_id\":\"client-" id "\",\"message_type\":\"welcome\","                 \
    "\"recipient\":{\"phone\":\"" phone "\"}}"

static const int64_t NOW = 1763802000123;

typedef struct parsed {
    int rc;
    ingest_batch_t batch;
    ingest_problem_t problem;
} parsed_t;

static parsed_t run(const char *body, size_t max_batch)
{
    parsed_t p;
    memset(&p, 0, sizeof p);
    p.rc = ingest_api_parse(body, strlen(body), max_batch, NOW, &p.batch, &p.problem);
    return p;
}

static void done(parsed_t *p)
{
    ingest_batch_clear(&p->batch);
    ingest_problem_clear(&p->problem);
}

static int has_field(const ingest_problem_t *pr, const char *field)
{
    for (size_t i = 0; pr->errors != NULL && i < json_object_array_length(pr->errors); i++) {
        json_object *e = json_object_array_get_idx(pr->errors, i);
        if (strcmp(json_object_get_string(json_object_object_get(e, "field")), field) == 0)
            return 1;
    }
    return 0;
}

static size_t nerrors(const ingest_problem_t *pr)
{
    return pr->errors != NULL ? json_object_array_length(pr->errors) : 0;
}

/* Asserts a refusal with exactly the given error fields and nothing accepted. */
static void expect_refused(const char *body, size_t max_batch, const char *const *fields, size_t nfields)
{
    parsed_t p = run(body, max_batch);
    cr_expect_eq(p.rc, CMN_ERR_INVALID, "should be refused: %s", body);
    cr_expect_eq(p.problem.status, 400);
    cr_expect_eq(p.batch.n, 0, "nothing is accepted from a refused submission");
    cr_expect_null(p.batch.requests);
    cr_expect_eq(nerrors(&p.problem), nfields, "%s -> %s", body,
                 p.problem.errors ? json_object_to_json_string(p.problem.errors) : "(none)");
    for (size_t i = 0; i < nfields; i++)
        cr_expect(has_field(&p.problem, fields[i]), "%s: no error on %s in %s", body, fields[i],
                  p.problem.errors ? json_object_to_json_string(p.problem.errors) : "(none)");
    done(&p);
}

Test(ingest_api, routes)
{
    cr_expect_eq(ingest_api_route("POST", "/v1/communications"), INGEST_ROUTE_SUBMIT);
    cr_expect_eq(ingest_api_route("GET", "/v1/communications"), INGEST_ROUTE_METHOD_NOT_ALLOWED);
    cr_expect_eq(ingest_api_route("PUT", "/v1/communications"), INGEST_ROUTE_METHOD_NOT_ALLOWED);
    cr_expect_eq(ingest_api_route("DELETE", "/v1/communications"), INGEST_ROUTE_METHOD_NOT_ALLOWED);
    cr_expect_eq(ingest_api_route("POST", "/v1/communications/"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("POST", "/v1/communication"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("POST", "/"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("POST", NULL), INGEST_ROUTE_NOT_FOUND);
}

Test(ingest_api, content_type)
{
    const char *ok[] = {"application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\"",
                        "application/json ;  charset = utf-8 ", "application/json; foo=bar"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(ingest_api_content_type_ok(ok[i]), "'%s' should be accepted", ok[i]);
    const char *bad[] = {NULL, "", "text/plain", "application/jsonx", "application/json-seq", "application/xml",
                         "application/json; charset=iso-8859-1", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/json garbage"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(ingest_api_content_type_ok(bad[i]), "'%s' should be refused", bad[i] ? bad[i] : "(null)");
}

Test(ingest_api, traceparent)
{
    cr_expect(ingest_api_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_expect(ingest_api_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    cr_expect_not(ingest_api_traceparent_ok(NULL));
    cr_expect_not(ingest_api_traceparent_ok(""));
    cr_expect_not(ingest_api_traceparent_ok("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    cr_expect_not(ingest_api_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    cr_expect_not(ingest_api_traceparent_ok("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_expect_not(ingest_api_traceparent_ok("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    cr_expect_not(ingest_api_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
    cr_expect_not(ingest_api_traceparent_ok("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

Test(ingest_api, single_request)
{
    parsed_t p = run(REQ("r-1", "+14155550100"), 1000);
    cr_assert_eq(p.rc, 0);
    cr_expect_eq(p.batch.single, 1);
    cr_assert_eq(p.batch.n, 1);
    const cmn_request_t *r = &p.batch.requests[0];
    cr_expect_str_eq(r->request_id, "r-1");
    cr_expect_str_eq(r->client_id, "client-r-1");
    cr_expect_eq(r->received_at_ms, NOW, "ingest stamps received_at");
    char want[CMN_UUID_STR_LEN + 1];
    cmn_uuid_communication_id("default", "r-1", want);
    cr_expect_str_eq(r->communication_id, want);

    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(ingest_api_accepted_body(&p.batch, &b), 0);
    char expect[256];
    snprintf(expect, sizeof expect,
             "{\"communications\":[{\"request_id\":\"r-1\",\"communication_id\":\"%s\"}],\"communication_id\":\"%s\"}",
             want, want);
    cr_expect_str_eq(b.data, expect);

    /* The normalised record carries received_at. */
    cmn_buf_reset(&b);
    cr_assert_eq(cmn_request_to_json(r, &b), 0);
    cr_expect_not_null(strstr(b.data, "\"received_at\":\"2025-11-22T09:00:00.123Z\""), "%s", b.data);
    cmn_buf_free(&b);
    done(&p);
}

Test(ingest_api, batch_keeps_order)
{
    parsed_t p = run("{\"requests\":[" REQ("a", "+14155550100") "," REQ("b", "+14155550101") "," REQ(
                         "c", "+14155550102") "]}",
                     1000);
    cr_assert_eq(p.rc, 0, "%s", p.problem.detail);
    cr_expect_eq(p.batch.single, 0);
    cr_assert_eq(p.batch.n, 3);
    cr_expect_str_eq(p.batch.requests[0].request_id, "a");
    cr_expect_str_eq(p.batch.requests[1].request_id, "b");
    cr_expect_str_eq(p.batch.requests[2].request_id, "c");
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(p.batch.requests[i].received_at_ms, NOW);

    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(ingest_api_accepted_body(&p.batch, &b), 0);
    char err[128];
    json_object *o = cmn_json_parse(b.data, b.len, err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    json_object *arr = json_object_object_get(o, "communications");
    cr_assert_eq(json_object_array_length(arr), 3);
    for (size_t i = 0; i < 3; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        cr_expect_str_eq(json_object_get_string(json_object_object_get(item, "request_id")),
                         p.batch.requests[i].request_id);
        cr_expect_str_eq(json_object_get_string(json_object_object_get(item, "communication_id")),
                         p.batch.requests[i].communication_id);
    }
    cr_expect_not(json_object_object_get_ex(o, "communication_id", NULL), "batch form has no top-level id");
    json_object_put(o);
    cmn_buf_free(&b);
    done(&p);
}

Test(ingest_api, batch_of_one_keeps_batch_shape)
{
    parsed_t p = run("{\"requests\":[" REQ("a", "+14155550100") "]}", 1000);
    cr_assert_eq(p.rc, 0);
    cr_expect_eq(p.batch.single, 0);
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(ingest_api_accepted_body(&p.batch, &b), 0);
    cr_expect_null(strstr(b.data, "}],\"communication_id\""), "%s", b.data);
    cmn_buf_free(&b);
    done(&p);
}

Test(ingest_api, one_bad_request_refuses_the_whole_batch)
{
    const char *fields[] = {"requests[1].recipient.phone"};
    expect_refused("{\"requests\":[" REQ("a", "+14155550100") "," REQ("b", "555-0100") "," REQ("c", "+14155550102") "]}",
                   1000, fields, 1);
}

Test(ingest_api, every_bad_item_is_listed)
{
    const char *fields[] = {"requests[0].recipient.phone", "requests[2].client_id", "requests[2].urgency",
                            "requests[3]"};
    expect_refused("{\"requests\":[" REQ("a", "+1") "," REQ("b", "+14155550101") ","
                   "{\"request_id\":\"c\",\"message_type\":\"m\",\"urgency\":\"now\",\"recipient\":{\"email\":\"c@example.com\"}},"
                   "42]}",
                   1000, fields, 4);

    parsed_t p = run("{\"requests\":[" REQ("a", "+1") "]}", 1000);
    cr_expect_str_eq(p.problem.title, "Invalid request");
    cr_expect_not_null(strstr(p.problem.detail, "1 field failed"), "%s", p.problem.detail);
    done(&p);
}

Test(ingest_api, single_request_errors_have_no_prefix)
{
    const char *fields[] = {"recipient.phone", "message_type"};
    expect_refused("{\"request_id\":\"r\",\"client_id\":\"c\",\"recipient\":{\"phone\":\"0100\"}}", 1000, fields, 2);
}

Test(ingest_api, batch_envelope_errors)
{
    const char *requests[] = {"requests"};
    expect_refused("{\"requests\":[]}", 1000, requests, 1);
    expect_refused("{\"requests\":{}}", 1000, requests, 1);
    expect_refused("{\"requests\":null}", 1000, requests, 1);
    expect_refused("{\"requests\":\"a request\"}", 1000, requests, 1);

    const char *extra[] = {"dry_run"};
    expect_refused("{\"requests\":[" REQ("a", "+14155550100") "],\"dry_run\":true}", 1000, extra, 1);
}

Test(ingest_api, batch_size_limit)
{
    const char *two = "{\"requests\":[" REQ("a", "+14155550100") "," REQ("b", "+14155550101") "]}";
    const char *three =
        "{\"requests\":[" REQ("a", "+14155550100") "," REQ("b", "+14155550101") "," REQ("c", "+1") "]}";
    parsed_t p = run(two, 2);
    cr_expect_eq(p.rc, 0);
    cr_expect_eq(p.batch.n, 2);
    done(&p);

    /* Over the limit, items are not validated: the only error is the size. */
    const char *requests[] = {"requests"};
    expect_refused(three, 2, requests, 1);
    p = run(three, 2);
    json_object *e = json_object_array_get_idx(p.problem.errors, 0);
    cr_expect_not_null(strstr(json_object_get_string(json_object_object_get(e, "reason")), "at most 2"));
    done(&p);
}

Test(ingest_api, wrong_body_types)
{
    const char *root[] = {"request"};
    expect_refused("[" REQ("a", "+14155550100") "]", 1000, root, 1);
    expect_refused("\"text\"", 1000, root, 1);
    expect_refused("17", 1000, root, 1);
    expect_refused("true", 1000, root, 1);

    const char *rid[] = {"request_id"};
    expect_refused("{\"request_id\":7,\"client_id\":\"c\",\"message_type\":\"m\",\"recipient\":{\"phone\":\"+14155550100\"}}",
                   1000, rid, 1);
}

Test(ingest_api, invalid_json_names_the_position)
{
    const char *bodies[] = {"", "{", "{\"requests\":[", "{\"a\":1,}", "{} trailing", "nul\x01"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        parsed_t p = run(bodies[i], 1000);
        cr_expect_eq(p.rc, CMN_ERR_INVALID, "'%s'", bodies[i]);
        cr_expect_eq(p.problem.status, 400);
        cr_expect_str_eq(p.problem.title, "Invalid JSON");
        cr_expect_not_null(strstr(p.problem.detail, "offset"), "'%s' -> %s", bodies[i], p.problem.detail);
        cr_expect_eq(p.batch.n, 0);
        done(&p);
    }
    parsed_t p = run("{\"requests\":[{\"request_id\":\"a\",}]}", 1000);
    cr_expect_not_null(strstr(p.problem.detail, "offset 31"), "%s", p.problem.detail);
    done(&p);
}

Test(ingest_api, duplicate_request_ids_share_an_id)
{
    parsed_t p = run("{\"requests\":[" REQ("same", "+14155550100") "," REQ("same", "+14155550100") "]}", 1000);
    cr_assert_eq(p.rc, 0);
    cr_expect_str_eq(p.batch.requests[0].communication_id, p.batch.requests[1].communication_id);
    done(&p);
}

Test(ingest_api, tenants_separate_ids)
{
    parsed_t p = run("{\"requests\":["
                     "{\"request_id\":\"x\",\"tenant_id\":\"acme\",\"client_id\":\"c\",\"message_type\":\"m\",\"recipient\":{\"email\":\"a@example.com\"}},"
                     "{\"request_id\":\"x\",\"tenant_id\":\"globex\",\"client_id\":\"c\",\"message_type\":\"m\",\"recipient\":{\"email\":\"a@example.com\"}}]}",
                     1000);
    cr_assert_eq(p.rc, 0);
    cr_expect_str_neq(p.batch.requests[0].communication_id, p.batch.requests[1].communication_id);
    done(&p);
}

Test(ingest_api, bad_arguments)
{
    ingest_batch_t b;
    ingest_problem_t pr;
    memset(&b, 0, sizeof b);
    memset(&pr, 0, sizeof pr);
    cr_expect_eq(ingest_api_parse("{}", 2, 0, NOW, &b, &pr), CMN_ERR_INVALID);
    cr_expect_eq(ingest_api_parse("{}", 2, 10, NOW, NULL, &pr), CMN_ERR_INVALID);
    ingest_batch_clear(NULL);
    ingest_problem_clear(NULL);
}
