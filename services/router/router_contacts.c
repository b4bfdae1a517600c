/* router_contacts.c - client_contacts upserts (see router_contacts.h). */
#include "router_contacts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/phone.h"
#include "router_claims.h"

/* DISTINCT: ON CONFLICT DO UPDATE may not touch one row twice in a
 * statement, and a batch often holds several requests of one client. */
static const char SQL_UPSERT[] =
    "INSERT INTO client_contacts (tenant_id, channel, address_hash, client_id)"
    " SELECT DISTINCT u.tenant_id, u.channel, decode(u.hash, 'hex'), u.client_id"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(tenant_id, channel, hash, client_id)"
    " ON CONFLICT (tenant_id, channel, address_hash, client_id) DO UPDATE SET last_seen_at = now()";

int router_contact_canonical(cmn_channel_t c, const char *address, char *out, size_t outlen)
{
    cmn_phone_info_t info;
    if (address == NULL || address[0] == '\0') {
        return CMN_ERR_INVALID;
    }
    if (c == CMN_CHANNEL_EMAIL) {
        size_t len = strlen(address);
        if (len >= outlen) {
            return CMN_ERR_OVERFLOW;
        }
        for (size_t i = 0; i <= len; i++) {
            char ch = address[i];
            out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        return CMN_OK;
    }
    /* A reply arrives from the number's E.164 spelling; hash that one. */
    const char *text = cmn_phone_check(address, &info) == CMN_OK ? info.e164 : address;
    int n = snprintf(out, outlen, "%s", text);
    return (n < 0 || (size_t)n >= outlen) ? CMN_ERR_OVERFLOW : CMN_OK;
}

int router_contacts_of(const cmn_request_t *r, const char *key, router_contact_t *out, size_t *n)
{
    static const cmn_channel_t channels[] = {CMN_CHANNEL_SMS, CMN_CHANNEL_WHATSAPP, CMN_CHANNEL_EMAIL};
    char canon[320];
    unsigned char hash[CMN_ADDRESS_HASH_LEN];

    if (r->client_id == NULL || r->client_id[0] == '\0') {
        return CMN_OK;
    }
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++) {
        const char *addr = cmn_recipient_address(&r->recipient, channels[i]);
        if (router_contact_canonical(channels[i], addr, canon, sizeof canon) != CMN_OK) {
            continue;
        }
        if (cmn_crypto_address_hash(key, canon, hash) != CMN_OK) {
            return CMN_ERR_INVALID;
        }
        router_contact_t *c = &out[(*n)++];
        c->tenant_id = r->tenant_id;
        c->client_id = r->client_id;
        c->channel = channels[i];
        cmn_crypto_hex(hash, c->hash_hex);
    }
    return CMN_OK;
}

int router_contacts_upsert(PGconn *conn, const router_contact_t *rows, size_t n, char *errstr, size_t errlen)
{
    const char **cols[4] = {NULL, NULL, NULL, NULL};
    cmn_buf_t arrays[4] = {CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT};
    PGresult *res = NULL;
    int rc = CMN_OK;

    if (n == 0) {
        return CMN_OK;
    }
    if (conn == NULL) {
        snprintf(errstr, errlen, "client contacts: no connection");
        return CMN_ERR_UNAVAILABLE;
    }
    for (size_t j = 0; j < 4; j++) {
        cols[j] = malloc(n * sizeof *cols[j]);
        if (cols[j] == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n; i++) {
        cols[0][i] = rows[i].tenant_id;
        cols[1][i] = cmn_channel_name(rows[i].channel);
        cols[2][i] = rows[i].hash_hex;
        cols[3][i] = rows[i].client_id;
    }
    for (size_t j = 0; rc == CMN_OK && j < 4; j++) {
        rc = router_pg_text_array(&arrays[j], cols[j], n);
    }
    if (rc != CMN_OK) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    const char *params[4] = {arrays[0].data, arrays[1].data, arrays[2].data, arrays[3].data};
    res = PQexecParams(conn, SQL_UPSERT, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = PQstatus(conn) == CONNECTION_BAD ? CMN_ERR_UNAVAILABLE : CMN_ERR_DB;
        snprintf(errstr, errlen, "recording client contacts: %s", PQresultErrorMessage(res));
        for (char *p = errstr; *p != '\0'; p++) {
            if (*p == '\n') {
                *p = ' ';
            }
        }
    }

cleanup:
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "recording client contacts: out of memory");
    }
    PQclear(res);
    for (size_t j = 0; j < 4; j++) {
        free(cols[j]);
        cmn_buf_free(&arrays[j]);
    }
    return rc;
}
