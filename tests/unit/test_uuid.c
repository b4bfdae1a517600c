/* Unit tests for crm/uuid.h. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/uuid.h"

/* RFC 4122 appendix C: the DNS namespace 6ba7b810-9dad-11d1-80b4-00c04fd430c8. */
static const uint8_t NS_DNS[16] = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                   0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};

Test(uuid, v5_known_vector)
{
    char out[CMN_UUID_STR_LEN + 1];
    const char *name = "www.example.com";
    cr_assert_eq(cmn_uuid_v5(NS_DNS, name, strlen(name), out), CMN_OK);
    cr_assert_str_eq(out, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    /* Second well-known vector (Python's uuid.uuid5(NAMESPACE_DNS, "python.org")). */
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "python.org", 10, out), CMN_OK);
    cr_assert_str_eq(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

Test(uuid, v5_uses_exactly_name_len_bytes)
{
    char a[CMN_UUID_STR_LEN + 1];
    char b[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "www.example.comXYZ", 15, a), CMN_OK);
    cr_assert_str_eq(a, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    /* Embedded NUL bytes are part of the name. */
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "a\0b", 3, a), CMN_OK);
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "a", 1, b), CMN_OK);
    cr_assert_str_neq(a, b);
    /* The empty name is valid (NULL allowed when the length is 0). */
    cr_assert_eq(cmn_uuid_v5(NS_DNS, NULL, 0, a), CMN_OK);
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "", 0, b), CMN_OK);
    cr_assert_str_eq(a, b);
    cr_assert(cmn_uuid_is_valid(a));
}

Test(uuid, v5_version_and_variant)
{
    char out[CMN_UUID_STR_LEN + 1];
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_EVENT, name, strlen(name), out), CMN_OK);
        cr_assert_eq(strlen(out), CMN_UUID_STR_LEN);
        cr_assert_eq(out[14], '5');
        cr_assert(strchr("89ab", out[19]) != NULL, "variant of %s", out);
        cr_assert(cmn_uuid_is_valid(out));
    }
}

Test(uuid, namespaces_are_as_documented)
{
    /* The v5 of the empty name differs per namespace; checking the raw bytes
     * guards against an accidental edit of the fixed constants. */
    static const uint8_t comm[16] = {0x6f, 0x1c, 0x3f, 0x0e, 0x5b, 0x7a, 0x4d, 0x0e,
                                     0x9a, 0x51, 0x2c, 0x8e, 0x7d, 0x4b, 0x1a, 0x01};
    static const uint8_t event[16] = {0x6f, 0x1c, 0x3f, 0x0e, 0x5b, 0x7a, 0x4d, 0x0e,
                                      0x9a, 0x51, 0x2c, 0x8e, 0x7d, 0x4b, 0x1a, 0x02};
    cr_assert_eq(memcmp(CMN_UUID_NS_COMMUNICATION, comm, 16), 0);
    cr_assert_eq(memcmp(CMN_UUID_NS_EVENT, event, 16), 0);
}

Test(uuid, communication_id_is_v5_of_tenant_colon_request)
{
    char got[CMN_UUID_STR_LEN + 1];
    char want[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_communication_id("default", "req-42", got), CMN_OK);
    cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_COMMUNICATION, "default:req-42", 14, want), CMN_OK);
    cr_assert_str_eq(got, want);
    /* Pinned value: changing it would change every stored communication id.
     * Computed independently with Python's uuid.uuid5. */
    cr_assert_str_eq(got, "d20d3155-0bdc-5d4a-90aa-f9b51082cc41");

    /* Deterministic, and sensitive to both parts. */
    char again[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_communication_id("default", "req-42", again), CMN_OK);
    cr_assert_str_eq(got, again);
    cr_assert_eq(cmn_uuid_communication_id("acme", "req-42", again), CMN_OK);
    cr_assert_str_neq(got, again);
    cr_assert_eq(cmn_uuid_communication_id("default", "req-43", again), CMN_OK);
    cr_assert_str_neq(got, again);
}

Test(uuid, communication_id_rejects_missing_parts)
{
    char out[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_communication_id(NULL, "r", out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_communication_id("t", NULL, out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_communication_id("", "r", out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_communication_id("t", "", out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_communication_id("t", "r", NULL), CMN_ERR_INVALID);
}

Test(uuid, v5_invalid_arguments)
{
    char out[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_v5(NULL, "a", 1, out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_v5(NS_DNS, NULL, 1, out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_v5(NS_DNS, "a", 1, NULL), CMN_ERR_INVALID);
    cr_assert_eq(cmn_uuid_v4(NULL), CMN_ERR_INVALID);
}

Test(uuid, v4_random)
{
    char a[CMN_UUID_STR_LEN + 1];
    char b[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_v4(a), CMN_OK);
    cr_assert_eq(cmn_uuid_v4(b), CMN_OK);
    cr_assert_str_neq(a, b);
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(cmn_uuid_v4(a), CMN_OK);
        cr_assert(cmn_uuid_is_valid(a), "%s", a);
        cr_assert_eq(a[14], '4');
        cr_assert(strchr("89ab", a[19]) != NULL, "variant of %s", a);
    }
}

Test(uuid, is_valid)
{
    cr_assert(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1-2665a8aea6a2"));
    cr_assert(cmn_uuid_is_valid("00000000-0000-0000-0000-000000000000"));
    cr_assert_not(cmn_uuid_is_valid(NULL));
    cr_assert_not(cmn_uuid_is_valid(""));
    cr_assert_not(cmn_uuid_is_valid("2ED6657D-E927-568B-95E1-2665A8AEA6A2"), "upper case is not canonical");
    cr_assert_not(cmn_uuid_is_valid("2ed6657de927568b95e12665a8aea6a2"));
    cr_assert_not(cmn_uuid_is_valid("{2ed6657d-e927-568b-95e1-2665a8aea6a2}"));
    cr_assert_not(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1-2665a8aea6a"));
    cr_assert_not(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1-2665a8aea6a22"));
    cr_assert_not(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1-2665a8aea6a "));
    cr_assert_not(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1_2665a8aea6a2"));
    cr_assert_not(cmn_uuid_is_valid("2ed6657de-927-568b-95e1-2665a8aea6a2"));
    cr_assert_not(cmn_uuid_is_valid("2ed6657d-e927-568b-95e1-2665a8aea6g2"));
}
