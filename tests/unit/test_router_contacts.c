/* test_router_contacts.c - which (channel, address hash) pairs the router
 * records for a request, and the canonical address forms they hash: what the
 * webhook receiver must compute from a reply to find the client. (The upsert
 * runs against a real PostgreSQL in tests/integration/test_router_prefs.c.) */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crm/crypto.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "router_contacts.h"

#define KEY "0123456789abcdef0123456789abcdef"

static void hex_of(const char *canonical, char hex[2 * CMN_ADDRESS_HASH_LEN + 1])
{
    unsigned char h[CMN_ADDRESS_HASH_LEN];
    cr_assert_eq(cmn_crypto_address_hash(KEY, canonical, h), 0);
    cmn_crypto_hex(h, hex);
}

static void request(const char *json, cmn_request_t *r)
{
    char err[128];
    json_object *obj = cmn_json_parse(json, strlen(json), err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    json_object *errors = json_object_new_array();
    memset(r, 0, sizeof *r);
    cr_assert_eq(cmn_request_from_json(obj, "", r, errors), 0, "%s", json_object_to_json_string(errors));
    json_object_put(errors);
    json_object_put(obj);
}

Test(router_contacts, canonical_forms)
{
    char out[320];
    cr_expect_eq(router_contact_canonical(CMN_CHANNEL_EMAIL, "Ana.Lima@Example.COM", out, sizeof out), 0);
    cr_expect_str_eq(out, "ana.lima@example.com");
    cr_expect_eq(router_contact_canonical(CMN_CHANNEL_SMS, "+33 6 12 34 56 78", out, sizeof out), 0);
    cr_expect_str_eq(out, "+33612345678", "E.164 with its +");
    cr_expect_eq(router_contact_canonical(CMN_CHANNEL_WHATSAPP, "+33612345678", out, sizeof out), 0);
    cr_expect_str_eq(out, "+33612345678");
    cr_expect_eq(router_contact_canonical(CMN_CHANNEL_SMS, NULL, out, sizeof out), CMN_ERR_INVALID);
    cr_expect_eq(router_contact_canonical(CMN_CHANNEL_EMAIL, "a@b.c", out, 3), CMN_ERR_OVERFLOW);
}

Test(router_contacts, one_pair_per_address)
{
    cmn_request_t r;
    router_contact_t rows[CMN_CHANNEL__COUNT];
    size_t n = 0;
    char want[2 * CMN_ADDRESS_HASH_LEN + 1];

    request("{\"request_id\":\"r\",\"tenant_id\":\"acme\",\"client_id\":\"c-1\",\"message_type\":\"x\","
            "\"recipient\":{\"email\":\"Ana@Example.com\",\"phone\":\"+33612345678\",\"whatsapp\":\"+33687654321\"}}",
            &r);
    cr_assert_eq(router_contacts_of(&r, KEY, rows, &n), 0);
    cr_assert_eq(n, 3);
    cr_expect_eq(rows[0].channel, CMN_CHANNEL_SMS);
    hex_of("+33612345678", want);
    cr_expect_str_eq(rows[0].hash_hex, want);
    cr_expect_eq(rows[1].channel, CMN_CHANNEL_WHATSAPP);
    hex_of("+33687654321", want);
    cr_expect_str_eq(rows[1].hash_hex, want);
    cr_expect_eq(rows[2].channel, CMN_CHANNEL_EMAIL);
    hex_of("ana@example.com", want);
    cr_expect_str_eq(rows[2].hash_hex, want);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(rows[i].tenant_id, "acme");
        cr_expect_str_eq(rows[i].client_id, "c-1");
    }
    cr_expect_eq(router_contacts_of(&r, "short", rows, &n), CMN_ERR_INVALID, "a short key is refused");
    cmn_request_clear(&r);

    /* Missing addresses are skipped; without a client id (validation
     * requires one, the module does not rely on it) there is nothing to
     * point an address at. */
    n = 0;
    request("{\"request_id\":\"r\",\"client_id\":\"c\",\"message_type\":\"x\",\"recipient\":{\"email\":\"a@example.com\"}}",
            &r);
    cr_assert_eq(router_contacts_of(&r, KEY, rows, &n), 0);
    cr_expect_eq(n, 1);
    cr_expect_eq(rows[0].channel, CMN_CHANNEL_EMAIL);
    free(r.client_id);
    r.client_id = NULL;
    n = 0;
    cr_assert_eq(router_contacts_of(&r, KEY, rows, &n), 0);
    cr_expect_eq(n, 0);
    cmn_request_clear(&r);
}
