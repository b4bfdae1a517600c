/* track.c - signed tracking tokens and the HTML rewriter. See crm/track.h. */
#include "crm/track.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "crm/err.h"

#define HEAD_LEN 24 /* version, kind, channel, hop, UUID, expiry */
#define RAW_MAX (HEAD_LEN + 2 * (1 + CMN_REQ_MAX_ID) + 2 + 2 + CMN_TRACK_TARGET_MAX + CMN_TRACK_MAC_LEN)
#define RAW_MIN (HEAD_LEN + 2 * 2 + CMN_TRACK_MAC_LEN)
#define KEY_LEN 32

/* The label that turns CRM_TRACKING_KEY into the MAC key: a deployment that
 * reuses one secret elsewhere still never signs tokens with the raw secret. */
static const char MAC_LABEL[] = "crm tracking token v1";

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* GIF89a, 1x1, one transparent colour: the smallest image every mail
 * client renders without complaint. */
const unsigned char CMN_TRACK_PIXEL_GIF[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};
const size_t CMN_TRACK_PIXEL_GIF_LEN = sizeof CMN_TRACK_PIXEL_GIF;

void cmn_track_token_init(cmn_track_token_t *t)
{
    memset(t, 0, sizeof *t);
    t->kind = CMN_TRACK_OPEN;
    t->channel = CMN_CHANNEL_EMAIL;
    t->hop = -1;
    t->link_index = -1;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* 1 when s[0..n) starts with the ASCII prefix p, compared without case. */
static int starts_with_nocase(const char *s, size_t n, const char *p)
{
    size_t k = strlen(p);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        if (lower((unsigned char)s[i]) != lower((unsigned char)p[i]))
            return 0;
    }
    return 1;
}

/* Length of the http(s) scheme prefix ("http://" or "https://") of s[0..n),
 * or 0 when it has neither. */
static size_t http_prefix(const char *s, size_t n)
{
    if (starts_with_nocase(s, n, "https://"))
        return 8;
    if (starts_with_nocase(s, n, "http://"))
        return 7;
    return 0;
}

static int target_ok_n(const char *url, size_t n)
{
    size_t p = http_prefix(url, n);
    if (p == 0 || n <= p || n > CMN_TRACK_TARGET_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

int cmn_track_target_ok(const char *url)
{
    if (url == NULL)
        return 0;
    return target_ok_n(url, strnlen(url, CMN_TRACK_TARGET_MAX + 1));
}

/* ------------------------------------------------------------- encoding */

static int derive_key(const char *key, unsigned char out[KEY_LEN])
{
    unsigned int len = 0;
    if (key == NULL || strlen(key) < CMN_TRACK_KEY_MIN)
        return CMN_ERR_INVALID;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)MAC_LABEL, sizeof MAC_LABEL - 1, out, &len) ==
            NULL ||
        len != KEY_LEN)
        return CMN_ERR_INVALID;
    return 0;
}

/* The truncated MAC of raw[0..len) under the derived key k. */
static int mac(const unsigned char k[KEY_LEN], const unsigned char *raw, size_t len,
               unsigned char out[CMN_TRACK_MAC_LEN])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), k, KEY_LEN, raw, len, full, &n) == NULL || n < CMN_TRACK_MAC_LEN)
        return CMN_ERR_INVALID;
    memcpy(out, full, CMN_TRACK_MAC_LEN);
    OPENSSL_cleanse(full, sizeof full);
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The 16 bytes of a canonical UUID string (already validated). */
static void uuid_bytes(const char *s, unsigned char out[16])
{
    size_t k = 0;
    for (size_t i = 0; s[i] != '\0' && k < 16; i++) {
        if (s[i] == '-')
            continue;
        out[k++] = (unsigned char)(hexval((unsigned char)s[i]) << 4 | hexval((unsigned char)s[i + 1]));
        i++;
    }
}

static void uuid_string(const unsigned char in[16], char out[CMN_UUID_STR_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = digits[in[i] >> 4];
        out[k++] = digits[in[i] & 0x0f];
    }
    out[k] = '\0';
}

