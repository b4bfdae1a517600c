/* projector_receipts.c - receipts matched through provider message ids (see
 * projector_receipts.h). */
#include "projector_receipts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/uuid.h"
#include "projector_batch.h"

const char PROJECTOR_RECEIPTS_PARK_SQL[] =
    "INSERT INTO receipts_unmatched (event_id, tenant_id, channel, status, provider, provider_message_id,"
    " error_code, error_message, occurred_at, kafka_partition, kafka_offset)"
    " SELECT t.event_id, t.tenant_id, t.channel, t.status, t.provider, t.provider_message_id, t.error_code,"
    " t.error_message, timestamptz 'epoch' + t.occurred_ms * interval '1 millisecond', t.kafka_partition,"
    " t.kafka_offset"
    " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::bigint[], $10::int[], $11::bigint[])"
    " AS t(event_id, tenant_id, channel, status, provider, provider_message_id, error_code, error_message,"
    " occurred_ms, kafka_partition, kafka_offset)"
    /* A receipt already applied before (a replay) is parked again and then
     * matched again; its event id makes the second application a no-op. */
    " ON CONFLICT (event_id) DO NOTHING";

const char PROJECTOR_RECEIPTS_MATCH_SQL[] =
    "SELECT DISTINCT ON (u.event_id) u.event_id, e.communication_id, e.tenant_id, e.client_id, e.request_id,"
    " e.message_type, coalesce(u.channel, e.channel), u.status, e.hop, e.attempt, coalesce(u.provider, e.provider),"
    " u.provider_message_id, u.error_code, u.error_message, (extract(epoch FROM u.occurred_at) * 1000)::bigint,"
    " u.kafka_partition, u.kafka_offset"
    " FROM receipts_unmatched AS u"
    " JOIN communication_events AS e ON e.provider_message_id = u.provider_message_id AND e.status = 'sent'"
    " AND (u.provider IS NULL OR e.provider IS NULL OR e.provider = u.provider)"
    " WHERE u.provider_message_id = ANY($1::text[])"
    /* Should a provider ever reuse an id, the earliest `sent` wins, always
     * the same one. */
    " ORDER BY u.event_id, e.occurred_at, e.event_id";

const char PROJECTOR_RECEIPTS_DELETE_SQL[] = "DELETE FROM receipts_unmatched WHERE event_id = ANY($1::uuid[])";

static void seterr(char *errstr, size_t errlen, const char *msg)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s", msg);
}

/* Reopens the literals closed by params() so more can be appended. */
static void unseal(projector_receipts_t *r)
{
    if (!r->sealed)
        return;
    for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++) {
        cmn_buf_t *c = &r->cols[i];
        c->len = r->n == 0 ? 0 : c->len - 1;
        if (c->data != NULL)
            c->data[c->len] = '\0';
    }
    r->pmids.len = r->npmids == 0 ? 0 : r->pmids.len - 1;
    if (r->pmids.data != NULL)
        r->pmids.data[r->pmids.len] = '\0';
    r->sealed = 0;
}

static const char *opt(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

int projector_receipts_note_pmid(projector_receipts_t *r, const char *pmid)
{
    if (r == NULL)
        return CMN_ERR_INVALID;
    if (opt(pmid) == NULL)
        return 0;
    unseal(r);
    int rc = projector_pg_array_text(&r->pmids, pmid);
    if (rc == 0)
        r->npmids++;
    return rc;
}

int projector_receipts_add(projector_receipts_t *r, const cmn_status_event_t *ev, int32_t partition,
                           int64_t offset, char *errstr, size_t errlen)
{
    size_t saved[PROJECTOR_RECEIPT_NCOLS];
    int rc = 0;

    if (r == NULL || ev == NULL) {
        seterr(errstr, errlen, "event: missing");
        return CMN_ERR_INVALID;
    }
    if (opt(ev->provider_message_id) == NULL) {
        seterr(errstr, errlen, "communication_id: is required (or provider_message_id)");
        return CMN_ERR_INVALID;
    }
    rc = projector_status_check(ev, 0, errstr, errlen);
    if (rc != 0)
        return rc;
    unseal(r);
    for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++)
        saved[i] = r->cols[i].len;
    const char *channel = ev->channel == CMN_CHANNEL_NONE ? NULL : cmn_channel_name(ev->channel);
    cmn_buf_t *c = r->cols;
    rc = projector_pg_array_text(&c[PROJECTOR_RCOL_EVENT_ID], ev->event_id);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_TENANT_ID], opt(ev->tenant_id) ? ev->tenant_id : "default");
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_CHANNEL], channel);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_STATUS], cmn_status_name(ev->status));
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_PROVIDER], opt(ev->provider));
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_PROVIDER_MESSAGE_ID], ev->provider_message_id);
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_ERROR_CODE], opt(ev->error_code));
    if (rc == 0)
        rc = projector_pg_array_text(&c[PROJECTOR_RCOL_ERROR_MESSAGE], opt(ev->error_message));
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_RCOL_OCCURRED_MS], ev->occurred_at_ms);
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_RCOL_KAFKA_PARTITION], partition);
    if (rc == 0)
        rc = projector_pg_array_int(&c[PROJECTOR_RCOL_KAFKA_OFFSET], offset);
    if (rc == 0)
        rc = projector_receipts_note_pmid(r, ev->provider_message_id);
    if (rc != 0) {
        /* Keep the columns aligned: cut every one back. */
        for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++) {
            c[i].len = saved[i];
            if (c[i].data != NULL)
                c[i].data[c[i].len] = '\0';
        }
        seterr(errstr, errlen, "event: out of memory");
        return CMN_ERR_NOMEM;
    }
    r->n++;
    return 0;
}

