/* test_projector_batch.c - the projector's pure batch logic: parsing and
 * validating records, building the array parameters of the batch statement,
 * and tracking the next offset per partition (projector_batch.h). The SQL
 * itself runs against PostgreSQL in tests/integration/test_projector.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/status.h"
#include "projector_batch.h"

#define EV1 "6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a11"
#define EV2 "6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a12"
#define COMM "0b6c2d0e-1f2a-5b3c-8d4e-5f6a7b8c9d0e"

static cmn_status_event_t event(const char *event_id, cmn_status_t status)
{
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.event_id, sizeof ev.event_id, "%s", event_id);
    snprintf(ev.communication_id, sizeof ev.communication_id, "%s", COMM);
    ev.status = status;
    ev.channel = CMN_CHANNEL_NONE;
    ev.occurred_at_ms = 1764000000123LL;
    return ev;
}

static const char *col(const char *values[PROJECTOR_STATUS_NCOLS], enum projector_status_col c)
{
    return values[c];
}

Test(projector_batch, utf8_validation)
{
    cr_expect(projector_utf8_valid(""));
    cr_expect(projector_utf8_valid("plain ascii"));
    cr_expect(projector_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); /* é € 😀 */
    cr_expect(projector_utf8_valid(NULL), "NULL is an absent field, not invalid text");
    cr_expect_not(projector_utf8_valid("\xff"));
    cr_expect_not(projector_utf8_valid("\x80 lone continuation"));
    cr_expect_not(projector_utf8_valid("\xc0\xaf"), "overlong '/'");
    cr_expect_not(projector_utf8_valid("\xe0\x80\xaf"), "overlong three-byte form");
    cr_expect_not(projector_utf8_valid("\xed\xa0\x80"), "UTF-16 surrogate");
    cr_expect_not(projector_utf8_valid("\xf4\x90\x80\x80"), "above U+10FFFF");
    cr_expect_not(projector_utf8_valid("\xe2\x82"), "truncated at the end");
}

Test(projector_batch, array_elements_are_quoted_and_escaped)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(projector_pg_array_append_text(&b, NULL), 0);
    cr_assert_eq(cmn_buf_putc(&b, ','), 0);
    cr_assert_eq(projector_pg_array_append_text(&b, ""), 0);
    cr_assert_eq(cmn_buf_putc(&b, ','), 0);
    cr_assert_eq(projector_pg_array_append_text(&b, "a\"b\\c,{d} NULL"), 0);
    cr_expect_str_eq(b.data, "NULL,\"\",\"a\\\"b\\\\c,{d} NULL\"");
    cmn_buf_free(&b);
}

