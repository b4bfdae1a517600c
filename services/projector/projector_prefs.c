/* projector_prefs.c - the crm.preferences projection's pure batch logic
 * (see projector_prefs.h). */
#include "projector_prefs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/preferences.h"
#include "projector_batch.h"

const char PROJECTOR_PREFS_DELETE_SQL[] =
    "DELETE FROM client_preferences AS c"
    " USING unnest($1::text[], $2::text[]) AS t(tenant_id, client_id)"
    " WHERE c.tenant_id = t.tenant_id AND c.client_id = t.client_id";

const char PROJECTOR_PREFS_UPSERT_SQL[] =
    "INSERT INTO client_preferences AS c (tenant_id, client_id, snapshot, updated_at, kafka_partition,"
    " kafka_offset, projected_at)"
    " SELECT t.tenant_id, t.client_id, t.snapshot::jsonb,"
    /* Integer arithmetic keeps the milliseconds exact. */
    " timestamptz 'epoch' + t.updated_ms * interval '1 millisecond', t.kafka_partition, t.kafka_offset, now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::bigint[])"
    " AS t(tenant_id, client_id, snapshot, updated_ms, kafka_partition, kafka_offset)"
    " ON CONFLICT (tenant_id, client_id) DO UPDATE SET snapshot = EXCLUDED.snapshot,"
    " updated_at = EXCLUDED.updated_at, kafka_partition = EXCLUDED.kafka_partition,"
    " kafka_offset = EXCLUDED.kafka_offset, projected_at = now()"
    /* Newer wins; on the same updated_at the later record of the partition
     * does. A row written without an offset (by hand) loses the tie. */
    " WHERE (EXCLUDED.updated_at, EXCLUDED.kafka_offset) > (c.updated_at, coalesce(c.kafka_offset, -1))";

static void seterr(char *errstr, size_t errlen, const char *msg)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s", msg);
}

/* The entry of tenant/client, created when absent; NULL when out of memory. */
static projector_prefs_entry_t *entry_for(projector_prefs_batch_t *b, const char *tenant, const char *client)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->items[i].tenant_id, tenant) == 0 && strcmp(b->items[i].client_id, client) == 0)
            return &b->items[i];
    }
    if (b->n == b->cap) {
        size_t ncap = b->cap != 0 ? b->cap * 2 : 16;
        projector_prefs_entry_t *items = realloc(b->items, ncap * sizeof *items);
        if (items == NULL)
            return NULL;
        b->items = items;
        b->cap = ncap;
    }
    projector_prefs_entry_t *e = &b->items[b->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->tenant_id, sizeof e->tenant_id, "%s", tenant);
    snprintf(e->client_id, sizeof e->client_id, "%s", client);
    return e;
}

/* Validates a snapshot value against its key; fills canonical JSON and
 * updated_at. */
