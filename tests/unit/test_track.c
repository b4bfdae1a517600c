/* test_track.c - signed tracking tokens, tracking URLs, the one-click form
 * check and the HTML rewriter (crm/track.h).
 *
 * The token layout is checked against OpenSSL directly (its base64 decoder
 * and HMAC), not against the module's own decoder, so a symmetric mistake in
 * make and parse cannot pass unnoticed. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/track.h"

static const char KEY[] = "tracking-key-0123456789abcdef-0123456789";
static const char OTHER_KEY[] = "another-key-0123456789abcdef-0123456789";
static const char COMM[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
#define BASE "https://hooks.example.com"
static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static cmn_track_token_t sample(cmn_track_kind_t kind)
{
    cmn_track_token_t t;
    cmn_track_token_init(&t);
    t.kind = kind;
    strcpy(t.tenant_id, "acme");
    strcpy(t.client_id, "client-42");
    strcpy(t.communication_id, COMM);
    t.hop = 1;
    if (kind == CMN_TRACK_CLICK) {
        t.link_index = 3;
        strcpy(t.target, "https://shop.example/p?id=7&utm=mail#top");
    }
    return t;
}

static char *make(const char *key, const cmn_track_token_t *t)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_track_token_make(key, t, &b), 0);
    return cmn_buf_steal(&b);
}

static int parse(const char *text, cmn_track_kind_t kind, cmn_track_token_t *out)
{
    cmn_track_reason_t why = CMN_TRACK_R_OK;
    int rc = cmn_track_token_parse(KEY, text, kind, 1700000000, out, &why);
    return rc == 0 ? 0 : -(int)why;
}

/* Decodes base64url with OpenSSL (after mapping to the standard alphabet
 * and padding); returns the byte count. */
static int openssl_decode(const char *text, unsigned char *out)
{
    size_t n = strlen(text);
    char *std = calloc(n + 4, 1);
    for (size_t i = 0; i < n; i++)
        std[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    size_t pad = (4 - n % 4) % 4;
    memset(std + n, '=', pad);
    int len = EVP_DecodeBlock(out, (const unsigned char *)std, (int)(n + pad));
    free(std);
    cr_assert_geq(len, 0);
    return len - (int)pad;
}

static void openssl_mac(const char *key, const unsigned char *raw, size_t len, unsigned char out[32])
{
    unsigned char k[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)"crm tracking token v1", 21, k, &n);
    cr_assert_eq(n, 32);
    HMAC(EVP_sha256(), k, 32, raw, len, out, &n);
    cr_assert_eq(n, 32);
}

