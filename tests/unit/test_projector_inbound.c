/* test_projector_inbound.c - staging of crm.inbound records
 * (services/projector/projector_inbound.h): the sender only as keyed hash
 * and sealed text, body and profile name sealed, keyword and media kept,
 * and bad records refused with the field named. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/err.h"
#include "projector_inbound.h"

#define KEY "0123456789abcdef0123456789abcdef-test-key"
#define MSG(extra)                                                                                              \
    "{\"v\":1,\"event_id\":\"5b0e7c1a-3f9e-5d2a-9c4b-1e2f3a4b5c6d\",\"tenant_id\":\"acme\",\"channel\":\"whatsapp\","  \
    "\"provider\":\"meta\",\"provider_message_id\":\"wamid.X1\",\"from\":\"+33612345678\",\"to\":\"+15005550006\","  \
    "\"received_at\":\"2026-11-22T10:00:00.000Z\"" extra "}"

static int add(projector_inbound_batch_t *b, const char *value, char *why, size_t whylen)
{
    return projector_inbound_add(b, KEY, value, value != NULL ? strlen(value) : 0, 2, 40, why, whylen);
}

/* The i-th element (0-based) of a one-element-per-row array literal built
 * by the batch: here always element 0, unquoted. */
static void only_element(const char *literal, char *out, size_t outlen)
{
    size_t len = strlen(literal);
    cr_assert(len >= 2 && literal[0] == '{' && literal[len - 1] == '}', "%s", literal);
    const char *s = literal + 1;
    size_t n = len - 2;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    size_t w = 0;
    for (size_t i = 0; i < n && w + 1 < outlen; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        out[w++] = s[i];
    }
    out[w] = '\0';
}

Test(projector_inbound, personal_data_is_hashed_and_sealed)
{
    projector_inbound_batch_t b = {0};
    char why[256] = "", el[2048];
    cr_assert_eq(add(&b, MSG(",\"body\":\"STOP\",\"keyword\":\"stop\",\"profile_name\":\"Ana\","
                             "\"media\":[{\"url\":\"https://m.example/1\",\"content_type\":\"image/jpeg\"}]"),
                     why, sizeof why),
                 0, "%s", why);
    const char *v[PROJECTOR_INBOUND_NCOLS];
    cr_assert_eq(projector_inbound_params(&b, v), 0);

    unsigned char hash[CMN_ADDRESS_HASH_LEN];
    char hex[2 * CMN_ADDRESS_HASH_LEN + 1];
    cr_assert_eq(cmn_crypto_address_hash(KEY, "+33612345678", hash), 0);
    cmn_crypto_hex(hash, hex);
    only_element(v[PROJECTOR_ICOL_FROM_HASH], el, sizeof el);
    cr_expect_str_eq(el, hex);

    const int sealed[] = {PROJECTOR_ICOL_FROM_SEALED, PROJECTOR_ICOL_BODY_SEALED, PROJECTOR_ICOL_PROFILE_SEALED};
    const char *plain[] = {"+33612345678", "STOP", "Ana"};
    for (size_t i = 0; i < 3; i++) {
        only_element(v[sealed[i]], el, sizeof el);
        cr_expect_null(strstr(el, plain[i]), "%s in clear", plain[i]);
        cmn_buf_t opened = CMN_BUF_INIT;
        cr_assert_eq(cmn_crypto_open(KEY, el, &opened), 0, "%s", el);
        cr_expect_str_eq(opened.data, plain[i]);
        cmn_buf_free(&opened);
    }
    /* Nothing personal anywhere in clear. */
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++) {
        cr_expect_null(strstr(v[i], "33612345678"), "column %zu: %s", i, v[i]);
        cr_expect_null(strstr(v[i], "Ana"), "column %zu: %s", i, v[i]);
    }
    only_element(v[PROJECTOR_ICOL_KEYWORD], el, sizeof el);
    cr_expect_str_eq(el, "stop");
    only_element(v[PROJECTOR_ICOL_MEDIA], el, sizeof el);
    cr_expect_str_eq(el, "[{\"url\":\"https://m.example/1\",\"content_type\":\"image/jpeg\"}]");
    cr_expect_str_eq(v[PROJECTOR_ICOL_RECEIVED_MS], "{1795341600000}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_TENANT_ID], "{\"acme\"}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_CHANNEL], "{\"whatsapp\"}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_TO], "{\"+15005550006\"}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_KAFKA_PARTITION], "{2}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_KAFKA_OFFSET], "{40}");
    projector_inbound_free(&b);
}

Test(projector_inbound, absent_optional_fields_are_null_and_batches_grow_after_params)
{
    projector_inbound_batch_t b = {0};
    char why[256] = "";
    cr_assert_eq(add(&b, MSG(""), why, sizeof why), 0, "%s", why);
    const char *v[PROJECTOR_INBOUND_NCOLS];
    cr_assert_eq(projector_inbound_params(&b, v), 0);
    cr_expect_str_eq(v[PROJECTOR_ICOL_BODY_SEALED], "{NULL}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_PROFILE_SEALED], "{NULL}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_KEYWORD], "{NULL}");
    cr_expect_str_eq(v[PROJECTOR_ICOL_MEDIA], "{\"[]\"}");
    cr_assert_eq(add(&b, MSG(""), why, sizeof why), 0, "%s", why);
    cr_assert_eq(projector_inbound_params(&b, v), 0);
    cr_expect_str_eq(v[PROJECTOR_ICOL_KAFKA_OFFSET], "{40,40}");
    cr_expect_eq(b.n, 2);
    projector_inbound_reset(&b);
    cr_assert_eq(projector_inbound_params(&b, v), 0);
    cr_expect_str_eq(v[PROJECTOR_ICOL_EVENT_ID], "{}");
    projector_inbound_free(&b);
}

Test(projector_inbound, bad_records_name_the_field)
{
    projector_inbound_batch_t b = {0};
    char why[256];
    cr_expect_eq(add(&b, "{nope", why, sizeof why), CMN_ERR_PARSE);
    cr_expect_not_null(strstr(why, "not JSON"), "%s", why);
    cr_expect_eq(add(&b, NULL, why, sizeof why), CMN_ERR_PARSE);
    cr_expect_eq(add(&b,
                     "{\"event_id\":\"5b0e7c1a-3f9e-5d2a-9c4b-1e2f3a4b5c6d\",\"channel\":\"sms\","
                     "\"provider\":\"twilio\",\"provider_message_id\":\"SM1\",\"from\":\"0612345678\","
                     "\"received_at\":\"2026-11-22T10:00:00Z\"}",
                     why, sizeof why),
                 CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "from"), "%s", why);
    cr_expect_eq(add(&b,
                     "{\"event_id\":\"5b0e7c1a-3f9e-5d2a-9c4b-1e2f3a4b5c6d\",\"channel\":\"email\","
                     "\"provider\":\"x\",\"provider_message_id\":\"SM1\",\"from\":\"+33612345678\","
                     "\"received_at\":\"2026-11-22T10:00:00Z\"}",
                     why, sizeof why),
                 CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "channel"), "%s", why);
    cr_expect_eq(b.n, 0);
    projector_inbound_free(&b);
}