static int parse_snapshot(const char *value, size_t value_len, const char *tenant, const char *client,
                          cmn_buf_t *canon, int64_t *updated_ms, char *errstr, size_t errlen)
{
    json_object *obj = NULL;
    json_object *errors = NULL;
    cmn_preferences_t p;
    memset(&p, 0, sizeof p);

    int rc = projector_json_parse(value, value_len, "ClientPreferences", &obj, errstr, errlen);
    if (rc != 0)
        goto cleanup;
    errors = json_object_new_array();
    if (errors == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = cmn_preferences_from_json(obj, "", &p, errors);
    if (rc == CMN_ERR_NOMEM)
        goto cleanup;
    if (rc != 0) {
        /* The DLQ reason names every bad field, like the HTTP answer would. */
        cmn_buf_t why = CMN_BUF_INIT;
        for (size_t i = 0; i < json_object_array_length(errors); i++) {
            json_object *e = json_object_array_get_idx(errors, i);
            json_object *f = NULL, *r = NULL;
            json_object_object_get_ex(e, "field", &f);
            json_object_object_get_ex(e, "reason", &r);
            cmn_buf_printf(&why, "%s%s: %s", i > 0 ? "; " : "", f != NULL ? json_object_get_string(f) : "?",
                           r != NULL ? json_object_get_string(r) : "?");
        }
        seterr(errstr, errlen, why.data != NULL ? why.data : "value: not a valid ClientPreferences record");
        cmn_buf_free(&why);
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    /* A snapshot filed under another client's key would survive compaction
     * in the wrong place and be erased by the wrong tombstone. */
    if (strcmp(p.tenant_id, tenant) != 0 || strcmp(p.client_id, client) != 0) {
        seterr(errstr, errlen, "key: does not match the value's tenant_id:client_id");
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    rc = cmn_preferences_to_json(&p, canon);
    *updated_ms = p.updated_at_ms;
cleanup:
    cmn_preferences_clear(&p);
    json_object_put(errors);
    json_object_put(obj);
    return rc;
}

int projector_prefs_stage(projector_prefs_batch_t *b, const char *key, size_t key_len, const char *value,
                          size_t value_len, int32_t partition, int64_t offset, char *errstr, size_t errlen)
{
    char tenant[CMN_REQ_MAX_ID + 1], client[CMN_REQ_MAX_ID + 1];
    cmn_buf_t canon = CMN_BUF_INIT;
    int64_t updated_ms = 0;
    int rc = 0;

    if (b == NULL)
        return CMN_ERR_INVALID;
    if (key == NULL || key_len == 0) {
        seterr(errstr, errlen, "key: is missing (crm.preferences is keyed by tenant_id:client_id)");
        return CMN_ERR_INVALID;
    }
    rc = cmn_preferences_key_parse(key, key_len, tenant, sizeof tenant, client, sizeof client);
    if (rc != 0) {
        seterr(errstr, errlen, "key: is not <tenant_id>:<client_id> with two valid ids");
        return CMN_ERR_INVALID;
    }
    if (value != NULL) {
        rc = parse_snapshot(value, value_len, tenant, client, &canon, &updated_ms, errstr, errlen);
        if (rc != 0)
            goto cleanup;
    }
    projector_prefs_entry_t *e = entry_for(b, tenant, client);
    if (e == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    b->records++;
    if (value == NULL) {
        /* Whatever came before in this batch is erased with the row. */
        e->deleted = 1;
        free(e->snapshot);
        e->snapshot = NULL;
        goto cleanup;
    }
    /* Records arrive in offset order within a partition, so a later record
     * with the same updated_at wins the tie, as in the upsert. */
    if (e->snapshot == NULL || updated_ms >= e->updated_ms) {
        free(e->snapshot);
        e->snapshot = canon.data;
        canon = (cmn_buf_t)CMN_BUF_INIT;
        e->updated_ms = updated_ms;
        e->partition = partition;
        e->offset = offset;
    }
cleanup:
    cmn_buf_free(&canon);
    return rc;
}

int projector_prefs_delete_params(const projector_prefs_batch_t *b, cmn_buf_t *tenants, cmn_buf_t *clients,
                                  size_t *ndel)
{
    int rc = 0;
    *ndel = 0;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        if (!b->items[i].deleted)
            continue;
        rc = projector_pg_array_text(tenants, b->items[i].tenant_id);
        if (rc == 0)
            rc = projector_pg_array_text(clients, b->items[i].client_id);
        (*ndel)++;
    }
    if (rc == 0)
        rc = projector_pg_array_close(tenants);
    if (rc == 0)
        rc = projector_pg_array_close(clients);
    return rc;
}

int projector_prefs_upsert_params(const projector_prefs_batch_t *b, cmn_buf_t cols[6], size_t *nup)
{
    int rc = 0;
    *nup = 0;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        const projector_prefs_entry_t *e = &b->items[i];
        if (e->snapshot == NULL)
            continue;
        rc = projector_pg_array_text(&cols[0], e->tenant_id);
        if (rc == 0)
            rc = projector_pg_array_text(&cols[1], e->client_id);
        if (rc == 0)
            rc = projector_pg_array_text(&cols[2], e->snapshot);
        if (rc == 0)
            rc = projector_pg_array_int(&cols[3], e->updated_ms);
        if (rc == 0)
            rc = projector_pg_array_int(&cols[4], e->partition);
        if (rc == 0)
            rc = projector_pg_array_int(&cols[5], e->offset);
        (*nup)++;
    }
    for (size_t c = 0; rc == 0 && c < 6; c++)
        rc = projector_pg_array_close(&cols[c]);
    return rc;
}

void projector_prefs_reset(projector_prefs_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].snapshot);
    b->n = 0;
    b->records = 0;
}

void projector_prefs_free(projector_prefs_batch_t *b)
{
    projector_prefs_reset(b);
    free(b->items);
    b->items = NULL;
    b->cap = 0;
}