/* Standard base64 of raw into a base64url text without padding. */
static char *openssl_encode(const unsigned char *raw, size_t len)
{
    char *out = calloc(4 * (len / 3 + 2), 1);
    int n = EVP_EncodeBlock((unsigned char *)out, raw, (int)len);
    while (n > 0 && out[n - 1] == '=')
        out[--n] = '\0';
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

/* ----------------------------------------------------------- tokens */

Test(track, round_trip_of_every_kind)
{
    cmn_track_kind_t kinds[] = {CMN_TRACK_OPEN, CMN_TRACK_CLICK, CMN_TRACK_UNSUBSCRIBE};
    for (size_t i = 0; i < 3; i++) {
        cmn_track_token_t t = sample(kinds[i]), got;
        char *text = make(KEY, &t);
        for (const char *p = text; *p; p++)
            cr_assert_not_null(strchr(ALPHABET, *p), "%c is not URL-safe", *p);
        cr_assert_eq(parse(text, kinds[i], &got), 0, "%s", text);
        cr_expect_eq(got.kind, kinds[i]);
        cr_expect_eq(got.channel, CMN_CHANNEL_EMAIL);
        cr_expect_str_eq(got.tenant_id, "acme");
        cr_expect_str_eq(got.client_id, "client-42");
        cr_expect_str_eq(got.communication_id, COMM);
        cr_expect_eq(got.hop, 1);
        cr_expect_eq(got.expires_at_s, 0);
        cr_expect_eq(got.link_index, kinds[i] == CMN_TRACK_CLICK ? 3 : -1);
        cr_expect_str_eq(got.target, kinds[i] == CMN_TRACK_CLICK ? t.target : "");
        free(text);
    }
    /* No hop, no link index, the largest ids and target, another channel. */
    cmn_track_token_t t = sample(CMN_TRACK_CLICK), got;
    t.hop = -1;
    t.link_index = -1;
    t.channel = CMN_CHANNEL_WHATSAPP;
    memset(t.tenant_id, 'T', CMN_REQ_MAX_ID);
    t.tenant_id[CMN_REQ_MAX_ID] = '\0';
    memset(t.client_id, '~', CMN_REQ_MAX_ID);
    t.client_id[CMN_REQ_MAX_ID] = '\0';
    strcpy(t.target, "http://x.example/");
    memset(t.target + 17, 'a', CMN_TRACK_TARGET_MAX - 17);
    t.target[CMN_TRACK_TARGET_MAX] = '\0';
    char *text = make(KEY, &t);
    cr_assert_leq(strlen(text), CMN_TRACK_TOKEN_MAX);
    cr_assert_eq(parse(text, CMN_TRACK_CLICK, &got), 0);
    cr_expect_eq(got.hop, -1);
    cr_expect_eq(got.link_index, -1);
    cr_expect_eq(got.channel, CMN_CHANNEL_WHATSAPP);
    cr_expect_str_eq(got.tenant_id, t.tenant_id);
    cr_expect_str_eq(got.client_id, t.client_id);
    cr_expect_str_eq(got.target, t.target);
    free(text);
}

Test(track, layout_matches_the_documented_format)
{
    cmn_track_token_t t = sample(CMN_TRACK_CLICK);
    t.expires_at_s = 0x12345678;
    char *text = make(KEY, &t);
    unsigned char raw[4096];
    int n = openssl_decode(text, raw);
    const char *target = t.target;
    size_t tl = strlen(target);
    cr_assert_eq(n, 24 + 1 + 4 + 1 + 9 + 2 + 2 + (int)tl + 16);
    cr_expect_eq(raw[0], 1, "version");
    cr_expect_eq(raw[1], 2, "kind click");
    cr_expect_eq(raw[2], 0, "channel email");
    cr_expect_eq(raw[3], 2, "hop 1 + 1");
    static const unsigned char uuid[16] = {0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f,
                                           0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e};
    cr_expect_eq(memcmp(raw + 4, uuid, 16), 0);
    cr_expect_eq(memcmp(raw + 20, "\x12\x34\x56\x78", 4), 0, "expiry big-endian");
    cr_expect_eq(raw[24], 4);
    cr_expect_eq(memcmp(raw + 25, "acme", 4), 0);
    cr_expect_eq(raw[29], 9);
    cr_expect_eq(memcmp(raw + 30, "client-42", 9), 0);
    cr_expect_eq(raw[39], 0);
    cr_expect_eq(raw[40], 4, "link index 3 + 1");
    cr_expect_eq(raw[41] << 8 | raw[42], (int)tl);
    cr_expect_eq(memcmp(raw + 43, target, tl), 0);
    unsigned char mac[32];
    openssl_mac(KEY, raw, (size_t)n - 16, mac);
    cr_expect_eq(memcmp(raw + n - 16, mac, 16), 0, "MAC = HMAC-SHA256(HMAC-SHA256(key, label), body)[:16]");
    free(text);
}

Test(track, every_altered_character_is_refused)
{
    cmn_track_kind_t kinds[] = {CMN_TRACK_OPEN, CMN_TRACK_CLICK, CMN_TRACK_UNSUBSCRIBE};
    for (size_t k = 0; k < 3; k++) {
        cmn_track_token_t t = sample(kinds[k]), got;
        char *text = make(KEY, &t);
        size_t n = strlen(text);
        for (size_t i = 0; i < n; i++) {
            char orig = text[i];
            for (const char *c = ALPHABET; *c; c++) {
                if (*c == orig)
                    continue;
                text[i] = *c;
                cr_assert_neq(parse(text, kinds[k], &got), 0, "kind %d: char %zu changed to %c accepted", kinds[k], i, *c);
                cr_assert_str_eq(got.communication_id, "", "a refused token must leave nothing usable");
            }
            text[i] = orig;
        }
        cr_assert_eq(parse(text, kinds[k], &got), 0);
        free(text);
    }
}

Test(track, every_altered_byte_is_a_bad_signature)
{
    cmn_track_token_t t = sample(CMN_TRACK_CLICK), got;
    char *text = make(KEY, &t);
    unsigned char raw[4096];
    int n = openssl_decode(text, raw);
    for (int i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            raw[i] ^= (unsigned char)(1 << bit);
            char *bad = openssl_encode(raw, (size_t)n);
            int rc = parse(bad, CMN_TRACK_CLICK, &got);
            cr_assert_eq(rc, i == 0 ? -(int)CMN_TRACK_R_VERSION : -(int)CMN_TRACK_R_SIGNATURE, "byte %d bit %d: %d", i,
                         bit, rc);
            free(bad);
            raw[i] ^= (unsigned char)(1 << bit);
        }
    }
    free(text);
}

