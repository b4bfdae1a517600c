/* projector_inbound.c - the crm.inbound projection's pure batch logic (see
 * projector_inbound.h). */
#include "projector_inbound.h"

#include <stdio.h>
#include <string.h>

#include "crm/crypto.h"
#include "crm/err.h"
#include "crm/inbound.h"
#include "crm/request.h"
#include "projector_batch.h"

/* Years 1..9999, what PostgreSQL stores (as for status events). */
#define INBOUND_MIN_TIME_MS (-62135596800000LL)
#define INBOUND_MAX_TIME_MS (253402300799999LL)

#define HASH_OF(col) "decode(" col ", 'hex')"

const char PROJECTOR_INBOUND_APPLY_SQL[] =
    "WITH input AS ("
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::int[], $15::bigint[])"
    " AS t(event_id, tenant_id, channel, provider, provider_message_id, from_hash, from_sealed, to_address,"
    " body_sealed, profile_name_sealed, keyword, media, received_ms, kafka_partition, kafka_offset)"
    "), ins AS ("
    " INSERT INTO inbound_messages (event_id, tenant_id, channel, provider, provider_message_id, from_hash,"
    " from_sealed, to_address, body_sealed, profile_name_sealed, keyword, media, received_at, client_id,"
    " kafka_partition, kafka_offset)"
    " SELECT t.event_id, t.tenant_id, t.channel, t.provider, t.provider_message_id, " HASH_OF("t.from_hash") ","
    " t.from_sealed, t.to_address, t.body_sealed, t.profile_name_sealed, t.keyword, t.media::jsonb,"
    " timestamptz 'epoch' + t.received_ms * interval '1 millisecond',"
    /* The client only when the number is unambiguous: a shared family
     * phone belongs to no single client. */
    " (SELECT min(cc.client_id) FROM client_contacts AS cc WHERE cc.tenant_id = t.tenant_id"
    " AND cc.address_hash = " HASH_OF("t.from_hash") " HAVING count(DISTINCT cc.client_id) = 1),"
    " t.kafka_partition, t.kafka_offset"
    " FROM input AS t"
    " ON CONFLICT (event_id) DO NOTHING"
    " RETURNING tenant_id, channel, from_hash, from_sealed, received_at"
    "), conv AS ("
    /* Only messages inserted just now count, so a replay never inflates
     * unread_count. */
    " INSERT INTO conversations AS c (tenant_id, channel, phone_hash, last_inbound_at, window_expires_at,"
    " unread_count, updated_at)"
    " SELECT tenant_id, channel, from_hash, max(received_at),"
    " CASE WHEN channel = 'whatsapp' THEN max(received_at) + interval '24 hours' END, count(*), now()"
    " FROM ins GROUP BY tenant_id, channel, from_hash"
    " ON CONFLICT (tenant_id, channel, phone_hash) DO UPDATE SET"
    " last_inbound_at = GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at),"
    " window_expires_at = CASE WHEN c.channel = 'whatsapp'"
    " THEN GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at) + interval '24 hours' END,"
    " unread_count = c.unread_count + EXCLUDED.unread_count, updated_at = now()"
    " RETURNING 1"
    "), unknown AS ("
    " INSERT INTO contacts AS k (tenant_id, channel, address_hash, address_sealed, first_seen_at,"
    " last_inbound_at, inbound_count, status, updated_at)"
    " SELECT i.tenant_id, i.channel, i.from_hash, (array_agg(i.from_sealed ORDER BY i.received_at DESC))[1],"
    " min(i.received_at), max(i.received_at), count(*), 'unknown', now()"
    " FROM ins AS i"
    " WHERE NOT EXISTS (SELECT 1 FROM client_contacts AS cc WHERE cc.tenant_id = i.tenant_id"
    " AND cc.address_hash = i.from_hash)"
    " GROUP BY i.tenant_id, i.channel, i.from_hash"
    /* The CRM's verdict (linked, ignored) is kept; only the activity moves. */
    " ON CONFLICT (tenant_id, channel, address_hash) DO UPDATE SET"
    " first_seen_at = LEAST(k.first_seen_at, EXCLUDED.first_seen_at),"
    " last_inbound_at = GREATEST(k.last_inbound_at, EXCLUDED.last_inbound_at),"
    " inbound_count = k.inbound_count + EXCLUDED.inbound_count, updated_at = now()"
    " RETURNING (xmax = 0) AS created"
    ")"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM conv),"
    " (SELECT count(*) FROM unknown WHERE created)";

