/* wh_sig.c - Twilio and Meta webhook signatures. */
#include "wh_sig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"

int wh_sig_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return 0;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return 0;
    return CRYPTO_memcmp(a, b, la) == 0 ? 1 : 0;
}

static int pair_cmp(const void *x, const void *y)
{
    const wh_form_pair_t *a = *(const wh_form_pair_t *const *)x;
    const wh_form_pair_t *b = *(const wh_form_pair_t *const *)y;
    int c = strcmp(a->name, b->name);
    return c != 0 ? c : strcmp(a->value, b->value);
}

int wh_sig_twilio_compute(const char *auth_token, const char *url, const wh_form_t *params,
                          char out[WH_SIG_TWILIO_LEN + 1])
{
    cmn_buf_t data = CMN_BUF_INIT;
    const wh_form_pair_t **sorted = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    int rc = 0;

    if (auth_token == NULL || auth_token[0] == '\0' || url == NULL || url[0] == '\0' || out == NULL)
        return CMN_ERR_INVALID;
    rc = cmn_buf_puts(&data, url);
    if (rc != 0)
        goto out;
    size_t n = params != NULL ? params->n : 0;
    if (n > 0) {
        sorted = calloc(n, sizeof *sorted);
        if (sorted == NULL) {
            rc = CMN_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            sorted[i] = &params->pairs[i];
        qsort(sorted, n, sizeof *sorted, pair_cmp);
        for (size_t i = 0; i < n && rc == 0; i++) {
            /* The SDKs iterate sorted(set(values)): an exact duplicate pair
             * counts once. */
            if (i > 0 && pair_cmp(&sorted[i - 1], &sorted[i]) == 0)
                continue;
            rc = cmn_buf_puts(&data, sorted[i]->name);
            if (rc == 0)
                rc = cmn_buf_puts(&data, sorted[i]->value);
        }
        if (rc != 0)
            goto out;
    }
    if (HMAC(EVP_sha1(), auth_token, (int)strlen(auth_token), (const unsigned char *)data.data, data.len, mac,
             &maclen) == NULL ||
        maclen != 20) {
        rc = CMN_ERR_NOMEM;
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
out:
    free(sorted);
    cmn_buf_free(&data);
    return rc;
}

int wh_sig_url_variants(const char *url, cmn_buf_t *without_port, cmn_buf_t *with_port)
{
    const char *default_port = NULL;
    size_t scheme_len = 0;
    if (url == NULL || without_port == NULL || with_port == NULL)
        return CMN_ERR_INVALID;
    if (strncasecmp(url, "https://", 8) == 0) {
        default_port = "443";
        scheme_len = 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        default_port = "80";
        scheme_len = 7;
    } else {
        return CMN_ERR_INVALID;
    }
    const char *auth = url + scheme_len;
    size_t auth_len = strcspn(auth, "/?#");
    if (auth_len == 0)
        return CMN_ERR_INVALID;
    const char *rest = auth + auth_len;
    /* The port is what follows the last ':' of the authority, unless that
     * ':' sits inside an IPv6 literal ("[::1]"). */
    size_t host_len = auth_len;
    for (size_t i = auth_len; i > 0; i--) {
        char c = auth[i - 1];
        if (c == ']' || c == '@')
            break;
        if (c == ':') {
            host_len = i - 1;
            break;
        }
    }
    cmn_buf_reset(without_port);
    cmn_buf_reset(with_port);
    int rc = cmn_buf_append(without_port, url, scheme_len + host_len);
    if (rc == 0)
        rc = cmn_buf_puts(without_port, rest);
    if (rc == 0 && host_len == auth_len)
        rc = cmn_buf_printf(with_port, "%.*s:%s%s", (int)(scheme_len + auth_len), url, default_port, rest);
    else if (rc == 0)
        rc = cmn_buf_puts(with_port, url);
    return rc;
}

/* The value of bodySHA256 in url's query (decoded, malloc'd) or NULL. */
static char *body_sha_param(const char *url)
{
    const char *q = strchr(url, '?');
    if (q == NULL)
        return NULL;
    size_t qlen = strcspn(q + 1, "#");
    wh_form_t f = {0};
    if (wh_form_parse(q + 1, qlen, &f) != 0)
        return NULL;
    const char *v = wh_form_get(&f, "bodySHA256");
    char *copy = v != NULL ? strdup(v) : NULL;
    wh_form_clear(&f);
    return copy;
}

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int wh_sig_twilio_valid(const char *auth_token, const char *url, const wh_form_t *params, const char *body,
                        size_t body_len, const char *signature)
{
    cmn_buf_t bare = CMN_BUF_INIT, ported = CMN_BUF_INIT;
    char sig_a[WH_SIG_TWILIO_LEN + 1], sig_b[WH_SIG_TWILIO_LEN + 1];
    char *body_sha = NULL;
    int valid = 0;

    if (signature == NULL || strlen(signature) != WH_SIG_TWILIO_LEN || url == NULL)
        return 0;
    body_sha = body_sha_param(url);
    if (body_sha != NULL) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        if (EVP_Digest(body != NULL ? body : "", body != NULL ? body_len : 0, digest, &dlen, EVP_sha256(), NULL) !=
            1)
            goto out;
        hex_lower(digest, dlen, hex);
        if (!wh_sig_equal(hex, body_sha))
            goto out;
        /* The form parameters are not part of a JSON webhook's signature. */
        params = NULL;
    }
    if (wh_sig_url_variants(url, &bare, &ported) != 0)
        goto out;
    if (wh_sig_twilio_compute(auth_token, bare.data, params, sig_a) != 0 ||
        wh_sig_twilio_compute(auth_token, ported.data, params, sig_b) != 0)
        goto out;
    /* Both are computed and compared whatever the first says, so the time
     * taken does not tell which variant matched. */
    int a = wh_sig_equal(sig_a, signature);
    int b = wh_sig_equal(sig_b, signature);
    valid = a | b;
out:
    free(body_sha);
    cmn_buf_free(&bare);
    cmn_buf_free(&ported);
    return valid;
}

int wh_sig_meta_valid(const char *app_secret, const char *body, size_t len, const char *header)
{
    unsigned char mac[EVP_MAX_MD_SIZE], given[32];
    unsigned int maclen = 0;
    static const char PREFIX[] = "sha256=";

    if (app_secret == NULL || app_secret[0] == '\0' || header == NULL ||
        strncmp(header, PREFIX, sizeof PREFIX - 1) != 0)
        return 0;
    const char *hex = header + sizeof PREFIX - 1;
    if (strlen(hex) != 64)
        return 0;
    for (size_t i = 0; i < 32; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            int d = (c >= '0' && c <= '9') ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
            if (d < 0)
                return 0;
            v = v * 16 + d;
        }
        given[i] = (unsigned char)v;
    }
    if (HMAC(EVP_sha256(), app_secret, (int)strlen(app_secret), (const unsigned char *)(body != NULL ? body : ""),
             body != NULL ? len : 0, mac, &maclen) == NULL ||
        maclen != 32)
        return 0;
    return CRYPTO_memcmp(mac, given, 32) == 0 ? 1 : 0;
}