static size_t put_string8(unsigned char *raw, size_t off, const char *s)
{
    size_t n = strlen(s);
    raw[off] = (unsigned char)n;
    memcpy(raw + off + 1, s, n);
    return off + 1 + n;
}

static int fields_ok(const cmn_track_token_t *t)
{
    if (t->kind != CMN_TRACK_OPEN && t->kind != CMN_TRACK_CLICK && t->kind != CMN_TRACK_UNSUBSCRIBE)
        return 0;
    if ((int)t->channel < 0 || (int)t->channel >= CMN_CHANNEL__COUNT)
        return 0;
    if (!cmn_valid_id(t->tenant_id, CMN_REQ_MAX_ID) || !cmn_valid_id(t->client_id, CMN_REQ_MAX_ID) ||
        !cmn_uuid_is_valid(t->communication_id))
        return 0;
    if (t->hop < -1 || t->hop > CMN_TRACK_HOP_MAX || t->expires_at_s < 0 || t->expires_at_s > (int64_t)UINT32_MAX)
        return 0;
    if (t->kind == CMN_TRACK_CLICK &&
        (t->link_index < -1 || t->link_index > CMN_TRACK_LINK_MAX || !cmn_track_target_ok(t->target)))
        return 0;
    return 1;
}

int cmn_track_token_make(const char *key, const cmn_track_token_t *t, cmn_buf_t *out)
{
    unsigned char k[KEY_LEN];
    unsigned char raw[RAW_MAX];
    char text[CMN_TRACK_TOKEN_MAX + 1];
    size_t off = 0;
    size_t n = 0;
    int rc;

    if (t == NULL || out == NULL || !fields_ok(t))
        return CMN_ERR_INVALID;
    rc = derive_key(key, k);
    if (rc != 0)
        return rc;
    raw[0] = CMN_TRACK_VERSION;
    raw[1] = (unsigned char)t->kind;
    raw[2] = (unsigned char)t->channel;
    raw[3] = (unsigned char)(t->hop + 1);
    uuid_bytes(t->communication_id, raw + 4);
    uint32_t exp = (uint32_t)t->expires_at_s;
    raw[20] = (unsigned char)(exp >> 24);
    raw[21] = (unsigned char)(exp >> 16);
    raw[22] = (unsigned char)(exp >> 8);
    raw[23] = (unsigned char)exp;
    off = put_string8(raw, HEAD_LEN, t->tenant_id);
    off = put_string8(raw, off, t->client_id);
    if (t->kind == CMN_TRACK_CLICK) {
        unsigned link = (unsigned)(t->link_index + 1);
        size_t tl = strlen(t->target);
        raw[off++] = (unsigned char)(link >> 8);
        raw[off++] = (unsigned char)link;
        raw[off++] = (unsigned char)(tl >> 8);
        raw[off++] = (unsigned char)tl;
        memcpy(raw + off, t->target, tl);
        off += tl;
    }
    rc = mac(k, raw, off, raw + off);
    OPENSSL_cleanse(k, sizeof k);
    if (rc != 0)
        return rc;
    off += CMN_TRACK_MAC_LEN;

    /* base64url without padding. */
    size_t i = 0;
    for (; i + 3 <= off; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        text[n++] = B64URL[v >> 18 & 63];
        text[n++] = B64URL[v >> 12 & 63];
        text[n++] = B64URL[v >> 6 & 63];
        text[n++] = B64URL[v & 63];
    }
    if (off - i == 1) {
        uint32_t v = (uint32_t)raw[i] << 16;
        text[n++] = B64URL[v >> 18 & 63];
        text[n++] = B64URL[v >> 12 & 63];
    } else if (off - i == 2) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
        text[n++] = B64URL[v >> 18 & 63];
        text[n++] = B64URL[v >> 12 & 63];
        text[n++] = B64URL[v >> 6 & 63];
    }
    return cmn_buf_append(out, text, n);
}

/* ------------------------------------------------------------- decoding */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict base64url: only the alphabet, no padding, a length that is not
 * 1 mod 4, and zero bits in the last character's unused part, so every
 * byte string has exactly one text. Returns the byte count, or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t outmax)
{
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k >= outmax)
                return -1;
            out[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)k;
}