Test(track, wrong_key_wrong_kind_and_short_key)
{
    cmn_track_token_t t = sample(CMN_TRACK_UNSUBSCRIBE), got;
    cmn_track_reason_t why = CMN_TRACK_R_OK;
    char *text = make(OTHER_KEY, &t);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_UNSUBSCRIBE, 0, &got, &why), CMN_ERR_INVALID);
    cr_expect_eq(why, CMN_TRACK_R_SIGNATURE);
    cr_expect_str_eq(cmn_track_reason_str(why), "bad_signature");
    cr_expect_eq(cmn_track_token_parse(OTHER_KEY, text, CMN_TRACK_UNSUBSCRIBE, 0, &got, &why), 0,
                 "the previous key still verifies (rotation)");
    free(text);

    text = make(KEY, &t);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_CLICK, 0, &got, &why), CMN_ERR_INVALID);
    cr_expect_eq(why, CMN_TRACK_R_KIND);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_OPEN, 0, &got, &why), CMN_ERR_INVALID);
    cr_expect_eq(why, CMN_TRACK_R_KIND);
    cr_expect_str_eq(cmn_track_reason_str(why), "wrong_kind");
    cr_expect_eq(cmn_track_token_parse("short key", text, CMN_TRACK_UNSUBSCRIBE, 0, &got, &why), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_token_parse(NULL, text, CMN_TRACK_UNSUBSCRIBE, 0, &got, NULL), CMN_ERR_INVALID);
    free(text);

    cmn_buf_t b = CMN_BUF_INIT;
    cr_expect_eq(cmn_track_token_make("0123456789abcdef0123456789abcde", &t, &b), CMN_ERR_INVALID, "31 characters");
    cr_expect_eq(b.len, 0);
    cmn_buf_free(&b);
}

