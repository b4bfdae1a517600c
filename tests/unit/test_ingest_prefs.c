/* test_ingest_prefs.c - the pure part of /v1/clients/{client_id}/preferences
 * (services/ingest/ingest_prefs.h): routing, path and tenant checks, PUT
 * body validation naming every field, identity taken from the path, the
 * server's updated_at, and the strictly increasing stamp. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/preferences.h"
#include "ingest_api.h"
#include "ingest_prefs.h"

static const int64_t NOW = 1763802000123; /* 2025-11-22T09:00:00.123Z */
#define NOW_TEXT "2025-11-22T09:00:00.123Z"

typedef struct put {
    int rc;
    cmn_preferences_t prefs;
    ingest_problem_t problem;
} put_t;

static put_t put(const char *body, const char *client, const char *tenant)
{
    put_t p;
    memset(&p, 0, sizeof p);
    p.rc = ingest_prefs_parse(body, strlen(body), client, tenant, NOW, &p.prefs, &p.problem);
    return p;
}

static void done(put_t *p)
{
    cmn_preferences_clear(&p->prefs);
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

static void canonical(const cmn_preferences_t *p, char *out, size_t outlen)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_preferences_to_json(p, &b), 0);
    snprintf(out, outlen, "%s", b.data);
    cmn_buf_free(&b);
}