/* Reads a length-prefixed id at raw[*off]; 0 or -1. */
static int get_string8(const unsigned char *raw, size_t end, size_t *off, char *dst)
{
    if (*off >= end)
        return -1;
    size_t n = raw[*off];
    if (n == 0 || n > CMN_REQ_MAX_ID || *off + 1 + n > end)
        return -1;
    memcpy(dst, raw + *off + 1, n);
    dst[n] = '\0';
    *off += 1 + n;
    return cmn_valid_id(dst, CMN_REQ_MAX_ID) ? 0 : -1;
}

/* The fields of an authenticated token raw[0..end) (MAC excluded). */
static int decode_fields(const unsigned char *raw, size_t end, cmn_track_token_t *t)
{
    size_t off = HEAD_LEN;
    int kind = raw[1];
    if (kind != CMN_TRACK_OPEN && kind != CMN_TRACK_CLICK && kind != CMN_TRACK_UNSUBSCRIBE)
        return -1;
    /* Every hop byte is valid: 0 is "absent", 1..255 are hops 0..254. */
    if (raw[2] >= CMN_CHANNEL__COUNT)
        return -1;
    t->kind = (cmn_track_kind_t)kind;
    t->channel = (cmn_channel_t)raw[2];
    t->hop = (int)raw[3] - 1;
    uuid_string(raw + 4, t->communication_id);
    t->expires_at_s = (int64_t)((uint32_t)raw[20] << 24 | (uint32_t)raw[21] << 16 | (uint32_t)raw[22] << 8 | raw[23]);
    if (get_string8(raw, end, &off, t->tenant_id) != 0 || get_string8(raw, end, &off, t->client_id) != 0)
        return -1;
    if (t->kind == CMN_TRACK_CLICK) {
        if (off + 4 > end)
            return -1;
        unsigned link = (unsigned)raw[off] << 8 | raw[off + 1];
        size_t tl = (size_t)raw[off + 2] << 8 | raw[off + 3];
        off += 4;
        if (link > CMN_TRACK_LINK_MAX + 1 || tl == 0 || tl > CMN_TRACK_TARGET_MAX || off + tl > end)
            return -1;
        t->link_index = (int)link - 1;
        memcpy(t->target, raw + off, tl);
        t->target[tl] = '\0';
        off += tl;
        /* Signed by us, but the redirect trusts it blindly: check again. */
        if (!target_ok_n(t->target, tl))
            return -1;
    }
    return off == end ? 0 : -1;
}

int cmn_track_token_parse(const char *key, const char *text, cmn_track_kind_t expect, int64_t now_s,
                          cmn_track_token_t *out, cmn_track_reason_t *reason)
{
    unsigned char k[KEY_LEN];
    unsigned char raw[RAW_MAX];
    unsigned char want[CMN_TRACK_MAC_LEN];
    cmn_track_reason_t why = CMN_TRACK_R_MALFORMED;
    long n = 0;

    if (out == NULL)
        goto fail;
    cmn_track_token_init(out);
    if (derive_key(key, k) != 0)
        goto fail_sig;
    if (text == NULL)
        goto fail;
    size_t tlen = strnlen(text, CMN_TRACK_TOKEN_MAX + 1);
    if (tlen == 0 || tlen > CMN_TRACK_TOKEN_MAX)
        goto fail;
    n = b64url_decode(text, tlen, raw, sizeof raw);
    if (n < 1)
        goto fail;
    if (raw[0] != CMN_TRACK_VERSION) {
        why = CMN_TRACK_R_VERSION;
        goto fail;
    }
    if (n < RAW_MIN)
        goto fail;
    size_t body = (size_t)n - CMN_TRACK_MAC_LEN;
    if (mac(k, raw, body, want) != 0 || CRYPTO_memcmp(want, raw + body, CMN_TRACK_MAC_LEN) != 0)
        goto fail_sig;
    if (decode_fields(raw, body, out) != 0)
        goto fail;
    if (out->kind != expect) {
        why = CMN_TRACK_R_KIND;
        goto fail;
    }
    if (out->expires_at_s != 0 && now_s >= out->expires_at_s) {
        why = CMN_TRACK_R_EXPIRED;
        goto fail;
    }
    OPENSSL_cleanse(k, sizeof k);
    if (reason != NULL)
        *reason = CMN_TRACK_R_OK;
    return 0;
fail_sig:
    why = CMN_TRACK_R_SIGNATURE;
fail:
    OPENSSL_cleanse(k, sizeof k);
    if (out != NULL)
        cmn_track_token_init(out);
    if (reason != NULL)
        *reason = why;
    return CMN_ERR_INVALID;
}

