/* uuid.c - RFC 9562 UUIDs: name-based v5 (SHA-1) and random v4. */
#include "crm/uuid.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "crm/err.h"

/* 6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01. Fixed forever: every stored
 * communication_id was derived from it. */
const uint8_t CMN_UUID_NS_COMMUNICATION[16] = {0x6f, 0x1c, 0x3f, 0x0e, 0x5b, 0x7a, 0x4d, 0x0e,
                                               0x9a, 0x51, 0x2c, 0x8e, 0x7d, 0x4b, 0x1a, 0x01};
/* 6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a02. */
const uint8_t CMN_UUID_NS_EVENT[16] = {0x6f, 0x1c, 0x3f, 0x0e, 0x5b, 0x7a, 0x4d, 0x0e,
                                       0x9a, 0x51, 0x2c, 0x8e, 0x7d, 0x4b, 0x1a, 0x02};

/* Sets the version nibble and the RFC 4122 variant bits, then formats. */
static void finish(uint8_t u[16], unsigned version, char out[CMN_UUID_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    u[6] = (uint8_t)((u[6] & 0x0f) | (version << 4));
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 0x0f];
    }
    out[o] = '\0';
}

/* UUIDv5 over the concatenation of `count` name parts, hashed piecewise so
 * callers that join strings need not allocate. */
static int uuid_v5_parts(const uint8_t ns[16], const void *const *parts, const size_t *lens,
                         size_t count, char out[CMN_UUID_STR_LEN + 1])
{
    int rc = CMN_ERR_NOMEM;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        goto cleanup;
    }
    /* SHA-1 is what RFC 9562 specifies for v5; it is used here as a stable
     * mapping, not for security. */
    rc = CMN_ERR_INVALID;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(ctx, ns, 16) != 1) {
        goto cleanup;
    }
    for (size_t i = 0; i < count; i++) {
        if (lens[i] > 0 && EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1) {
            goto cleanup;
        }
    }
    if (EVP_DigestFinal_ex(ctx, digest, &dlen) != 1 || dlen < 16) {
        goto cleanup;
    }
    finish(digest, 5, out);
    rc = CMN_OK;

cleanup:
    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(digest, sizeof digest);
    return rc;
}

int cmn_uuid_v5(const uint8_t ns[16], const void *name, size_t name_len, char out[CMN_UUID_STR_LEN + 1])
{
    if (ns == NULL || out == NULL || (name == NULL && name_len > 0)) {
        return CMN_ERR_INVALID;
    }
    const void *parts[1] = {name};
    size_t lens[1] = {name_len};
    return uuid_v5_parts(ns, parts, lens, 1, out);
}

int cmn_uuid_v4(char out[CMN_UUID_STR_LEN + 1])
{
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    uint8_t u[16];
    if (RAND_bytes(u, sizeof u) != 1) {
        out[0] = '\0';
        return CMN_ERR_UNAVAILABLE;
    }
    finish(u, 4, out);
    return CMN_OK;
}

int cmn_uuid_communication_id(const char *tenant_id, const char *request_id,
                              char out[CMN_UUID_STR_LEN + 1])
{
    /* Both parts are required: an empty one means the caller skipped the
     * "default" tenant or the idempotency key, and an id derived from that
     * would silently merge unrelated requests. Note the name is the plain
     * join tenant ":" request, so tenant ids must not contain ':' for ids to
     * be unambiguous; the format is fixed because ids are persisted. */
    if (tenant_id == NULL || request_id == NULL || out == NULL || tenant_id[0] == '\0' ||
        request_id[0] == '\0') {
        return CMN_ERR_INVALID;
    }
    const void *parts[3] = {tenant_id, ":", request_id};
    size_t lens[3] = {strlen(tenant_id), 1, strlen(request_id)};
    return uuid_v5_parts(CMN_UUID_NS_COMMUNICATION, parts, lens, 3, out);
}

int cmn_uuid_is_valid(const char *s)
{
    /* Canonical means RFC 9562's output form: 8-4-4-4-12 lower-case hex.
     * Upper case is refused because ids are compared as text in Kafka keys. */
    if (s == NULL) {
        return 0;
    }
    for (size_t i = 0; i < CMN_UUID_STR_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return 0;
            }
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return s[CMN_UUID_STR_LEN] == '\0';
}
