/* test_crypto.c - keyed address hashes and field encryption (crm/crypto.h). */
#include <criterion/criterion.h>
#include <openssl/hmac.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/err.h"

static const char KEY[] = "0123456789abcdef0123456789abcdef-test-key";
static const char OTHER_KEY[] = "fedcba9876543210fedcba9876543210-other-key";

Test(crypto, address_hash_is_hmac_sha256_of_the_address)
{
    unsigned char got[CMN_ADDRESS_HASH_LEN];
    unsigned char want[32];
    unsigned int wlen = 0;
    cr_assert_eq(cmn_crypto_address_hash(KEY, "+33612345678", got), 0);
    HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)"+33612345678", 12, want, &wlen);
    cr_assert_eq(wlen, 32);
    cr_assert_eq(memcmp(got, want, 32), 0);
    char hex[65];
    cmn_crypto_hex(got, hex);
    cr_assert_eq(strlen(hex), 64);
    unsigned char other[CMN_ADDRESS_HASH_LEN];
    cr_assert_eq(cmn_crypto_address_hash(OTHER_KEY, "+33612345678", other), 0);
    cr_assert_neq(memcmp(got, other, 32), 0, "the key must change the hash");
}

Test(crypto, short_key_and_null_are_refused)
{
    unsigned char h[CMN_ADDRESS_HASH_LEN];
    cmn_buf_t b = {0};
    cr_assert_eq(cmn_crypto_address_hash("short", "+33612345678", h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_crypto_address_hash(KEY, NULL, h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_crypto_seal("short", "x", 1, &b), CMN_ERR_INVALID);
    cr_assert_eq(b.len, 0);
    cmn_buf_free(&b);
}

Test(crypto, seal_then_open_round_trips_and_nonces_differ)
{
    const char *msgs[] = {"", "STOP", "Bonjour, à demain 🎉", "a longer body that spans more than one AES block of sixteen bytes"};
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        cmn_buf_t s1 = {0}, s2 = {0}, p = {0};
        cr_assert_eq(cmn_crypto_seal(KEY, msgs[i], strlen(msgs[i]), &s1), 0);
        cr_assert_eq(cmn_crypto_seal(KEY, msgs[i], strlen(msgs[i]), &s2), 0);
        cr_assert_eq(strncmp(s1.data, "v1:", 3), 0);
        cr_assert_str_neq(s1.data, s2.data, "a fresh nonce per seal");
        cr_assert_null(strstr(s1.data, msgs[i][0] ? msgs[i] : "\x01"), "plain text must not show");
        cr_assert_eq(cmn_crypto_open(KEY, s1.data, &p), 0);
        cr_assert_eq(p.len, strlen(msgs[i]));
        cr_assert_eq(memcmp(p.data ? p.data : "", msgs[i], p.len), 0);
        cmn_buf_free(&s1);
        cmn_buf_free(&s2);
        cmn_buf_free(&p);
    }
}

Test(crypto, wrong_key_tampering_and_garbage_fail)
{
    cmn_buf_t s = {0}, p = {0};
    cr_assert_eq(cmn_crypto_seal(KEY, "+33612345678", 12, &s), 0);
    cr_assert_eq(cmn_crypto_open(OTHER_KEY, s.data, &p), CMN_ERR_INVALID);
    cr_assert_eq(p.len, 0);
    /* Flip one base64 character in the middle of the ciphertext. */
    char *copy = strdup(s.data);
    size_t mid = 3 + (strlen(copy) - 3) / 2;
    copy[mid] = copy[mid] == 'A' ? 'B' : 'A';
    cr_assert_eq(cmn_crypto_open(KEY, copy, &p), CMN_ERR_INVALID);
    free(copy);
    cr_assert_eq(cmn_crypto_open(KEY, "v1:", &p), CMN_ERR_INVALID);
    cr_assert_eq(cmn_crypto_open(KEY, "v2:AAAA", &p), CMN_ERR_INVALID);
    cr_assert_eq(cmn_crypto_open(KEY, "v1:AAAA", &p), CMN_ERR_INVALID);
    cr_assert_eq(cmn_crypto_open(KEY, "v1:not base64!!", &p), CMN_ERR_INVALID);
    cr_assert_eq(p.len, 0);
    cmn_buf_free(&s);
    cmn_buf_free(&p);
}