Test(projector_batch, staged_events_become_array_literals)
{
    projector_status_batch_t b;
    projector_status_batch_init(&b);
    char err[256];

    cmn_status_event_t a = event(EV1, CMN_STATUS_ACCEPTED);
    a.tenant_id = "";              /* the envelope's default tenant */
    a.client_id = "client-1";
    a.message_type = "event_reminder";
    a.error_message = "";          /* empty optional text is stored as NULL */
    cmn_status_event_t s = event(EV2, CMN_STATUS_SENT);
    s.tenant_id = "acme";
    s.channel = CMN_CHANNEL_SMS;
    s.attempt = 2;
    s.hop = 1;
    s.provider = "twilio";
    s.provider_message_id = "SM\"quoted\"";
    s.occurred_at_ms = -1000; /* before 1970 is still a valid time */

    cr_assert_eq(projector_status_batch_add(&b, &a, 3, 41, err, sizeof err), 0, "%s", err);
    cr_assert_eq(projector_status_batch_add(&b, &s, 7, 9000000000LL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.n, 2);

    const char *v[PROJECTOR_STATUS_NCOLS];
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(col(v, PROJECTOR_COL_EVENT_ID), "{\"" EV1 "\",\"" EV2 "\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_COMMUNICATION_ID), "{\"" COMM "\",\"" COMM "\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_TENANT_ID), "{\"default\",\"acme\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_CLIENT_ID), "{\"client-1\",NULL}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_REQUEST_ID), "{NULL,NULL}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_MESSAGE_TYPE), "{\"event_reminder\",NULL}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_CHANNEL), "{NULL,\"sms\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_STATUS), "{\"accepted\",\"sent\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_STATUS_RANK), "{10,40}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_ATTEMPT), "{0,2}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_HOP), "{0,1}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_PROVIDER), "{NULL,\"twilio\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_PROVIDER_MESSAGE_ID), "{NULL,\"SM\\\"quoted\\\"\"}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_ERROR_MESSAGE), "{NULL,NULL}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_OCCURRED_MS), "{1764000000123,-1000}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_KAFKA_PARTITION), "{3,7}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_KAFKA_OFFSET), "{41,9000000000}");

    /* Adding after params() reopens the literals; params() closes them again. */
    cmn_status_event_t d = event(EV1, CMN_STATUS_DELIVERED);
    cr_assert_eq(projector_status_batch_add(&b, &d, 3, 42, err, sizeof err), 0, "%s", err);
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(col(v, PROJECTOR_COL_STATUS_RANK), "{10,40,50}");
    cr_expect_str_eq(col(v, PROJECTOR_COL_KAFKA_OFFSET), "{41,9000000000,42}");
    /* Calling params() twice changes nothing. */
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(col(v, PROJECTOR_COL_HOP), "{0,1,0}");

    projector_status_batch_reset(&b);
    cr_assert_eq(b.n, 0);
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    for (int i = 0; i < PROJECTOR_STATUS_NCOLS; i++)
        cr_expect_str_eq(v[i], "{}", "column %d of an empty batch", i);
    cr_assert_eq(projector_status_batch_add(&b, &a, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(col(v, PROJECTOR_COL_STATUS), "{\"accepted\"}");
    projector_status_batch_free(&b);
}

Test(projector_batch, every_status_is_staged_with_its_rank)
{
    projector_status_batch_t b;
    projector_status_batch_init(&b);
    char err[256], want[512] = "{";
    for (int i = 0; i < CMN_STATUS__COUNT; i++) {
        cmn_status_event_t ev = event(EV1, (cmn_status_t)i);
        cr_assert_eq(projector_status_batch_add(&b, &ev, 0, i, err, sizeof err), 0, "%s", err);
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "",
                 cmn_status_rank((cmn_status_t)i));
    }
    strcat(want, "}");
    const char *v[PROJECTOR_STATUS_NCOLS];
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(v[PROJECTOR_COL_STATUS_RANK], want);
    projector_status_batch_free(&b);
}

Test(projector_batch, invalid_events_are_refused_and_leave_the_batch_unchanged)
{
    projector_status_batch_t b;
    projector_status_batch_init(&b);
    char err[256];
    cmn_status_event_t good = event(EV1, CMN_STATUS_SENT);
    cr_assert_eq(projector_status_batch_add(&b, &good, 0, 1, err, sizeof err), 0);

    struct {
        cmn_status_event_t ev;
        const char *field;
    } bad[8];
    size_t n = 0;
    bad[n].ev = event("not-a-uuid", CMN_STATUS_SENT);
    bad[n++].field = "event_id";
    bad[n].ev = event(EV2, CMN_STATUS_SENT);
    snprintf(bad[n].ev.communication_id, sizeof bad[n].ev.communication_id, "%s", "x");
    bad[n++].field = "communication_id";
    bad[n].ev = event(EV2, CMN_STATUS_SENT);
    bad[n].ev.error_message = "bad \xff byte";
    bad[n++].field = "error_message";
    bad[n].ev = event(EV2, CMN_STATUS_SENT);
    bad[n].ev.client_id = "\xc0\xaf";
    bad[n++].field = "client_id";
    bad[n].ev = event(EV2, CMN_STATUS_SENT);
    bad[n].ev.occurred_at_ms = 253402300800000LL; /* year 10000 */
    bad[n++].field = "occurred_at";
    bad[n].ev = event(EV2, CMN_STATUS_SENT);
    bad[n].ev.attempt = -1;
    bad[n++].field = "attempt";
    bad[n].ev = event(EV2, CMN_STATUS__COUNT);
    bad[n++].field = "status";

    for (size_t i = 0; i < n; i++) {
        err[0] = '\0';
        cr_expect_eq(projector_status_batch_add(&b, &bad[i].ev, 0, 2, err, sizeof err), CMN_ERR_INVALID,
                     "case %zu", i);
        cr_expect_not_null(strstr(err, bad[i].field), "reason '%s' should name %s", err, bad[i].field);
    }
    cr_assert_eq(b.n, 1);
    const char *v[PROJECTOR_STATUS_NCOLS];
    cr_assert_eq(projector_status_batch_params(&b, v), 0);
    cr_expect_str_eq(v[PROJECTOR_COL_EVENT_ID], "{\"" EV1 "\"}");
    cr_expect_str_eq(v[PROJECTOR_COL_KAFKA_OFFSET], "{1}");
    projector_status_batch_free(&b);
}

static int parse(const char *json, cmn_status_event_t *ev, json_object **obj, char *err, size_t errlen)
{
    return projector_status_parse(json, json != NULL ? strlen(json) : 0, obj, ev, err, errlen);
}

Test(projector_batch, parsing_records)
{
    char err[256];
    json_object *obj = NULL;
    cmn_status_event_t ev;
    const char *ok = "{\"v\":1,\"event_id\":\"" EV1 "\",\"communication_id\":\"" COMM "\","
                     "\"tenant_id\":\"acme\",\"channel\":\"email\",\"status\":\"delivered\",\"attempt\":1,"
                     "\"hop\":0,\"occurred_at\":\"2025-11-24T16:00:00.123Z\"}\n ";
    cr_assert_eq(parse(ok, &ev, &obj, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(obj);
    cr_expect_str_eq(ev.event_id, EV1);
    cr_expect_str_eq(ev.tenant_id, "acme");
    cr_expect_eq(ev.status, CMN_STATUS_DELIVERED);
    cr_expect_eq(ev.channel, CMN_CHANNEL_EMAIL);
    cr_expect_eq(ev.occurred_at_ms, 1764000000123LL);
    json_object_put(obj);

    /* The record value is not NUL-terminated in general: only len counts. */
    char buf[512];
    snprintf(buf, sizeof buf, "%sGARBAGE", ok);
    cr_assert_eq(projector_status_parse(buf, strlen(ok), &obj, &ev, err, sizeof err), 0, "%s", err);
    json_object_put(obj);

    struct {
        const char *json;
        int rc;
        const char *reason;
    } bad[] = {
        {NULL, CMN_ERR_PARSE, "empty"},
        {"", CMN_ERR_PARSE, "empty"},
        {"this is not json", CMN_ERR_PARSE, "not JSON"},
        {"{\"event_id\":", CMN_ERR_PARSE, "not JSON"},
        {"{} {}", CMN_ERR_PARSE, "trailing"},
        {"[1,2]", CMN_ERR_INVALID, "object"},
        {"{\"event_id\":\"" EV1 "\",\"communication_id\":\"" COMM "\",\"occurred_at\":\"2025-11-24T16:00:00Z\"}",
         CMN_ERR_INVALID, "status"},
        {"{\"event_id\":\"" EV1 "\",\"communication_id\":\"" COMM "\",\"status\":\"teleported\","
         "\"occurred_at\":\"2025-11-24T16:00:00Z\"}",
         CMN_ERR_INVALID, "status"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        obj = (json_object *)1;
        cr_expect_eq(parse(bad[i].json, &ev, &obj, err, sizeof err), bad[i].rc, "case %zu: %s", i, err);
        cr_expect_null(obj, "case %zu leaves no document to free", i);
        cr_expect_not_null(strstr(err, bad[i].reason), "case %zu: reason '%s' lacks '%s'", i, err, bad[i].reason);
    }
}

Test(projector_batch, offsets_track_the_next_offset_per_partition)
{
    projector_offsets_t o = {0};
    cr_assert_eq(projector_offsets_note(&o, "crm.status", 1, 10), 0);
    cr_assert_eq(projector_offsets_note(&o, "crm.status", 1, 12), 0);
    cr_assert_eq(projector_offsets_note(&o, "crm.status", 1, 11), 0); /* never moves back */
    cr_assert_eq(projector_offsets_note(&o, "crm.status", 0, 0), 0);
    cr_assert_eq(projector_offsets_note(&o, "crm.inbound", 1, 5), 0);
    cr_assert_eq(o.n, 3);
    cr_expect_eq(projector_offsets_note(&o, "crm.status", 1, -1), CMN_ERR_INVALID);
    cr_expect_eq(projector_offsets_note(&o, NULL, 1, 1), CMN_ERR_INVALID);

    cmn_buf_t t = CMN_BUF_INIT, p = CMN_BUF_INIT, n = CMN_BUF_INIT;
    cr_assert_eq(projector_offsets_params(&o, &t, &p, &n), 0);
    cr_expect_str_eq(t.data, "{\"crm.status\",\"crm.status\",\"crm.inbound\"}");
    cr_expect_str_eq(p.data, "{1,0,1}");
    cr_expect_str_eq(n.data, "{13,1,6}");
    cmn_buf_free(&t);
    cmn_buf_free(&p);
    cmn_buf_free(&n);

    projector_offsets_reset(&o);
    cr_assert_eq(projector_offsets_params(&o, &t, &p, &n), 0);
    cr_expect_str_eq(t.data, "{}");
    cr_expect_str_eq(n.data, "{}");
    cmn_buf_free(&t);
    cmn_buf_free(&p);
    cmn_buf_free(&n);
    projector_offsets_free(&o);

    const char *topics[] = {"crm.status", "crm.status"};
    const int32_t parts[] = {4, 11};
    cr_assert_eq(projector_partitions_params(topics, parts, 2, &t, &p), 0);
    cr_expect_str_eq(t.data, "{\"crm.status\",\"crm.status\"}");
    cr_expect_str_eq(p.data, "{4,11}");
    cmn_buf_free(&t);
    cmn_buf_free(&p);
}

Test(projector_batch, statements_keep_their_contract)
{
    /* The parameters the code sends are the parameters the SQL reads. */
    char want[8];
    snprintf(want, sizeof want, "$%d::", PROJECTOR_STATUS_NCOLS);
    cr_expect_not_null(strstr(PROJECTOR_STATUS_APPLY_SQL, want));
    snprintf(want, sizeof want, "$%d", PROJECTOR_STATUS_NCOLS + 1);
    cr_expect_null(strstr(PROJECTOR_STATUS_APPLY_SQL, want));
    /* Duplicates are dropped and only new rows feed the projection. */
    cr_expect_not_null(strstr(PROJECTOR_STATUS_APPLY_SQL, "ON CONFLICT (event_id) DO NOTHING RETURNING *"));
    cr_expect_not_null(strstr(PROJECTOR_STATUS_APPLY_SQL, "FROM ins"));
    /* The rank guard compares (hop, rank, time, id) as one key. */
    cr_expect_not_null(strstr(PROJECTOR_STATUS_APPLY_SQL,
                              "(EXCLUDED.hop, EXCLUDED.status_rank, EXCLUDED.status_at, EXCLUDED.last_event_id)"
                              " > (c.hop, c.status_rank, c.status_at, c.last_event_id)"));
    cr_expect_not_null(strstr(PROJECTOR_STATUS_APPLY_SQL, "sent_at = LEAST(c.sent_at, EXCLUDED.sent_at)"));
    cr_expect_not_null(strstr(PROJECTOR_OFFSETS_UPSERT_SQL, "GREATEST"));
}
