/* wa_conversations.h - reading the 24-hour window from PostgreSQL.
 *
 * The conversations table (migrations/0004_conversations.sql) is keyed by
 * (tenant_id, channel, phone_hash) where phone_hash = HMAC-SHA256(
 * CRM_DATA_KEY, E.164 number with its '+'): the worker never sends a phone
 * number to the database, only this hash. `crmctl conversations set` (and
 * later the inbound projection) compute the same hash; a different key
 * finds no rows, which reads as "no window" - the safe side, since a
 * template is always allowed.
 *
 * wa_conversations_lookup answers for many recipients in one round trip
 * (the keys travel as two parallel arrays through unnest), so a batch of
 * dispatches costs one query however large it is. */
#ifndef WA_CONVERSATIONS_H
#define WA_CONVERSATIONS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/crypto.h"

/* Shortest CRM_DATA_KEY accepted: 32 bytes of secret make the keyed hash
 * as hard to reverse as SHA-256 allows. crmctl checks the same bound. */
#define WA_DATA_KEY_MIN CMN_DATA_KEY_MIN
#define WA_PHONE_HASH_LEN CMN_ADDRESS_HASH_LEN

/* HMAC-SHA256(key, e164) into out. key and e164 are borrowed NUL-terminated
 * strings (the key's bytes are used as they are). Returns 0 or
 * CMN_ERR_INVALID (NULL input, or a key shorter than WA_DATA_KEY_MIN). */
int wa_phone_hash(const char *key, const char *e164, unsigned char out[WA_PHONE_HASH_LEN]);

/* Lowercase hex of a hash into hex (2 * WA_PHONE_HASH_LEN + 1 bytes). */
void wa_phone_hash_hex(const unsigned char hash[WA_PHONE_HASH_LEN], char hex[2 * WA_PHONE_HASH_LEN + 1]);

/* One recipient to look up, and the answer. */
typedef struct wa_conv_key {
    const char *tenant_id;                 /* borrowed */
    unsigned char hash[WA_PHONE_HASH_LEN];
    int found;                             /* out: 1 when a row with a last_inbound_at exists */
    int64_t last_inbound_ms;               /* out: epoch ms, when found */
} wa_conv_key_t;

/* Looks up every key's WhatsApp conversation with one query on conn
 * (borrowed). Fills found/last_inbound_ms of each key (found 0 for keys
 * without a row). Returns 0, CMN_ERR_UNAVAILABLE (the connection is
 * broken: reconnect), CMN_ERR_DB (the server refused the query), or
 * CMN_ERR_NOMEM; errstr gets a one-line reason (never a key or hash). */
int wa_conversations_lookup(PGconn *conn, wa_conv_key_t *keys, size_t n, char *errstr, size_t errlen);

#endif
