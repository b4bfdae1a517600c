/* test_msbx_webhook.c - the Meta sandbox's status webhooks
 * (tools/sandbox-meta/msbx_webhook.h): which statuses a recipient gets, the
 * payload checked member by member against Meta's constructed examples in
 * shared/oracles (same keys at every level), and the X-Hub-Signature-256
 * against HMAC-SHA256 values computed independently (Python's hmac). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/json.h"
#include "msbx_webhook.h"

#define EXAMPLES CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"

Test(msbx_webhook, receipts_by_recipient)
{
    msbx_receipt_t r[MSBX_RECEIPTS_MAX];
    size_t n = msbx_receipts_for("16505551234", r);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(r[0].status, "sent");
    cr_expect_str_eq(r[1].status, "delivered");
    cr_expect_str_eq(r[2].status, "read");
    cr_expect_eq(r[2].error, 0);

    n = msbx_receipts_for("14155131026", r);
    cr_assert_eq(n, 1, "undeliverable: one failed status");
    cr_expect_str_eq(r[0].status, "failed");
    cr_expect_eq(r[0].error, 131026);
    cr_expect_str_eq(r[0].title, "Message undeliverable");

    n = msbx_receipts_for("33612300000", r);
    cr_assert_eq(n, 1, "no final receipt: sent only");
    cr_expect_str_eq(r[0].status, "sent");
    cr_expect_eq(msbx_receipts_for(NULL, r), 3, "no number: the default");
}

/* The example named name from the oracle file (a new reference). */
static json_object *oracle(const char *name)
{
    json_object *root = json_object_from_file(EXAMPLES);
    cr_assert_not_null(root, "read %s", EXAMPLES);
    json_object *constructed = cmn_json_get_object(root, "constructed");
    cr_assert_not_null(constructed);
    json_object *ex = cmn_json_get_object(constructed, name);
    cr_assert_not_null(ex, "example %s", name);
    json_object_get(ex);
    json_object_put(root);
    return ex;
}

/* Every key of want exists in got with the same JSON type, recursively
 * (arrays: first elements), and got has no key want lacks except those in
 * extra (a comma-separated list of member names). */
static void same_shape(json_object *want, json_object *got, const char *path, const char *extra)
{
    cr_assert_eq(json_object_get_type(got), json_object_get_type(want), "%s: type", path);
    if (json_object_is_type(want, json_type_object)) {
        json_object_object_foreach(want, k, v)
        {
            json_object *g = NULL;
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            cr_assert(json_object_object_get_ex(got, k, &g), "%s: missing", sub);
            same_shape(v, g, sub, extra);
        }
        json_object_object_foreach(got, gk, gv)
        {
            (void)gv;
            char needle[64];
            snprintf(needle, sizeof needle, ",%s,", gk);
            char list[256];
            snprintf(list, sizeof list, ",%s,", extra);
            cr_assert(json_object_object_get_ex(want, gk, NULL) || strstr(list, needle) != NULL,
                      "%s.%s: not in Meta's example", path, gk);
        }
    } else if (json_object_is_type(want, json_type_array)) {
        cr_assert_eq(json_object_array_length(got), json_object_array_length(want), "%s: length", path);
        if (json_object_array_length(want) > 0)
            same_shape(json_object_array_get_idx(want, 0), json_object_array_get_idx(got, 0), path, extra);
    }
}

static json_object *payload(const char *status_to, const msbx_receipt_t *r, const char *opaque)
{
    msbx_status_in_t in = {
        .waba_id = "102290129340398",
        .display_phone_number = "15550783881",
        .phone_number_id = "106540352242922",
        .wamid = "wamid.HBgL0123456789ABCDEF0123456789ABCDEF01234567",
        .recipient_id = status_to,
        .biz_opaque = opaque,
        .timestamp_s = 1750263773,
        .receipt = r,
    };
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(msbx_status_payload(&in, &out), 0);
    char why[128];
    json_object *o = cmn_json_parse(out.data, out.len, why, sizeof why);
    cr_assert_not_null(o, "the payload is JSON: %s", why);
    cmn_buf_free(&out);
    return o;
}

static json_object *status_of(json_object *p)
{
    json_object *entry = json_object_array_get_idx(cmn_json_get_array(p, "entry"), 0);
    json_object *change = json_object_array_get_idx(cmn_json_get_array(entry, "changes"), 0);
    json_object *value = cmn_json_get_object(change, "value");
    return json_object_array_get_idx(cmn_json_get_array(value, "statuses"), 0);
}