static void seterr(char *errstr, size_t errlen, const char *field, const char *reason)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s: %s", field, reason);
}

static int check(const cmn_inbound_t *m, char *errstr, size_t errlen)
{
    if (!cmn_valid_e164(m->from)) {
        seterr(errstr, errlen, "from", "must be an E.164 number like +14155550100");
        return CMN_ERR_INVALID;
    }
    if (m->received_at_ms < INBOUND_MIN_TIME_MS || m->received_at_ms > INBOUND_MAX_TIME_MS) {
        seterr(errstr, errlen, "received_at", "is outside the years 1 to 9999");
        return CMN_ERR_INVALID;
    }
    /* The columns stored in clear must be UTF-8 for PostgreSQL; the sealed
     * ones are base64 whatever they hold. */
    const struct {
        const char *name, *value;
    } texts[] = {
        {"tenant_id", m->tenant_id}, {"provider", m->provider}, {"provider_message_id", m->provider_message_id},
        {"to", m->to},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (!projector_utf8_valid(texts[i].value)) {
            seterr(errstr, errlen, texts[i].name, "is not valid UTF-8");
            return CMN_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < m->n_media; i++) {
        if (!projector_utf8_valid(m->media[i].url) || !projector_utf8_valid(m->media[i].content_type)) {
            seterr(errstr, errlen, "media", "is not valid UTF-8");
            return CMN_ERR_INVALID;
        }
    }
    return 0;
}

/* Seals s (NULL stays NULL: the column is NULL) into out. */
static int seal_opt(const char *key, const char *s, cmn_buf_t *out, const char **result)
{
    *result = NULL;
    if (s == NULL)
        return 0;
    int rc = cmn_crypto_seal(key, s, strlen(s), out);
    if (rc == 0)
        *result = out->data;
    return rc;
}

static int media_json(const cmn_inbound_t *m, cmn_buf_t *out)
{
    int rc = cmn_buf_putc(out, '[');
    for (size_t i = 0; rc == 0 && i < m->n_media; i++) {
        rc = cmn_buf_puts(out, i > 0 ? ",{\"url\":" : "{\"url\":");
        if (rc == 0)
            rc = cmn_buf_put_json_string(out, m->media[i].url);
        if (rc == 0 && m->media[i].content_type != NULL) {
            rc = cmn_buf_puts(out, ",\"content_type\":");
            if (rc == 0)
                rc = cmn_buf_put_json_string(out, m->media[i].content_type);
        }
        if (rc == 0)
            rc = cmn_buf_putc(out, '}');
    }
    if (rc == 0)
        rc = cmn_buf_putc(out, ']');
    return rc;
}

/* Reopens the literals closed by params() so more can be appended. */
static void unseal(projector_inbound_batch_t *b)
{
    if (!b->sealed)
        return;
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++) {
        cmn_buf_t *c = &b->cols[i];
        c->len = b->n == 0 ? 0 : c->len - 1;
        if (c->data != NULL)
            c->data[c->len] = '\0';
    }
    b->sealed = 0;
}

