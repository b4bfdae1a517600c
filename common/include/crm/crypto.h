/* crypto.h - field-level protection of personal data with CRM_DATA_KEY.
 *
 * Two tools, both keyed by the deployment's CRM_DATA_KEY (32+ characters):
 *   address hash - HMAC-SHA256(key, address): a stable, non-reversible id
 *                  for a phone number (E.164 with its '+') or an email
 *                  address (lower-cased by the caller), so tables can join
 *                  and look up people without storing their address;
 *   seal / open  - AES-256-GCM encryption of a field (message bodies,
 *                  addresses kept for follow-up) with a fresh random nonce.
 *                  The text form is "v1:" + base64(nonce[12] || ciphertext ||
 *                  tag[16]); the encryption key is HMAC-SHA256(CRM_DATA_KEY,
 *                  "crm field encryption v1"), so the address hashes and the
 *                  ciphertexts never share a key. Tampering or a wrong key
 *                  makes open fail, never return garbage.
 * No state: every call derives what it needs; safe from any thread. */
#ifndef CRM_CRYPTO_H
#define CRM_CRYPTO_H

#include <stddef.h>

#include "crm/buf.h"

#define CMN_DATA_KEY_MIN 32
#define CMN_ADDRESS_HASH_LEN 32

/* HMAC-SHA256(key, address) into out. Returns 0, or CMN_ERR_INVALID for a
 * NULL argument or a key shorter than CMN_DATA_KEY_MIN. Byte-compatible
 * with the hashes already stored in conversations.phone_hash. */
int cmn_crypto_address_hash(const char *key, const char *address, unsigned char out[CMN_ADDRESS_HASH_LEN]);

/* Lower-case hex of a hash (65 bytes with the NUL). */
void cmn_crypto_hex(const unsigned char hash[CMN_ADDRESS_HASH_LEN], char hex[2 * CMN_ADDRESS_HASH_LEN + 1]);

/* Encrypts plain[0..len) and appends the "v1:..." text to out (caller
 * owns out). Returns 0, CMN_ERR_INVALID (bad key/argument) or CMN_ERR_NOMEM
 * (allocation or OpenSSL failure). */
int cmn_crypto_seal(const char *key, const void *plain, size_t len, cmn_buf_t *out);

/* Decrypts a "v1:..." text (NUL-terminated) and appends the plain bytes to
 * out (NUL-terminated by cmn_buf). Returns 0, or CMN_ERR_INVALID when the
 * text is malformed, was sealed with another key, or was altered. */
int cmn_crypto_open(const char *key, const char *sealed, cmn_buf_t *out);

#endif