const char *cmn_track_reason_str(cmn_track_reason_t r)
{
    switch (r) {
    case CMN_TRACK_R_OK:
        return "ok";
    case CMN_TRACK_R_MALFORMED:
        return "malformed";
    case CMN_TRACK_R_VERSION:
        return "unknown_version";
    case CMN_TRACK_R_SIGNATURE:
        return "bad_signature";
    case CMN_TRACK_R_KIND:
        return "wrong_kind";
    case CMN_TRACK_R_EXPIRED:
        return "expired";
    }
    return "unknown";
}

/* ----------------------------------------------------------------- URLs */

/* Length of base without its trailing slashes, or 0 when base is not an
 * http(s) URL we can append a path to: printable ASCII, no space, no
 * characters that would need escaping in an HTML attribute or a header
 * (<, >, ", ', `, \, &), and no query or fragment. */
static size_t base_len(const char *base)
{
    if (base == NULL)
        return 0;
    size_t n = strnlen(base, 512);
    if (n >= 512)
        return 0;
    size_t p = http_prefix(base, n);
    if (p == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)base[i];
        if (c < 0x21 || c > 0x7e || strchr("<>\"'`\\&?#", c) != NULL)
            return 0;
    }
    while (n > p && base[n - 1] == '/')
        n--;
    return n > p ? n : 0;
}

static const char *kind_path(cmn_track_kind_t kind)
{
    switch (kind) {
    case CMN_TRACK_OPEN:
        return "/t/o/";
    case CMN_TRACK_CLICK:
        return "/t/c/";
    case CMN_TRACK_UNSUBSCRIBE:
        return "/u/";
    }
    return NULL;
}

static int token_text_ok(const char *token)
{
    if (token == NULL || token[0] == '\0')
        return 0;
    size_t n = strnlen(token, CMN_TRACK_TOKEN_MAX + 1);
    if (n > CMN_TRACK_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (b64url_value((unsigned char)token[i]) < 0)
            return 0;
    }
    return 1;
}

int cmn_track_url(const char *base, cmn_track_kind_t kind, const char *token, cmn_buf_t *out)
{
    size_t bl = base_len(base);
    const char *path = kind_path(kind);
    if (bl == 0 || path == NULL || !token_text_ok(token) || out == NULL)
        return CMN_ERR_INVALID;
    size_t mark = out->len;
    int rc = cmn_buf_append(out, base, bl);
    if (rc == 0)
        rc = cmn_buf_puts(out, path);
    if (rc == 0)
        rc = cmn_buf_puts(out, token);
    if (rc != 0 && out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

int cmn_track_link(const char *key, const char *base, const cmn_track_token_t *t, cmn_buf_t *out)
{
    cmn_buf_t tok = CMN_BUF_INIT;
    if (t == NULL || base_len(base) == 0)
        return CMN_ERR_INVALID;
    int rc = cmn_track_token_make(key, t, &tok);
    if (rc == 0)
        rc = cmn_track_url(base, t->kind, tok.data, out);
    cmn_buf_free(&tok);
    return rc;
}

static int mailto_address_ok(const char *a)
{
    if (a == NULL)
        return 0;
    size_t n = strnlen(a, 255);
    const char *at = memchr(a, '@', n);
    if (n == 0 || n > 254 || at == NULL || at == a || at == a + n - 1 || memchr(at + 1, '@', n - (size_t)(at - a) - 1))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c < 0x21 || c > 0x7e || strchr("?%&<>\"'`\\,;:()[]", c) != NULL)
            return 0;
    }
    return 1;
}

