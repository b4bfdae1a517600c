/* wa_conversations.c - phone hashes and the batched window lookup. See
 * wa_conversations.h. */
#include "wa_conversations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/err.h"

/* The ordinality of each key comes back with its row, so answers are
 * matched to keys by position: no sorting, and duplicates (two dispatches
 * to one person in a batch) simply get the same row twice. */
static const char SQL_LOOKUP[] =
    "SELECT u.i, (extract(epoch FROM c.last_inbound_at) * 1000)::bigint"
    " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(tenant_id, phone_hash_hex, i)"
    " JOIN conversations c ON c.tenant_id = u.tenant_id AND c.channel = 'whatsapp'"
    "  AND c.phone_hash = decode(u.phone_hash_hex, 'hex')"
    " WHERE c.last_inbound_at IS NOT NULL";

/* The hash is the shared keyed address hash (crm/crypto.h), so the rows the
 * webhook receiver and the projector write are the rows this worker reads. */
int wa_phone_hash(const char *key, const char *e164, unsigned char out[WA_PHONE_HASH_LEN])
{
    return cmn_crypto_address_hash(key, e164, out);
}

void wa_phone_hash_hex(const unsigned char hash[WA_PHONE_HASH_LEN], char hex[2 * WA_PHONE_HASH_LEN + 1])
{
    cmn_crypto_hex(hash, hex);
}

/* Appends s as an element of a PostgreSQL array literal: double-quoted,
 * with '"' and '\' escaped, so any tenant id survives. */
static int array_element(cmn_buf_t *b, const char *s, int first)
{
    int rc = first ? 0 : cmn_buf_putc(b, ',');
    if (rc == 0)
        rc = cmn_buf_putc(b, '"');
    for (const char *p = s; rc == 0 && *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            rc = cmn_buf_putc(b, '\\');
        if (rc == 0)
            rc = cmn_buf_putc(b, *p);
    }
    if (rc == 0)
        rc = cmn_buf_putc(b, '"');
    return rc;
}

/* A failed result as a code and a single-line message. */
static int result_error(PGconn *conn, const PGresult *res, char *errstr, size_t errlen)
{
    int rc = PQstatus(conn) == CONNECTION_BAD ? CMN_ERR_UNAVAILABLE : CMN_ERR_DB;
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    if (msg == NULL || msg[0] == '\0')
        msg = PQerrorMessage(conn);
    snprintf(errstr, errlen, "reading conversations: %s", msg);
    for (char *p = errstr; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    }
    size_t len = strlen(errstr);
    while (len > 0 && errstr[len - 1] == ' ')
        errstr[--len] = '\0';
    return rc;
}

int wa_conversations_lookup(PGconn *conn, wa_conv_key_t *keys, size_t n, char *errstr, size_t errlen)
{
    cmn_buf_t tenants = CMN_BUF_INIT, hashes = CMN_BUF_INIT;
    PGresult *res = NULL;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i].found = 0;
        keys[i].last_inbound_ms = 0;
    }
    if (n == 0)
        return 0;
    if (conn == NULL) {
        snprintf(errstr, errlen, "reading conversations: no database connection");
        return CMN_ERR_UNAVAILABLE;
    }
    rc = cmn_buf_putc(&tenants, '{');
    if (rc == 0)
        rc = cmn_buf_putc(&hashes, '{');
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char hex[2 * WA_PHONE_HASH_LEN + 1];
        wa_phone_hash_hex(keys[i].hash, hex);
        rc = array_element(&tenants, keys[i].tenant_id != NULL ? keys[i].tenant_id : "", i == 0);
        if (rc == 0)
            rc = array_element(&hashes, hex, i == 0);
    }
    if (rc == 0)
        rc = cmn_buf_putc(&tenants, '}');
    if (rc == 0)
        rc = cmn_buf_putc(&hashes, '}');
    if (rc != 0) {
        snprintf(errstr, errlen, "reading conversations: out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    const char *params[2] = {tenants.data, hashes.data};
    res = PQexecParams(conn, SQL_LOOKUP, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(conn, res, errstr, errlen);
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        long long ord = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        if (ord < 1 || (size_t)ord > n || PQgetisnull(res, row, 1))
            continue;
        keys[ord - 1].found = 1;
        keys[ord - 1].last_inbound_ms = (int64_t)strtoll(PQgetvalue(res, row, 1), NULL, 10);
    }
cleanup:
    PQclear(res);
    cmn_buf_free(&tenants);
    cmn_buf_free(&hashes);
    return rc;
}