int projector_inbound_add(projector_inbound_batch_t *b, const char *data_key, const char *value, size_t len,
                          int32_t partition, int64_t offset, char *errstr, size_t errlen)
{
    json_object *obj = NULL;
    cmn_inbound_t m;
    unsigned char hash[CMN_ADDRESS_HASH_LEN];
    char hex[2 * CMN_ADDRESS_HASH_LEN + 1];
    cmn_buf_t from_s = CMN_BUF_INIT, body_s = CMN_BUF_INIT, prof_s = CMN_BUF_INIT, media = CMN_BUF_INIT;
    const char *body_sealed = NULL, *profile_sealed = NULL, *from_sealed = NULL;
    size_t saved[PROJECTOR_INBOUND_NCOLS];
    memset(&m, 0, sizeof m);

    if (b == NULL || data_key == NULL)
        return CMN_ERR_INVALID;
    int rc = projector_json_parse(value, len, "InboundMessage", &obj, errstr, errlen);
    if (rc != 0)
        goto cleanup;
    rc = cmn_inbound_from_json(obj, &m, errstr, errlen);
    if (rc == CMN_ERR_NOMEM)
        goto cleanup;
    if (rc != 0) {
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    rc = check(&m, errstr, errlen);
    if (rc != 0)
        goto cleanup;

    rc = cmn_crypto_address_hash(data_key, m.from, hash);
    if (rc == 0)
        rc = seal_opt(data_key, m.from, &from_s, &from_sealed);
    if (rc == 0)
        rc = seal_opt(data_key, m.body, &body_s, &body_sealed);
    if (rc == 0)
        rc = seal_opt(data_key, m.profile_name, &prof_s, &profile_sealed);
    if (rc == 0)
        rc = media_json(&m, &media);
    if (rc != 0) {
        /* The key was checked at start, so this is memory or OpenSSL. */
        seterr(errstr, errlen, "from", "cannot hash or seal (out of memory)");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    cmn_crypto_hex(hash, hex);

    unseal(b);
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++)
        saved[i] = b->cols[i].len;
    cmn_buf_t *c = b->cols;
    rc = projector_pg_array_text(&c[PROJECTOR_ICOL_EVENT_ID], m.event_id);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_TENANT_ID], m.tenant_id);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_CHANNEL], cmn_channel_name(m.channel));
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_PROVIDER], m.provider);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_PROVIDER_MESSAGE_ID], m.provider_message_id);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_FROM_HASH], hex);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_FROM_SEALED], from_sealed);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_TO], m.to);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_BODY_SEALED], body_sealed);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_PROFILE_SEALED], profile_sealed);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_KEYWORD], cmn_inbound_keyword_name(m.keyword));
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_ICOL_MEDIA], media.data);
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_ICOL_RECEIVED_MS], m.received_at_ms);
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_ICOL_KAFKA_PARTITION], partition);
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_ICOL_KAFKA_OFFSET], offset);
    if (rc != 0) {
        for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++) {
            c[i].len = saved[i];
            if (c[i].data != NULL)
                c[i].data[c[i].len] = '\0';
        }
        seterr(errstr, errlen, "message", "out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    b->n++;
cleanup:
    cmn_inbound_clear(&m);
    json_object_put(obj);
    cmn_buf_free(&from_s);
    cmn_buf_free(&body_s);
    cmn_buf_free(&prof_s);
    cmn_buf_free(&media);
    return rc;
}

int projector_inbound_params(projector_inbound_batch_t *b, const char *values[PROJECTOR_INBOUND_NCOLS])
{
    int rc = 0;
    if (!b->sealed) {
        for (size_t i = 0; rc == 0 && i < PROJECTOR_INBOUND_NCOLS; i++)
            rc = projector_pg_array_close(&b->cols[i]);
        if (rc != 0)
            return rc;
        b->sealed = 1;
    }
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++)
        values[i] = b->cols[i].data;
    return 0;
}

void projector_inbound_reset(projector_inbound_batch_t *b)
{
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++)
        cmn_buf_reset(&b->cols[i]);
    b->n = 0;
    b->sealed = 0;
}

void projector_inbound_free(projector_inbound_batch_t *b)
{
    for (size_t i = 0; i < PROJECTOR_INBOUND_NCOLS; i++)
        cmn_buf_free(&b->cols[i]);
    b->n = 0;
    b->sealed = 0;
}
