/* crypto.c - keyed address hashes and AES-256-GCM field encryption. See
 * crm/crypto.h. */
#include "crm/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define KEY_LEN 32
#define PREFIX "v1:"
#define PREFIX_LEN 3

/* The label that separates the encryption key from the address-hash key:
 * both come from CRM_DATA_KEY, but a hash must never double as a key. */
static const char SEAL_LABEL[] = "crm field encryption v1";

int cmn_crypto_address_hash(const char *key, const char *address, unsigned char out[CMN_ADDRESS_HASH_LEN])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (key == NULL || address == NULL || out == NULL || strlen(key) < CMN_DATA_KEY_MIN)
        return CMN_ERR_INVALID;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)address, strlen(address), mac, &maclen) ==
            NULL ||
        maclen != CMN_ADDRESS_HASH_LEN)
        return CMN_ERR_INVALID;
    memcpy(out, mac, CMN_ADDRESS_HASH_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

void cmn_crypto_hex(const unsigned char hash[CMN_ADDRESS_HASH_LEN], char hex[2 * CMN_ADDRESS_HASH_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < CMN_ADDRESS_HASH_LEN; i++) {
        hex[2 * i] = digits[hash[i] >> 4];
        hex[2 * i + 1] = digits[hash[i] & 0x0F];
    }
    hex[2 * CMN_ADDRESS_HASH_LEN] = '\0';
}

static int derive_key(const char *key, unsigned char out[KEY_LEN])
{
    unsigned int len = 0;
    if (key == NULL || strlen(key) < CMN_DATA_KEY_MIN)
        return CMN_ERR_INVALID;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)SEAL_LABEL, sizeof SEAL_LABEL - 1, out,
             &len) == NULL ||
        len != KEY_LEN)
        return CMN_ERR_INVALID;
    return 0;
}

int cmn_crypto_seal(const char *key, const void *plain, size_t len, cmn_buf_t *out)
{
    unsigned char k[KEY_LEN];
    unsigned char *raw = NULL;
    unsigned char *b64 = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int rc = CMN_ERR_INVALID;
    int n = 0;
    int total = 0;

    if ((plain == NULL && len > 0) || out == NULL || len > (size_t)(INT32_MAX / 2))
        return CMN_ERR_INVALID;
    rc = derive_key(key, k);
    if (rc != 0)
        return rc;
    rc = CMN_ERR_NOMEM;
    raw = malloc(NONCE_LEN + len + TAG_LEN);
    b64 = malloc(4 * ((NONCE_LEN + len + TAG_LEN + 2) / 3) + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (raw == NULL || b64 == NULL || ctx == NULL)
        goto done;
    if (RAND_bytes(raw, NONCE_LEN) != 1)
        goto done;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k, raw) != 1)
        goto done;
    if (len > 0 && EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, plain, (int)len) != 1)
        goto done;
    total = n;
    if (EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + total, &n) != 1)
        goto done;
    total += n;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + total) != 1)
        goto done;
    n = EVP_EncodeBlock(b64, raw, NONCE_LEN + total + TAG_LEN);
    rc = cmn_buf_puts(out, PREFIX);
    if (rc == 0)
        rc = cmn_buf_append(out, b64, (size_t)n);
done:
    OPENSSL_cleanse(k, sizeof k);
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    free(b64);
    return rc;
}

int cmn_crypto_open(const char *key, const char *sealed, cmn_buf_t *out)
{
    unsigned char k[KEY_LEN];
    unsigned char *raw = NULL;
    unsigned char *plain = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int rc = CMN_ERR_INVALID;
    int n = 0;
    int total = 0;

    if (sealed == NULL || out == NULL || strncmp(sealed, PREFIX, PREFIX_LEN) != 0)
        return CMN_ERR_INVALID;
    const char *text = sealed + PREFIX_LEN;
    size_t tlen = strlen(text);
    if (tlen == 0 || tlen % 4 != 0 || tlen > (size_t)INT32_MAX)
        return CMN_ERR_INVALID;
    rc = derive_key(key, k);
    if (rc != 0)
        return rc;
    rc = CMN_ERR_NOMEM;
    raw = malloc(tlen / 4 * 3 + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (raw == NULL || ctx == NULL)
        goto done;
    rc = CMN_ERR_INVALID;
    int rawlen = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)tlen);
    if (rawlen < 0)
        goto done;
    /* EVP_DecodeBlock counts the '=' padding as zero bytes; take them off. */
    if (text[tlen - 1] == '=')
        rawlen--;
    if (text[tlen - 2] == '=')
        rawlen--;
    if (rawlen < NONCE_LEN + TAG_LEN)
        goto done;
    int clen = rawlen - NONCE_LEN - TAG_LEN;
    plain = malloc((size_t)clen + 1);
    if (plain == NULL) {
        rc = CMN_ERR_NOMEM;
        goto done;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k, raw) != 1)
        goto done;
    if (clen > 0 && EVP_DecryptUpdate(ctx, plain, &n, raw + NONCE_LEN, clen) != 1)
        goto done;
    total = n;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + clen) != 1)
        goto done;
    /* The tag check happens here: a wrong key or an altered byte fails. */
    if (EVP_DecryptFinal_ex(ctx, plain + total, &n) != 1)
        goto done;
    total += n;
    rc = cmn_buf_append(out, plain, (size_t)total);
done:
    OPENSSL_cleanse(k, sizeof k);
    if (plain != NULL)
        OPENSSL_cleanse(plain, (size_t)(total > 0 ? total : 0));
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    free(plain);
    return rc;
}
