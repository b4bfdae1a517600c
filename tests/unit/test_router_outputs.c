/* test_router_outputs.c - the Dispatch and status envelopes the router
 * builds, checked through the real serialisers and parsers. */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/json.h"
#include "crm/request.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "router_config.h"
#include "router_outputs.h"
#include "router_strategy.h"

static const char REQUEST[] =
    "{\"v\":1,\"request_id\":\"req-42\",\"tenant_id\":\"acme\",\"client_id\":\"client-7\",\"plan_id\":\"p1\","
    "\"message_type\":\"appointment_reminder\",\"urgency\":\"high\","
    "\"recipient\":{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":\"+14155550100\","
    "\"timezone\":\"Europe/Paris\",\"locale\":\"fr-FR\"},"
    "\"template\":\"reminder_v2\",\"context\":{\"when\":\"tomorrow\"},"
    "\"attachments\":[{\"filename\":\"a.txt\",\"content_type\":\"text/plain\",\"content_base64\":\"aGk=\"}],"
    "\"expires_at\":\"2030-01-02T00:00:00Z\",\"received_at\":\"2029-12-31T12:00:00Z\"}";

static void parse_request(cmn_request_t *req, const char *json)
{
    char err[256];
    json_object *obj = cmn_json_parse(json, strlen(json), err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    json_object *errors = json_object_new_array();
    memset(req, 0, sizeof *req);
    cr_assert_eq(cmn_request_from_json(obj, "", req, errors), 0, "%s", json_object_to_json_string(errors));
    json_object_put(errors);
    json_object_put(obj);
}

Test(router_outputs, dispatch_carries_the_plan_and_the_request)
{
    char err[256];
    const char routing[] = "{\"default\":[\"email\",\"sms\",\"whatsapp\"]}";
    router_config_t *cfg = router_config_parse(routing, strlen(routing), err, sizeof err);
    cr_assert_not_null(cfg, "%s", err);
    cmn_request_t req;
    parse_request(&req, REQUEST);
    int64_t now = 0;
    cr_assert_eq(cmn_time_parse_rfc3339("2030-01-01T00:00:00Z", &now), 0);

    router_decision_t dec;
    router_input_t in = {.request = &req, .config = cfg, .enabled = 7u, .now_ms = now};
    cr_assert_eq(router_decide(&in, &dec), 0);
    cr_assert_eq(dec.channel, CMN_CHANNEL_SMS, "high urgency puts sms first");

    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    cr_assert_eq(router_build_dispatch(&req, &dec, router_created_at(&req, 5, now), &d), 0);
    cmn_buf_t buf = CMN_BUF_INIT;
    cr_assert_eq(cmn_dispatch_to_json(&d, &buf), 0);
    cmn_dispatch_clear(&d);

    /* Round trip through the workers' parser. */
    json_object *obj = cmn_json_parse(buf.data, buf.len, err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cmn_dispatch_t back;
    memset(&back, 0, sizeof back);
    cr_assert_eq(cmn_dispatch_from_json(obj, &back, err, sizeof err), 0, "%s: %s", err, buf.data);
    char want_id[CMN_UUID_STR_LEN + 1];
    cmn_uuid_communication_id("acme", "req-42", want_id);
    cr_expect_str_eq(back.communication_id, want_id);
    cr_expect_str_eq(back.request_id, "req-42");
    cr_expect_str_eq(back.tenant_id, "acme");
    cr_expect_str_eq(back.client_id, "client-7");
    cr_expect_str_eq(back.message_type, "appointment_reminder");
    cr_expect_eq(back.urgency, CMN_URGENCY_HIGH);
    cr_expect_eq(back.channel, CMN_CHANNEL_SMS);
    cr_expect_eq(back.attempt, 1);
    cr_expect_eq(back.hop, 0);
    cr_expect_str_eq(back.to, "+14155550100");
    cr_expect_str_eq(back.template_name, "reminder_v2");
    cr_expect_str_eq(back.locale, "fr-FR");
    cr_expect_str_eq(back.recipient.email, "ana@example.com");
    cr_expect_str_eq(back.recipient.timezone, "Europe/Paris");
    cr_assert_eq(back.n_fallback, 1);
    cr_expect_eq(back.fallback[0], CMN_CHANNEL_EMAIL, "no whatsapp address, so only email is left");
    cr_expect_eq(back.deadline_ms, req.expires_at_ms);
    cr_expect_eq(back.created_at_ms, req.received_at_ms);
    cr_assert_not_null(back.context);
    cr_expect_str_eq(cmn_json_get_string(back.context, "when"), "tomorrow");
    cr_assert_not_null(back.attachments);
    cr_expect_eq(json_object_array_length(back.attachments), 1);

    cmn_dispatch_clear(&back);
    json_object_put(obj);
    cmn_buf_free(&buf);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

Test(router_outputs, suppression_has_no_dispatch)
{
    cmn_request_t req;
    parse_request(&req, REQUEST);
    router_decision_t dec;
    memset(&dec, 0, sizeof dec);
    dec.suppressed = 1;
    dec.reason = ROUTER_REASON_EXPIRED;
    dec.channel = CMN_CHANNEL_NONE;
    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    cr_expect_neq(router_build_dispatch(&req, &dec, 1, &d), 0);
    cmn_dispatch_clear(&d);
    cmn_request_clear(&req);
}

Test(router_outputs, created_at_prefers_received_at_then_the_record_time)
{
    cmn_request_t req;
    memset(&req, 0, sizeof req);
    cr_expect_eq(router_created_at(&req, 0, 300), 300);
    cr_expect_eq(router_created_at(&req, 200, 300), 200);
    req.received_at_ms = 100;
    cr_expect_eq(router_created_at(&req, 200, 300), 100);
}

Test(router_outputs, status_events_are_deterministic)
{
    cmn_request_t req;
    parse_request(&req, REQUEST);
    cmn_status_event_t a, b;
    router_status_init(&a, &req, CMN_STATUS_ROUTED, 1000);
    a.channel = CMN_CHANNEL_SMS;
    a.attempt = 1;
    router_status_init(&b, &req, CMN_STATUS_ROUTED, 999999);
    b.channel = CMN_CHANNEL_SMS;
    b.attempt = 1;
    cr_assert_eq(cmn_status_event_finalize(&a), 0);
    cr_assert_eq(cmn_status_event_finalize(&b), 0);
    cr_expect_str_eq(a.event_id, b.event_id, "a re-emitted event keeps its id whatever the time");
    cr_expect_str_eq(a.communication_id, req.communication_id);
    cr_expect_str_eq(a.client_id, "client-7");

    cmn_status_event_t c;
    router_status_init(&c, &req, CMN_STATUS_ACCEPTED, 1000);
    cr_assert_eq(cmn_status_event_finalize(&c), 0);
    cr_expect_str_neq(a.event_id, c.event_id);
    cr_expect_eq(c.channel, CMN_CHANNEL_NONE);
    cmn_request_clear(&req);
}