Test(ingest_prefs, routes_and_allow)
{
    cr_expect_eq(ingest_api_route("GET", "/v1/clients/c-42/preferences"), INGEST_ROUTE_PREFS_GET);
    cr_expect_eq(ingest_api_route("PUT", "/v1/clients/c-42/preferences"), INGEST_ROUTE_PREFS_PUT);
    cr_expect_eq(ingest_api_route("DELETE", "/v1/clients/c-42/preferences"), INGEST_ROUTE_PREFS_DELETE);
    cr_expect_eq(ingest_api_route("POST", "/v1/clients/c-42/preferences"), INGEST_ROUTE_METHOD_NOT_ALLOWED);
    cr_expect_eq(ingest_api_route("PATCH", "/v1/clients/c-42/preferences"), INGEST_ROUTE_METHOD_NOT_ALLOWED);
    cr_expect_eq(ingest_api_route("GET", "/v1/clients//preferences"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("GET", "/v1/clients/preferences"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("GET", "/v1/clients/c-42"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_eq(ingest_api_route("GET", "/v1/clients/c-42/preferences/"), INGEST_ROUTE_NOT_FOUND);
    cr_expect_str_eq(ingest_api_allow("/v1/clients/c-42/preferences"), "GET, PUT, DELETE");
    cr_expect_str_eq(ingest_api_allow("/v1/communications"), "POST");
    cr_expect_null(ingest_api_allow("/v1/nothing"));
    /* The communications resource is unchanged. */
    cr_expect_eq(ingest_api_route("POST", "/v1/communications"), INGEST_ROUTE_SUBMIT);
}

Test(ingest_prefs, path_extracts_the_decoded_client_id)
{
    char client[CMN_REQ_MAX_ID + 1];
    cr_assert(ingest_prefs_path("/v1/clients/c-42/preferences", client, sizeof client));
    cr_expect_str_eq(client, "c-42");
    /* %2F decoded by the server: the id contains a slash, which is a valid id. */
    cr_assert(ingest_prefs_path("/v1/clients/org/7/preferences", client, sizeof client));
    cr_expect_str_eq(client, "org/7");
    char tiny[4];
    cr_assert(ingest_prefs_path("/v1/clients/too-long/preferences", tiny, sizeof tiny));
    cr_expect_str_eq(tiny, "", "an id that does not fit is left empty, so it fails validation");
    cr_expect_not(ingest_prefs_path(NULL, client, sizeof client));
}

Test(ingest_prefs, valid_put_takes_client_from_path_and_stamps_updated_at)
{
    put_t p = put("{\"preferred_channels\":[\"whatsapp\",\"email\"],\"timezone\":\"Europe/Paris\","
                  "\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"},\"opt_out\":{\"sms\":true},"
                  "\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00Z\",\"source\":\"web_form\"},"
                  "\"locale\":\"fr-fr\"}",
                  "c-42", NULL);
    cr_assert_eq(p.rc, 0, "%s", p.problem.detail);
    char json[1024];
    canonical(&p.prefs, json, sizeof json);
    cr_expect_str_eq(json,
                     "{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-42\","
                     "\"preferred_channels\":[\"whatsapp\",\"email\"],\"timezone\":\"Europe/Paris\","
                     "\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"},"
                     "\"opt_out\":{\"email\":false,\"sms\":true,\"whatsapp\":false},"
                     "\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00.000Z\","
                     "\"source\":\"web_form\"},\"locale\":\"fr-FR\",\"updated_at\":\"" NOW_TEXT "\"}");
    done(&p);
}

Test(ingest_prefs, tenant_comes_from_body_or_query)
{
    put_t p = put("{\"tenant_id\":\"acme\"}", "c-1", NULL);
    cr_assert_eq(p.rc, 0);
    cr_expect_str_eq(p.prefs.tenant_id, "acme");
    done(&p);
    p = put("{}", "c-1", "acme");
    cr_assert_eq(p.rc, 0);
    cr_expect_str_eq(p.prefs.tenant_id, "acme");
    done(&p);
    p = put("{\"tenant_id\":\"acme\"}", "c-1", "acme");
    cr_assert_eq(p.rc, 0);
    done(&p);
    p = put("{\"tenant_id\":\"acme\"}", "c-1", "other");
    cr_expect_eq(p.rc, CMN_ERR_INVALID);
    cr_expect(has_field(&p.problem, "tenant_id"));
    done(&p);
}

Test(ingest_prefs, a_get_answer_can_be_put_back)
{
    /* client_id equal to the path and any updated_at are accepted: the
     * server's clock replaces updated_at. */
    put_t p = put("{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-9\",\"preferred_channels\":[],"
                  "\"opt_out\":{\"email\":false,\"sms\":false,\"whatsapp\":false},"
                  "\"updated_at\":\"2020-01-01T00:00:00.000Z\"}",
                  "c-9", NULL);
    cr_assert_eq(p.rc, 0, "%s", p.problem.detail);
    cr_expect_eq(p.prefs.updated_at_ms, NOW);
    done(&p);
}

Test(ingest_prefs, every_bad_field_is_named)
{
    put_t p = put("{\"client_id\":\"someone-else\",\"preferred_channels\":[\"email\",\"fax\"],"
                  "\"quiet_hours\":{\"start\":\"25:00\",\"end\":\"08:00\"},\"opt_out\":{\"sms\":\"yes\"},"
                  "\"whatsapp_consent\":{\"granted\":true},\"locale\":\"not a locale\",\"colour\":\"blue\"}",
                  "c-42", NULL);
    cr_assert_eq(p.rc, CMN_ERR_INVALID);
    cr_expect_eq(p.problem.status, 400);
    const char *fields[] = {"client_id", "preferred_channels[1]", "quiet_hours.start", "timezone", "opt_out.sms",
                            "whatsapp_consent.at", "whatsapp_consent.source", "locale", "colour"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        cr_expect(has_field(&p.problem, fields[i]), "%s not named", fields[i]);
    cr_expect_eq(nerrors(&p.problem), sizeof fields / sizeof fields[0], "%zu errors", nerrors(&p.problem));
    cr_expect_null(p.prefs.client_id, "nothing is kept from a refused body");
    done(&p);
}

Test(ingest_prefs, bad_path_and_query_are_named_before_the_body)
{
    put_t p = put("{\"opt_out\":{\"sms\":\"yes\"}}", "has space", "a:b");
    cr_assert_eq(p.rc, CMN_ERR_INVALID);
    cr_expect(has_field(&p.problem, "client_id"));
    cr_expect(has_field(&p.problem, "tenant_id"));
    cr_expect_eq(nerrors(&p.problem), 2);
    done(&p);
    p = put("{}", "", NULL);
    cr_expect_eq(p.rc, CMN_ERR_INVALID);
    cr_expect(has_field(&p.problem, "client_id"));
    done(&p);
}

Test(ingest_prefs, body_shapes)
{
    put_t p = put("{\"opt_out\":", "c-1", NULL);
    cr_expect_eq(p.rc, CMN_ERR_INVALID);
    cr_expect_str_eq(p.problem.title, "Invalid JSON");
    done(&p);
    p = put("[1,2]", "c-1", NULL);
    cr_expect_eq(p.rc, CMN_ERR_INVALID);
    cr_expect(has_field(&p.problem, "preferences"));
    done(&p);
    p = put("{}", "c-1", NULL);
    cr_expect_eq(p.rc, 0, "an empty body is a snapshot with every default");
    done(&p);
}

Test(ingest_prefs, target)
{
    ingest_prefs_target_t t;
    ingest_problem_t pr;
    memset(&pr, 0, sizeof pr);
    cr_assert_eq(ingest_prefs_target("c-1", NULL, &t, &pr), 0);
    cr_expect_str_eq(t.tenant_id, "default");
    cr_expect_str_eq(t.client_id, "c-1");
    cr_assert_eq(ingest_prefs_target("c-1", "acme", &t, &pr), 0);
    cr_expect_str_eq(t.tenant_id, "acme");
    cr_expect_eq(ingest_prefs_target("c 1", "a:b", &t, &pr), CMN_ERR_INVALID);
    cr_expect(has_field(&pr, "client_id") && has_field(&pr, "tenant_id"));
    ingest_problem_clear(&pr);
}

Test(ingest_prefs, stamps_strictly_increase)
{
    cr_expect_eq(ingest_prefs_next_stamp(0, NOW), NOW);
    cr_expect_eq(ingest_prefs_next_stamp(NOW - 5, NOW), NOW);
    cr_expect_eq(ingest_prefs_next_stamp(NOW, NOW), NOW + 1, "same millisecond");
    cr_expect_eq(ingest_prefs_next_stamp(NOW + 3, NOW), NOW + 4, "clock stepped back");
    int64_t last = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t next = ingest_prefs_next_stamp(last, NOW);
        cr_assert_gt(next, last);
        last = next;
    }
}
