/* test_status_details.c - the optional "details" object of StatusEvent v1
 * (cmn_status_event_t.details_json, crm/status.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/status.h"

static void fill(cmn_status_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    snprintf(ev->communication_id, sizeof ev->communication_id, "%s", "3f1c2f4e-8a0b-5c7d-9e1f-2a3b4c5d6e7f");
    ev->tenant_id = "acme";
    ev->channel = CMN_CHANNEL_SMS;
    ev->status = CMN_STATUS_SENT;
    ev->attempt = 1;
    ev->provider = "twilio";
    ev->occurred_at_ms = 1767225600000LL;
    cr_assert_eq(cmn_status_event_finalize(ev), 0);
}

Test(status_details, round_trip)
{
    cmn_status_event_t ev, back;
    cmn_buf_t json = CMN_BUF_INIT;
    char err[256] = "";
    fill(&ev);
    char id_before[sizeof ev.event_id];
    memcpy(id_before, ev.event_id, sizeof id_before);
    ev.details_json = "{\"encoding\":\"GSM-7\",\"segments\":2}";
    cr_assert_eq(cmn_status_event_finalize(&ev), 0);
    cr_expect_str_eq(ev.event_id, id_before, "details are not part of the event id");
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    cr_expect_not_null(strstr(json.data, "\"details\":{\"encoding\":\"GSM-7\",\"segments\":2}"), "%s", json.data);

    json_object *obj = cmn_json_parse(json.data, json.len, err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cr_assert_eq(cmn_status_event_from_json(obj, &back, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(back.details_json);
    json_object *d = cmn_json_parse(back.details_json, strlen(back.details_json), err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    cr_expect_eq(json_object_get_int(json_object_object_get(d, "segments")), 2);
    json_object_put(d);
    json_object_put(obj);
    cmn_buf_free(&json);
}

Test(status_details, absent_is_null_and_not_written)
{
    cmn_status_event_t ev, back;
    cmn_buf_t json = CMN_BUF_INIT;
    char err[256] = "";
    fill(&ev);
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    cr_expect_null(strstr(json.data, "details"));
    json_object *obj = cmn_json_parse(json.data, json.len, err, sizeof err);
    cr_assert_eq(cmn_status_event_from_json(obj, &back, err, sizeof err), 0, "%s", err);
    cr_expect_null(back.details_json);
    json_object_put(obj);
    cmn_buf_free(&json);
}

Test(status_details, only_an_object_is_accepted)
{
    cmn_status_event_t ev;
    cmn_buf_t json = CMN_BUF_INIT;
    fill(&ev);
    const char *bad[] = {"[1,2]", "3", "\"text\"", "{\"open\":", "", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ev.details_json = bad[i];
        cr_expect_eq(cmn_status_event_to_json(&ev, &json), CMN_ERR_INVALID, "details %s", bad[i]);
        cmn_buf_reset(&json);
    }
    cmn_buf_free(&json);

    char err[256] = "";
    cmn_status_event_t back;
    const char *in = "{\"v\":1,\"event_id\":\"3f1c2f4e-8a0b-5c7d-9e1f-2a3b4c5d6e7f\","
                     "\"communication_id\":\"3f1c2f4e-8a0b-5c7d-9e1f-2a3b4c5d6e7f\",\"status\":\"sent\","
                     "\"details\":[1],\"occurred_at\":\"2026-01-01T00:00:00Z\"}";
    json_object *obj = cmn_json_parse(in, strlen(in), err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cr_expect_eq(cmn_status_event_from_json(obj, &back, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_str_eq(err, "details: must be an object");
    json_object_put(obj);
}