Test(msbx_webhook, sent_and_delivered_have_the_shape_of_metas_examples)
{
    const char *names[] = {"status_sent", "status_delivered"};
    const char *statuses[] = {"sent", "delivered"};
    for (int i = 0; i < 2; i++) {
        msbx_receipt_t r = {statuses[i], 0, NULL, NULL};
        json_object *want = oracle(names[i]);
        json_object *got = payload("16505551234", &r, "7f1c9a52-3b1e-5d6a-9c1f-2a3b4c5d6e7f");
        /* Meta's sent example carries expiration_timestamp in the
         * conversation; it is optional, the sandbox leaves it out. */
        json_object *conv = cmn_json_get_object(status_of(want), "conversation");
        json_object_object_del(conv, "expiration_timestamp");
        same_shape(want, got, names[i], "biz_opaque_callback_data");
        json_object *st = status_of(got);
        cr_expect_str_eq(cmn_json_get_string(st, "status"), statuses[i]);
        cr_expect_str_eq(cmn_json_get_string(st, "timestamp"), "1750263773", "a string, as Meta sends it");
        cr_expect_str_eq(cmn_json_get_string(st, "recipient_id"), "16505551234");
        cr_expect_str_eq(cmn_json_get_string(st, "biz_opaque_callback_data"), "7f1c9a52-3b1e-5d6a-9c1f-2a3b4c5d6e7f",
                         "the communication id comes back");
        json_object_put(want);
        json_object_put(got);
    }
}

Test(msbx_webhook, read_and_failed_have_the_shape_of_metas_examples)
{
    msbx_receipt_t read = {"read", 0, NULL, NULL};
    json_object *want = oracle("status_read");
    json_object *got = payload("16505551234", &read, NULL);
    same_shape(want, got, "status_read", "");
    cr_expect(!json_object_object_get_ex(status_of(got), "biz_opaque_callback_data", NULL),
              "no opaque data when the send carried none");
    json_object_put(want);
    json_object_put(got);

    msbx_receipt_t r[MSBX_RECEIPTS_MAX];
    cr_assert_eq(msbx_receipts_for("14155131026", r), 1);
    want = oracle("status_failed_131026");
    got = payload("14155131026", &r[0], "cid-1");
    same_shape(want, got, "status_failed_131026", "biz_opaque_callback_data");
    json_object *err = json_object_array_get_idx(cmn_json_get_array(status_of(got), "errors"), 0);
    int64_t code = 0;
    cr_assert_eq(cmn_json_get_int64(err, "code", &code), 0);
    cr_expect_eq(code, 131026);
    cr_expect_str_eq(cmn_json_get_string(cmn_json_get_object(err, "error_data"), "details"), "Message Undeliverable.");
    json_object_put(want);
    json_object_put(got);
}

Test(msbx_webhook, payload_refuses_missing_members)
{
    msbx_receipt_t r = {"sent", 0, NULL, NULL};
    msbx_status_in_t in = {.waba_id = "1", .display_phone_number = "2", .phone_number_id = "3", .wamid = NULL,
                           .recipient_id = "4", .receipt = &r};
    cmn_buf_t out = CMN_BUF_INIT;
    cr_expect_neq(msbx_status_payload(&in, &out), 0, "no wamid");
    in.wamid = "wamid.X";
    in.receipt = NULL;
    cr_expect_neq(msbx_status_payload(&in, &out), 0, "no receipt");
    cr_expect_neq(msbx_status_payload(NULL, &out), 0);
    cmn_buf_free(&out);
}

Test(msbx_webhook, signature_is_hmac_sha256_of_the_raw_body)
{
    char sig[MSBX_SIGNATURE_LEN];
    const char *body = "{\"object\":\"whatsapp_business_account\"}";
    cr_assert_eq(msbx_sign("app-secret-1", body, strlen(body), sig), 0);
    cr_expect_str_eq(sig, "sha256=844394f43b11b5d0eb7e84dcb24a9b6541567fe194da4d78695f60831c167195");
    const char *fox = "The quick brown fox jumps over the lazy dog";
    cr_assert_eq(msbx_sign("key", fox, strlen(fox), sig), 0);
    cr_expect_str_eq(sig, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    cr_expect_neq(msbx_sign("", body, strlen(body), sig), 0, "no secret, no signature");
    cr_expect_neq(msbx_sign(NULL, body, strlen(body), sig), 0);
}