Test(track, truncated_overlong_and_malformed_texts)
{
    cmn_track_token_t t = sample(CMN_TRACK_CLICK), got;
    char *text = make(KEY, &t);
    size_t n = strlen(text);
    char buf[CMN_TRACK_TOKEN_MAX + 64];
    for (size_t len = 0; len < n; len++) {
        memcpy(buf, text, len);
        buf[len] = '\0';
        cr_assert_neq(parse(buf, CMN_TRACK_CLICK, &got), 0, "prefix of %zu characters accepted", len);
    }
    for (const char *c = ALPHABET; *c; c++) {
        snprintf(buf, sizeof buf, "%s%c", text, *c);
        cr_assert_neq(parse(buf, CMN_TRACK_CLICK, &got), 0, "appended %c accepted", *c);
        snprintf(buf, sizeof buf, "%s%c%c", text, *c, *c);
        cr_assert_neq(parse(buf, CMN_TRACK_CLICK, &got), 0, "appended %c%c accepted", *c, *c);
    }
    const char *bad[] = {"", "=", "A", "AQ", "AQ==", "****", "AQID BAUG", "AQID\nBAUG"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(parse(bad[i], CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_MALFORMED, "%s", bad[i]);
    cr_expect_eq(parse("AAAA", CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_VERSION, "version 0");
    cr_expect_eq(parse("AgAAAAAA", CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_VERSION, "version 2");
    /* Padding and the standard alphabet's + and / are not base64url. */
    snprintf(buf, sizeof buf, "%s=", text);
    cr_expect_neq(parse(buf, CMN_TRACK_CLICK, &got), 0);
    memset(buf, 'A', sizeof buf);
    buf[0] = 'A';
    buf[1] = 'Q';
    buf[CMN_TRACK_TOKEN_MAX + 1] = '\0';
    cr_expect_eq(parse(buf, CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_MALFORMED, "overlong");
    cr_expect_eq(cmn_track_token_parse(KEY, NULL, CMN_TRACK_OPEN, 0, &got, NULL), CMN_ERR_INVALID);
    free(text);
}

Test(track, signed_but_malformed_bytes_are_refused)
{
    /* Tokens with a valid MAC but a bad body: only a key holder can make
     * them, but the parser must still refuse them rather than trust them. */
    cmn_track_token_t t = sample(CMN_TRACK_OPEN), got;
    char *text = make(KEY, &t);
    unsigned char raw[4096];
    int n = openssl_decode(text, raw);
    size_t body = (size_t)n - 16;
    struct {
        size_t at;
        unsigned char value;
        const char *what;
    } cases[] = {{1, 9, "unknown kind"}, {2, 7, "unknown channel"}, {24, 0, "empty tenant"}, {24, 200, "tenant too long"},
                 {25, ' ', "space in tenant"}, {29, 0, "empty client"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char copy[4096];
        memcpy(copy, raw, body);
        copy[cases[i].at] = cases[i].value;
        openssl_mac(KEY, copy, body, copy + body);
        char *bad = openssl_encode(copy, body + 16);
        cr_expect_eq(parse(bad, CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_MALFORMED, "%s", cases[i].what);
        free(bad);
    }
    /* A trailing byte after the last field. */
    unsigned char longer[4096];
    memcpy(longer, raw, body);
    longer[body] = 'x';
    openssl_mac(KEY, longer, body + 1, longer + body + 1);
    char *bad = openssl_encode(longer, body + 17);
    cr_expect_eq(parse(bad, CMN_TRACK_OPEN, &got), -(int)CMN_TRACK_R_MALFORMED, "trailing byte");
    free(bad);
    free(text);

    /* A click whose signed target is not http(s): never redirected to. */
    cmn_track_token_t c = sample(CMN_TRACK_CLICK);
    text = make(KEY, &c);
    n = openssl_decode(text, raw);
    body = (size_t)n - 16;
    memcpy(raw + 43, "javascript:aler", 15);
    openssl_mac(KEY, raw, body, raw + body);
    bad = openssl_encode(raw, (size_t)n);
    cr_expect_eq(parse(bad, CMN_TRACK_CLICK, &got), -(int)CMN_TRACK_R_MALFORMED, "javascript: target");
    free(bad);
    free(text);
}

Test(track, expiry_is_checked_against_now)
{
    cmn_track_token_t t = sample(CMN_TRACK_OPEN), got;
    cmn_track_reason_t why;
    t.expires_at_s = 2000000000;
    char *text = make(KEY, &t);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_OPEN, 1999999999, &got, &why), 0);
    cr_expect_eq(got.expires_at_s, 2000000000);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_OPEN, 2000000000, &got, &why), CMN_ERR_INVALID);
    cr_expect_eq(why, CMN_TRACK_R_EXPIRED);
    cr_expect_str_eq(cmn_track_reason_str(why), "expired");
    free(text);
    t.expires_at_s = 0;
    text = make(KEY, &t);
    cr_expect_eq(cmn_track_token_parse(KEY, text, CMN_TRACK_OPEN, INT64_MAX, &got, &why), 0, "no expiry: never");
    free(text);
}

Test(track, make_refuses_bad_fields)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cmn_track_token_t t = sample(CMN_TRACK_CLICK);
    const char *targets[] = {"", "javascript:alert(1)", "ftp://x.example/", "https://", "//x.example/",
                             "https://x.example/a b", "https://x.example/\r\nSet-Cookie: a", "https://x.example/é",
                             "mailto:a@b.example"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        strcpy(t.target, targets[i]);
        cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID, "%s", targets[i]);
        cr_expect_eq(cmn_track_target_ok(targets[i]), 0, "%s", targets[i]);
    }
    cr_expect(cmn_track_target_ok("HTTPS://X.example/"));
    cr_expect(cmn_track_target_ok("http://x"));
    char *longest = malloc(CMN_TRACK_TARGET_MAX + 2);
    strcpy(longest, "https://x.example/");
    memset(longest + 18, 'a', CMN_TRACK_TARGET_MAX + 1 - 18);
    longest[CMN_TRACK_TARGET_MAX + 1] = '\0';
    cr_expect_eq(cmn_track_target_ok(longest), 0, "one byte too long");
    longest[CMN_TRACK_TARGET_MAX] = '\0';
    cr_expect(cmn_track_target_ok(longest));
    free(longest);

    t = sample(CMN_TRACK_CLICK);
    t.link_index = CMN_TRACK_LINK_MAX + 1;
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    t.hop = CMN_TRACK_HOP_MAX + 1;
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    strcpy(t.communication_id, "not-a-uuid");
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    strcpy(t.tenant_id, "a b");
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    t.client_id[0] = '\0';
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    t.expires_at_s = 1LL << 32;
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    t = sample(CMN_TRACK_OPEN);
    t.kind = (cmn_track_kind_t)4;
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), CMN_ERR_INVALID);
    cr_expect_eq(b.len, 0, "nothing appended on error");
    /* Open and unsubscribe tokens ignore the click fields. */
    t = sample(CMN_TRACK_UNSUBSCRIBE);
    strcpy(t.target, "not a url");
    t.link_index = 99999;
    cr_expect_eq(cmn_track_token_make(KEY, &t, &b), 0);
    cmn_track_token_t got;
    cr_expect_eq(parse(b.data, CMN_TRACK_UNSUBSCRIBE, &got), 0);
    cr_expect_eq(got.link_index, -1);
    cr_expect_str_eq(got.target, "");
    cmn_buf_free(&b);
}