int projector_receipts_params(projector_receipts_t *r, const char *values[PROJECTOR_RECEIPT_NCOLS],
                              const char **pmids)
{
    int rc = 0;
    if (!r->sealed) {
        for (size_t i = 0; rc == 0 && i < PROJECTOR_RECEIPT_NCOLS; i++)
            rc = projector_pg_array_close(&r->cols[i]);
        if (rc == 0)
            rc = projector_pg_array_close(&r->pmids);
        if (rc != 0)
            return rc;
        r->sealed = 1;
    }
    for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++)
        values[i] = r->cols[i].data;
    *pmids = r->pmids.data;
    return 0;
}

/* A non-negative decimal integer that fits in int64. */
static int read_int(const char *s, int64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0')
        return CMN_ERR_INVALID;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return CMN_ERR_INVALID;
    *out = v;
    return 0;
}

int projector_receipts_event(const char *const vals[PROJECTOR_RESOLVED_NCOLS], cmn_status_event_t *ev)
{
    int64_t hop = 0, attempt = 0, at = 0;
    if (vals == NULL || ev == NULL)
        return CMN_ERR_INVALID;
    memset(ev, 0, sizeof *ev);
    const char *eid = vals[PROJECTOR_MCOL_EVENT_ID], *cid = vals[PROJECTOR_MCOL_COMMUNICATION_ID];
    if (!cmn_uuid_is_valid(eid) || !cmn_uuid_is_valid(cid))
        return CMN_ERR_INVALID;
    snprintf(ev->event_id, sizeof ev->event_id, "%s", eid);
    snprintf(ev->communication_id, sizeof ev->communication_id, "%s", cid);
    if (cmn_status_parse(vals[PROJECTOR_MCOL_STATUS], &ev->status) != 0)
        return CMN_ERR_INVALID;
    if (read_int(vals[PROJECTOR_MCOL_HOP], &hop) != 0 || read_int(vals[PROJECTOR_MCOL_ATTEMPT], &attempt) != 0 ||
        read_int(vals[PROJECTOR_MCOL_OCCURRED_MS], &at) != 0 || hop < 0 || hop > INT32_MAX || attempt < 0 ||
        attempt > INT32_MAX)
        return CMN_ERR_INVALID;
    ev->hop = (int)hop;
    ev->attempt = (int)attempt;
    ev->occurred_at_ms = at;
    ev->tenant_id = vals[PROJECTOR_MCOL_TENANT_ID];
    ev->client_id = vals[PROJECTOR_MCOL_CLIENT_ID];
    ev->request_id = vals[PROJECTOR_MCOL_REQUEST_ID];
    ev->message_type = vals[PROJECTOR_MCOL_MESSAGE_TYPE];
    ev->channel = cmn_channel_parse(vals[PROJECTOR_MCOL_CHANNEL]);
    ev->provider = vals[PROJECTOR_MCOL_PROVIDER];
    ev->provider_message_id = vals[PROJECTOR_MCOL_PROVIDER_MESSAGE_ID];
    ev->error_code = vals[PROJECTOR_MCOL_ERROR_CODE];
    ev->error_message = vals[PROJECTOR_MCOL_ERROR_MESSAGE];
    return 0;
}

void projector_receipts_reset(projector_receipts_t *r)
{
    for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++)
        cmn_buf_reset(&r->cols[i]);
    cmn_buf_reset(&r->pmids);
    r->n = 0;
    r->npmids = 0;
    r->sealed = 0;
}

void projector_receipts_free(projector_receipts_t *r)
{
    for (size_t i = 0; i < PROJECTOR_RECEIPT_NCOLS; i++)
        cmn_buf_free(&r->cols[i]);
    cmn_buf_free(&r->pmids);
    r->n = 0;
    r->npmids = 0;
    r->sealed = 0;
}