int cmn_track_mailto(const char *address, const char *token, cmn_buf_t *out)
{
    if (!mailto_address_ok(address) || !token_text_ok(token) || out == NULL)
        return CMN_ERR_INVALID;
    size_t mark = out->len;
    int rc = cmn_buf_printf(out, "mailto:%s?subject=unsubscribe-%s", address, token);
    if (rc != 0 && out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

/* ----------------------------------------------------------- one-click */

/* Percent-decodes s[0..n) ('+' is a space) into dst (at most max bytes);
 * returns the length, or -1 on a bad escape or overflow. */
static long form_decode(const char *s, size_t n, char *dst, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (k >= max)
            return -1;
        dst[k++] = (char)c;
    }
    return (long)k;
}

int cmn_track_one_click_form(const char *body, size_t len)
{
    static const char NAME[] = "List-Unsubscribe";
    static const char VALUE[] = "One-Click";
    char name[32], value[32];
    size_t i = 0;
    if (body == NULL)
        return 0;
    while (i <= len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        const char *eq = memchr(body + i, '=', end - i);
        if (eq != NULL) {
            size_t nl = (size_t)(eq - (body + i));
            long dn = form_decode(body + i, nl, name, sizeof name);
            long dv = form_decode(eq + 1, end - nl - i - 1, value, sizeof value);
            if (dn == (long)sizeof NAME - 1 && dv == (long)sizeof VALUE - 1 && memcmp(name, NAME, (size_t)dn) == 0 &&
                memcmp(value, VALUE, (size_t)dv) == 0)
                return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* ----------------------------------------------------------------- HTML */

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Appends the UTF-8 form of code point cp to dst (room checked by caller). */
static size_t put_utf8(char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | cp >> 6);
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | cp >> 12);
        dst[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | cp >> 18);
    dst[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    dst[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the character reference at s[0..n) (s[0] == '&') into dst;
 * returns the bytes consumed (0 when it is not a reference we know, and
 * the '&' stands for itself) and sets *w to the bytes written. */
static size_t decode_ref(const char *s, size_t n, char *dst, size_t *w)
{
    static const struct {
        const char *name;
        char c;
    } NAMED[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    for (size_t i = 0; i < sizeof NAMED / sizeof NAMED[0]; i++) {
        size_t k = strlen(NAMED[i].name);
        if (n >= 1 + k && starts_with_nocase(s + 1, n - 1, NAMED[i].name)) {
            dst[0] = NAMED[i].c;
            *w = 1;
            return 1 + k;
        }
    }
    if (n < 4 || s[1] != '#')
        return 0;
    size_t i = 2;
    unsigned cp = 0;
    int hex = (s[i] == 'x' || s[i] == 'X');
    if (hex)
        i++;
    size_t start = i;
    while (i < n && i - start < 7) {
        int v = hex ? hexval((unsigned char)s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
        if (v < 0)
            break;
        cp = cp * (hex ? 16u : 10u) + (unsigned)v;
        i++;
    }
    if (i == start || i >= n || s[i] != ';' || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *w = put_utf8(dst, cp);
    return i + 1;
}

/* The URL an href value stands for: references decoded, surrounding white
 * space removed. Returns its length in dst, or -1 when it does not fit. */
static long href_value(const char *v, size_t n, char *dst, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        char tmp[4];
        size_t w = 1;
        size_t used = 0;
        if (v[i] == '&')
            used = decode_ref(v + i, n - i, tmp, &w);
        if (used == 0) {
            tmp[0] = v[i];
            w = 1;
            used = 1;
        }
        if (k + w > max)
            return -1;
        memcpy(dst + k, tmp, w);
        k += w;
        i += used;
    }
    size_t a = 0;
    while (a < k && is_space((unsigned char)dst[a]))
        a++;
    while (k > a && is_space((unsigned char)dst[k - 1]))
        k--;
    memmove(dst, dst + a, k - a);
    return (long)(k - a);
}

typedef struct rewriter {
    const cmn_track_html_t *o;
    size_t base_n;      /* length of the base URL without trailing slashes */
    cmn_buf_t *out;
    int links;
    cmn_buf_t url;      /* scratch */
} rewriter_t;

/* 1 when the decoded target u[0..n) is a URL of the receiver itself. */
static int is_own_url(const rewriter_t *rw, const char *u, size_t n)
{
    const char *b = rw->o->base_url;
    if (n < rw->base_n + 3 || !starts_with_nocase(u, n, "http") || strncmp(u, b, rw->base_n) != 0)
        return 0;
    return strncmp(u + rw->base_n, "/u/", 3) == 0 || strncmp(u + rw->base_n, "/t/", 3) == 0;
}

/* Writes the click URL for href value v[0..n) into rw->url; 1 when the link
 * is tracked, 0 when it stays as it is, or a negative error. */
static int click_url(rewriter_t *rw, const char *v, size_t n)
{
    char target[CMN_TRACK_TARGET_MAX + 1];
    long tl = href_value(v, n, target, CMN_TRACK_TARGET_MAX);
    if (tl <= 0 || !target_ok_n(target, (size_t)tl) || is_own_url(rw, target, (size_t)tl))
        return 0;
    if (rw->links > CMN_TRACK_LINK_MAX)
        return 0;
    cmn_track_token_t t = *rw->o->ids;
    t.kind = CMN_TRACK_CLICK;
    t.link_index = rw->links;
    memcpy(t.target, target, (size_t)tl);
    t.target[tl] = '\0';
    cmn_buf_reset(&rw->url);
    int rc = cmn_track_link(rw->o->key, rw->o->base_url, &t, &rw->url);
    if (rc != 0)
        return rc;
    rw->links++;
    return 1;
}

/* Copies the <a ...> tag starting at h[i] (h[i] == '<', h[i+1] is a or A
 * and a tag name boundary follows), rewriting its first href unless the tag
 * has a data-crm-notrack attribute. Returns the index after the tag; *rc
 * gets 0 or a negative error. */
static size_t copy_anchor(rewriter_t *rw, const char *h, size_t len, size_t i, int *rc)
{
    size_t p = i + 2;
    size_t href_start = 0, href_end = 0;
    int has_href = 0, notrack = 0;
    *rc = 0;
    /* First the whole tag: the opt-out may come after the href. */
    while (p < len && h[p] != '>') {
        if (is_space((unsigned char)h[p]) || h[p] == '/') {
            p++;
            continue;
        }
        size_t name = p;
        while (p < len && !is_space((unsigned char)h[p]) && h[p] != '=' && h[p] != '>' && h[p] != '/')
            p++;
        size_t name_n = p - name;
        if (name_n == 16 && starts_with_nocase(h + name, name_n, "data-crm-notrack"))
            notrack = 1;
        size_t q = p;
        while (q < len && is_space((unsigned char)h[q]))
            q++;
        if (q >= len || h[q] != '=')
            continue; /* an attribute without a value */
        q++;
        while (q < len && is_space((unsigned char)h[q]))
            q++;
        size_t vstart = q, vend = q;
        int terminated = 1;
        if (q < len && (h[q] == '"' || h[q] == '\'')) {
            char quote = h[q];
            vstart = q + 1;
            vend = vstart;
            while (vend < len && h[vend] != quote)
                vend++;
            terminated = vend < len;
            p = terminated ? vend + 1 : len;
        } else {
            while (vend < len && !is_space((unsigned char)h[vend]) && h[vend] != '>')
                vend++;
            p = vend;
        }
        /* The first href counts, as in browsers. An unterminated quoted
         * value is left alone: the HTML is broken, and guessing where it
         * ends could swallow the rest of the document. */
        if (!has_href && name_n == 4 && starts_with_nocase(h + name, 4, "href")) {
            has_href = terminated;
            href_start = vstart;
            href_end = vend;
            if (!terminated)
                notrack = 1;
        }
    }
    size_t end = p < len ? p + 1 : len;
    int tracked = 0;
    if (has_href && !notrack) {
        tracked = click_url(rw, h + href_start, href_end - href_start);
        if (tracked < 0) {
            *rc = tracked;
            return len;
        }
    }
    if (tracked) {
        *rc = cmn_buf_append(rw->out, h + i, href_start - i);
        if (*rc == 0)
            *rc = cmn_buf_append(rw->out, rw->url.data, rw->url.len);
        if (*rc == 0)
            *rc = cmn_buf_append(rw->out, h + href_end, end - href_end);
    } else {
        *rc = cmn_buf_append(rw->out, h + i, end - i);
    }
    return end;
}

static int put_pixel(rewriter_t *rw, cmn_buf_t *dst)
{
    cmn_track_token_t t = *rw->o->ids;
    t.kind = CMN_TRACK_OPEN;
    t.link_index = -1;
    t.target[0] = '\0';
    cmn_buf_reset(&rw->url);
    int rc = cmn_track_link(rw->o->key, rw->o->base_url, &t, &rw->url);
    if (rc == 0)
        rc = cmn_buf_printf(dst,
                            "<img src=\"%s\" width=\"1\" height=\"1\" alt=\"\" "
                            "style=\"display:block;width:1px;height:1px;border:0;margin:0;padding:0\">",
                            rw->url.data);
    return rc;
}

int cmn_track_html_rewrite(const cmn_track_html_t *o, const char *html, size_t len, cmn_buf_t *out, int *links)
{
    cmn_buf_t doc = CMN_BUF_INIT;
    rewriter_t rw = {o, 0, &doc, 0, CMN_BUF_INIT};
    size_t body_at = (size_t)-1; /* offset in doc of the last </body> */
    size_t i = 0;
    int rc = 0;

    if (links != NULL)
        *links = 0;
    if (o == NULL || o->ids == NULL || (html == NULL && len > 0) || out == NULL ||
        (o->key == NULL || strlen(o->key) < CMN_TRACK_KEY_MIN))
        return CMN_ERR_INVALID;
    rw.base_n = base_len(o->base_url);
    if (rw.base_n == 0)
        return CMN_ERR_INVALID;
    while (i < len && rc == 0) {
        const char *lt = memchr(html + i, '<', len - i);
        size_t at = lt != NULL ? (size_t)(lt - html) : len;
        rc = cmn_buf_append(&doc, html + i, at - i);
        i = at;
        if (rc != 0 || i >= len)
            break;
        size_t rest = len - i;
        if (starts_with_nocase(html + i, rest, "<!--")) {
            /* Comments pass through whole: Outlook's conditional comments
             * hold markup we must not disturb. */
            const char *end = NULL;
            for (size_t k = i + 4; k + 3 <= len; k++) {
                if (memcmp(html + k, "-->", 3) == 0) {
                    end = html + k + 3;
                    break;
                }
            }
            size_t stop = end != NULL ? (size_t)(end - html) : len;
            rc = cmn_buf_append(&doc, html + i, stop - i);
            i = stop;
        } else if (o->track_clicks && rest >= 3 && (html[i + 1] == 'a' || html[i + 1] == 'A') &&
                   (is_space((unsigned char)html[i + 2]) || html[i + 2] == '>' || html[i + 2] == '/')) {
            i = copy_anchor(&rw, html, len, i, &rc);
        } else {
            if (starts_with_nocase(html + i, rest, "</body") &&
                (rest == 6 || is_space((unsigned char)html[i + 6]) || html[i + 6] == '>'))
                body_at = doc.len;
            rc = cmn_buf_putc(&doc, '<');
            i++;
        }
    }
    if (rc == 0 && o->track_opens) {
        if (body_at == (size_t)-1) {
            rc = put_pixel(&rw, &doc);
        } else {
            cmn_buf_t tail = CMN_BUF_INIT;
            rc = cmn_buf_append(&tail, doc.data + body_at, doc.len - body_at);
            if (rc == 0) {
                doc.len = body_at;
                doc.data[body_at] = '\0';
                rc = put_pixel(&rw, &doc);
            }
            if (rc == 0)
                rc = cmn_buf_append(&doc, tail.data, tail.len);
            cmn_buf_free(&tail);
        }
    }
    if (rc == 0 && doc.len > 0)
        rc = cmn_buf_append(out, doc.data, doc.len);
    if (rc == 0 && links != NULL)
        *links = rw.links;
    cmn_buf_free(&doc);
    cmn_buf_free(&rw.url);
    return rc;
}