/* ------------------------------------------------------------- URLs */

Test(track, urls_and_mailto)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_track_url("https://hooks.example.com", CMN_TRACK_OPEN, "AQID", &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example.com/t/o/AQID");
    cmn_buf_reset(&b);
    cr_assert_eq(cmn_track_url("https://hooks.example.com//", CMN_TRACK_CLICK, "AQID", &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example.com/t/c/AQID");
    cmn_buf_reset(&b);
    cr_assert_eq(cmn_track_url("http://127.0.0.1:8080/crm/", CMN_TRACK_UNSUBSCRIBE, "a-_Z", &b), 0);
    cr_expect_str_eq(b.data, "http://127.0.0.1:8080/crm/u/a-_Z");
    cmn_buf_reset(&b);
    const char *bases[] = {"", "hooks.example.com", "ftp://hooks.example.com", "https://", "https:///",
                           "https://h.example/?a=1", "https://h.example/#x", "https://h.example/a b",
                           "https://h.example/\"x", "https://h.example/<x>", "https://h.example/&x"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
        cr_expect_eq(cmn_track_url(bases[i], CMN_TRACK_OPEN, "AQID", &b), CMN_ERR_INVALID, "%s", bases[i]);
    cr_expect_eq(cmn_track_url(NULL, CMN_TRACK_OPEN, "AQID", &b), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_url(BASE, CMN_TRACK_OPEN, "", &b), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_url(BASE, CMN_TRACK_OPEN, "AQ==", &b), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_url(BASE, (cmn_track_kind_t)0, "AQID", &b), CMN_ERR_INVALID);
    cr_expect_eq(b.len, 0);

    cr_assert_eq(cmn_track_mailto("unsubscribe@example.com", "AQ-_", &b), 0);
    cr_expect_str_eq(b.data, "mailto:unsubscribe@example.com?subject=unsubscribe-AQ-_");
    cmn_buf_reset(&b);
    const char *addrs[] = {"", "nobody", "@example.com", "a@", "a@b@c", "a b@example.com", "a?x@example.com",
                           "a@example.com>", "a%40@example.com", "a@example.com\r\n"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        cr_expect_eq(cmn_track_mailto(addrs[i], "AQID", &b), CMN_ERR_INVALID, "%s", addrs[i]);
    cr_expect_eq(b.len, 0);

    cmn_track_token_t t = sample(CMN_TRACK_UNSUBSCRIBE), got;
    cr_assert_eq(cmn_track_link(KEY, BASE "/", &t, &b), 0);
    cr_assert_eq(strncmp(b.data, BASE "/u/", strlen(BASE) + 3), 0, "%s", b.data);
    cr_expect_eq(parse(b.data + strlen(BASE) + 3, CMN_TRACK_UNSUBSCRIBE, &got), 0);
    cmn_buf_free(&b);
}

Test(track, one_click_form_body)
{
    const char *yes[] = {"List-Unsubscribe=One-Click", "a=b&List-Unsubscribe=One-Click",
                         "List-Unsubscribe=One-Click&x=1", "List%2DUnsubscribe=One%2dClick", "&&List-Unsubscribe=One-Click&"};
    const char *no[] = {"", "List-Unsubscribe", "List-Unsubscribe=", "List-Unsubscribe=One-Click-Now",
                        "list-unsubscribe=one-click", "List-Unsubscribe=One+Click", "List-Unsubscribe=One-Click%",
                        "List-Unsubscribe=One-Click%G1", "XList-Unsubscribe=One-Click", "List-Unsubscribe = One-Click"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        cr_expect_eq(cmn_track_one_click_form(yes[i], strlen(yes[i])), 1, "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        cr_expect_eq(cmn_track_one_click_form(no[i], strlen(no[i])), 0, "%s", no[i]);
    /* The length counts, not a NUL. */
    cr_expect_eq(cmn_track_one_click_form("List-Unsubscribe=One-Clickzzz", 26), 1);
    cr_expect_eq(cmn_track_one_click_form("List-Unsubscribe=One-Click", 25), 0);
    cr_expect_eq(cmn_track_one_click_form(NULL, 0), 0);
}

Test(track, pixel_is_a_gif)
{
    cr_expect_eq(memcmp(CMN_TRACK_PIXEL_GIF, "GIF89a\x01\x00\x01\x00", 10), 0);
    cr_expect_eq(CMN_TRACK_PIXEL_GIF[CMN_TRACK_PIXEL_GIF_LEN - 1], 0x3b, "GIF trailer");
}

/* ------------------------------------------------------------- HTML */

typedef struct rewritten {
    char *html;
    int links;
} rewritten_t;

static rewritten_t rewrite(const char *html, int opens, int clicks)
{
    cmn_track_token_t ids = sample(CMN_TRACK_OPEN);
    ids.hop = 0;
    cmn_track_html_t o = {KEY, BASE, &ids, opens, clicks};
    cmn_buf_t out = CMN_BUF_INIT;
    rewritten_t r = {NULL, -1};
    cr_assert_eq(cmn_track_html_rewrite(&o, html, strlen(html), &out, &r.links), 0);
    r.html = out.data != NULL ? cmn_buf_steal(&out) : strdup("");
    return r;
}

/* The target of the n-th click URL in html (the caller frees), checking
 * its token on the way. */
static char *click_target(const char *html, int n, int *link_index)
{
    const char *p = html;
    const char *prefix = BASE "/t/c/";
    for (int i = 0; i <= n; i++) {
        p = strstr(p, prefix);
        cr_assert_not_null(p, "click URL %d missing in %s", n, html);
        p += strlen(prefix);
    }
    size_t len = strspn(p, ALPHABET);
    char *token = strndup(p, len);
    cmn_track_token_t got;
    cr_assert_eq(parse(token, CMN_TRACK_CLICK, &got), 0, "%s", token);
    free(token);
    cr_expect_str_eq(got.communication_id, COMM);
    cr_expect_eq(got.hop, 0);
    *link_index = got.link_index;
    return strdup(got.target);
}

Test(track, html_links_are_rewritten_to_signed_click_urls)
{
    const char *html = "<html><body><p><a href=\"https://shop.example/a?x=1&amp;y=2\">A</a> "
                       "<A HREF='http://Shop.example/b'>B</A> "
                       "<a class=\"btn\" data-href=\"http://nope.example/\" target=_blank href=https://shop.example/c>C</a>"
                       "<a\nhref = \" https://shop.example/d&#63;q&#x3D;1 \"\n>D</a></p></body></html>";
    rewritten_t r = rewrite(html, 0, 1);
    cr_assert_eq(r.links, 4, "%s", r.html);
    const char *want[] = {"https://shop.example/a?x=1&y=2", "http://Shop.example/b", "https://shop.example/c",
                          "https://shop.example/d?q=1"};
    for (int i = 0; i < 4; i++) {
        int idx = -2;
        char *target = click_target(r.html, i, &idx);
        cr_expect_str_eq(target, want[i]);
        cr_expect_eq(idx, i, "link index in document order");
        free(target);
    }
    /* Quoting and the rest of each tag are kept. */
    cr_expect_not_null(strstr(r.html, "<A HREF='" BASE "/t/c/"), "%s", r.html);
    cr_expect_not_null(strstr(r.html, "'>B</A>"), "%s", r.html);
    cr_expect_not_null(strstr(r.html, "<a class=\"btn\" data-href=\"http://nope.example/\" target=_blank href=" BASE
                                      "/t/c/"),
                       "%s", r.html);
    cr_expect_not_null(strstr(r.html, "\"\n>D</a></p></body></html>"), "%s", r.html);
    cr_expect_null(strstr(r.html, "shop.example"), "no original target left in an href: %s", r.html);
    cr_expect_null(strstr(r.html, "/t/o/"), "no pixel when opens are off");
    free(r.html);
}

Test(track, html_leaves_other_links_alone)
{
    const char *html = "<body><a href=\"mailto:help@example.com\">m</a><a href=\"tel:+14155550100\">t</a>"
                       "<a href=\"#top\">f</a><a href=\"/relative\">r</a><a href=\"javascript:void(0)\">j</a>"
                       "<a href=\"" BASE "/u/AQID\">unsubscribe</a><a href=\"" BASE "/t/c/AQID\">own</a>"
                       "<a href=\"https://x.example/with space\">s</a><a href=\"https://x.example/é\">u</a>"
                       "<a name=\"anchor\">n</a><a href>e</a><abbr href=\"https://x.example/\">a</abbr>"
                       "<area href=\"https://x.example/\"><!-- <a href=\"https://x.example/c\"> -->"
                       "<a href=\"https://x.example/optout\" data-crm-notrack>o</a>"
                       "<a DATA-CRM-NOTRACK=\"1\" href=\"https://x.example/optout\">o</a>"
                       "<a href=\"https://x.example/unterminated></body>";
    rewritten_t r = rewrite(html, 0, 1);
    cr_expect_eq(r.links, 0, "%s", r.html);
    cr_expect_str_eq(r.html, html);
    free(r.html);
}

Test(track, html_pixel_goes_before_the_last_body_end)
{
    rewritten_t r = rewrite("<html><BODY><p>Hi</p></BODY >\n</html>", 1, 1);
    const char *img = strstr(r.html, "<img src=\"" BASE "/t/o/");
    cr_assert_not_null(img, "%s", r.html);
    cr_expect_not_null(strstr(r.html, "\" width=\"1\" height=\"1\" alt=\"\""), "%s", r.html);
    const char *end = strstr(r.html, "</BODY >");
    cr_assert_not_null(end);
    cr_expect_lt(img, end);
    cr_expect_eq(strncmp(r.html, "<html><BODY><p>Hi</p><img src=", 30), 0, "%s", r.html);
    /* The open token parses back as an open of this communication. */
    const char *tok = img + strlen("<img src=\"" BASE "/t/o/");
    char *text = strndup(tok, strspn(tok, ALPHABET));
    cmn_track_token_t got;
    cr_expect_eq(parse(text, CMN_TRACK_OPEN, &got), 0);
    cr_expect_str_eq(got.communication_id, COMM);
    free(text);
    free(r.html);

    /* Two </body>: the last one (a quoted sample inside the text comes first). */
    r = rewrite("<body>see &lt;/body&gt; <code></body></code></body><!-- </body> -->", 1, 0);
    const char *last = strstr(r.html, "</code>");
    cr_assert_not_null(last);
    cr_expect_eq(strncmp(last + 7, "<img src=", 9), 0, "%s", r.html);
    cr_expect_not_null(strstr(r.html, "<!-- </body> -->"), "the comment is not a body end");
    free(r.html);

    /* No </body>: at the end. */
    r = rewrite("<p>fragment <a href=\"https://x.example/\">x</a></p>", 1, 1);
    cr_expect_eq(r.links, 1);
    const char *px = strstr(r.html, "<img src=\"" BASE "/t/o/");
    cr_assert_not_null(px, "%s", r.html);
    cr_expect_eq(px[strlen(px) - 1], '>');
    cr_expect_eq(strncmp(r.html, "<p>fragment <a href=\"" BASE "/t/c/", 21 + strlen(BASE) + 5), 0, "%s", r.html);
    cr_expect_not_null(strstr(r.html, "\">x</a></p><img src="), "%s", r.html);
    free(r.html);

    /* Neither opens nor clicks: unchanged. An empty body gets only the pixel. */
    r = rewrite("<p><a href=\"https://x.example/\">x</a></p></body>", 0, 0);
    cr_expect_str_eq(r.html, "<p><a href=\"https://x.example/\">x</a></p></body>");
    free(r.html);
    r = rewrite("", 1, 1);
    cr_expect_eq(strncmp(r.html, "<img src=", 9), 0);
    free(r.html);
}

Test(track, html_rewrite_refuses_bad_options)
{
    cmn_track_token_t ids = sample(CMN_TRACK_OPEN);
    cmn_buf_t out = CMN_BUF_INIT;
    cmn_track_html_t ok = {KEY, BASE, &ids, 1, 1};
    cmn_track_html_t nokey = {"short", BASE, &ids, 1, 1};
    cmn_track_html_t nobase = {KEY, "", &ids, 1, 1};
    cmn_track_html_t noids = {KEY, BASE, NULL, 1, 1};
    cr_expect_eq(cmn_track_html_rewrite(&nokey, "<p>", 3, &out, NULL), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_html_rewrite(&nobase, "<p>", 3, &out, NULL), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_html_rewrite(&noids, "<p>", 3, &out, NULL), CMN_ERR_INVALID);
    cr_expect_eq(cmn_track_html_rewrite(&ok, NULL, 3, &out, NULL), CMN_ERR_INVALID);
    /* ids that cannot make a token (bad communication id). */
    strcpy(ids.communication_id, "x");
    cr_expect_eq(cmn_track_html_rewrite(&ok, "<p>", 3, &out, NULL), CMN_ERR_INVALID);
    cmn_buf_free(&out);
}

Test(track, html_random_input_never_breaks)
{
    /* Fragments of tags and references glued at random: the rewriter must
     * neither crash nor lose bytes outside rewritten hrefs. */
    static const char *bits[] = {"<a", "<A ", " href=", "HREF = ", "\"", "'", "https://x.example/", "&amp;", "&#",
                                 ">", "</a>", "<!--", "-->", "</body>", " ", "\n", "x", "=", "mailto:a@b", "<"};
    srand(42);
    for (int round = 0; round < 2000; round++) {
        char html[512] = "";
        int parts = rand() % 24;
        for (int i = 0; i < parts; i++)
            strcat(html, bits[rand() % (int)(sizeof bits / sizeof bits[0])]);
        rewritten_t r = rewrite(html, round % 2, 1);
        cr_assert_geq(r.links, 0);
        if (r.links == 0 && round % 2 == 0)
            cr_assert_str_eq(r.html, html, "changed without a rewritten link");
        free(r.html);
    }
}
