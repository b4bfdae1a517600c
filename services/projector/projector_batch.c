/* projector_batch.c - the projector's pure batch logic (see projector_batch.h). */
#include "projector_batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/uuid.h"

/* ------------------------------------------------------------------- SQL */

/* A batch's key beats the row's key: the (hop, rank, time, id) order of
 * projector_batch.h. Row comparison is lexicographic in PostgreSQL. */
#define ADV                                                                                                \
    "(EXCLUDED.hop, EXCLUDED.status_rank, EXCLUDED.status_at, EXCLUDED.last_event_id)"                    \
    " > (c.hop, c.status_rank, c.status_at, c.last_event_id)"
/* Columns describing the current status follow it. */
#define TAKE_IF_ADV(col) col " = CASE WHEN " ADV " THEN EXCLUDED." col " ELSE c." col " END"
/* Columns that belong to a hop (the channel and the provider's identifiers):
 * a newer status of the same hop that lacks them (a `read` webhook without
 * the provider id) keeps the known value, a new hop replaces them, and a late
 * event of the current hop may still fill in a value that is missing. */
#define HOP_SCOPED(col)                                                                                    \
    col " = CASE WHEN " ADV " THEN COALESCE(EXCLUDED." col ", CASE WHEN EXCLUDED.hop = c.hop THEN c." col \
        " END) ELSE COALESCE(c." col ", CASE WHEN EXCLUDED.hop = c.hop THEN EXCLUDED." col " END) END"
/* Milestones keep the earliest time seen (LEAST ignores NULLs). */
#define EARLIEST(col) col " = LEAST(c." col ", EXCLUDED." col ")"
/* Identity columns are set by the first event that carries them. */
#define FIRST_SEEN(col) col " = COALESCE(c." col ", EXCLUDED." col ")"
#define MILESTONE(st) "min(i.occurred_at) FILTER (WHERE i.status = '" st "') AS " st "_at"
/* The latest value of a hop-scoped column within the batch's winning hop. */
#define LATEST_IN_HOP(col)                                                                                 \
    "(array_agg(i." col " ORDER BY i.status_rank DESC, i.occurred_at DESC, i.event_id DESC)"              \
    " FILTER (WHERE i." col " IS NOT NULL AND i.hop = cur.hop))[1] AS " col
#define FIRST_IN_BATCH(col)                                                                                \
    "(array_agg(i." col " ORDER BY i.occurred_at, i.event_id) FILTER (WHERE i." col " IS NOT NULL))[1] AS " col

const char PROJECTOR_STATUS_APPLY_SQL[] =
    "WITH input AS ("
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::int[], $10::int[], $11::int[], $12::text[], $13::text[], $14::text[], $15::text[],"
    " $16::text[], $17::bigint[], $18::int[], $19::bigint[])"
    " AS t(event_id, communication_id, tenant_id, client_id, request_id, message_type, channel, status,"
    " status_rank, attempt, hop, provider, provider_message_id, error_code, error_message, reason, occurred_ms,"
    " kafka_partition, kafka_offset)"
    "), ins AS ("
    " INSERT INTO communication_events (event_id, communication_id, tenant_id, client_id, request_id,"
    " message_type, channel, status, status_rank, attempt, hop, provider, provider_message_id, error_code,"
    " error_message, reason, occurred_at, kafka_partition, kafka_offset)"
    " SELECT event_id, communication_id, tenant_id, client_id, request_id, message_type, channel, status,"
    " status_rank, attempt, hop, provider, provider_message_id, error_code, error_message, reason,"
    /* Integer arithmetic keeps the milliseconds exact (to_timestamp() goes
     * through a double). */
    " timestamptz 'epoch' + occurred_ms * interval '1 millisecond', kafka_partition, kafka_offset"
    " FROM input"
    " ON CONFLICT (event_id) DO NOTHING"
    " RETURNING *"
    "), cur AS ("
    /* Only events inserted just now take part: a duplicate changes nothing. */
    " SELECT DISTINCT ON (communication_id) communication_id, tenant_id, status, status_rank, hop, attempt,"
    " error_code, error_message, reason, occurred_at, event_id"
    " FROM ins"
    " ORDER BY communication_id, hop DESC, status_rank DESC, occurred_at DESC, event_id DESC"
    "), agg AS ("
    " SELECT i.communication_id, min(i.occurred_at) AS created_at, " FIRST_IN_BATCH("client_id") ", "
    FIRST_IN_BATCH("request_id") ", " FIRST_IN_BATCH("message_type") ", " LATEST_IN_HOP("channel") ", "
    LATEST_IN_HOP("provider") ", " LATEST_IN_HOP("provider_message_id") ", " MILESTONE("accepted") ", "
    MILESTONE("routed") ", " MILESTONE("deferred") ", " MILESTONE("sending") ", " MILESTONE("sent") ", "
    MILESTONE("delivered") ", " MILESTONE("read") ", " MILESTONE("opened") ", " MILESTONE("clicked") ", "
    MILESTONE("failed") ", " MILESTONE("suppressed") ", " MILESTONE("rejected") ", " MILESTONE("dead")
    " FROM ins AS i JOIN cur USING (communication_id)"
    " GROUP BY i.communication_id"
    "), up AS ("
    " INSERT INTO communications AS c (communication_id, tenant_id, client_id, request_id, message_type,"
    " channel, status, status_rank, hop, attempt, provider, provider_message_id, error_code, error_message,"
    " reason, status_at, created_at, accepted_at, routed_at, deferred_at, sending_at, sent_at, delivered_at,"
    " read_at, opened_at, clicked_at, failed_at, suppressed_at, rejected_at, dead_at, updated_at,"
    " last_event_id)"
    " SELECT cur.communication_id, cur.tenant_id, agg.client_id, agg.request_id, agg.message_type,"
    " agg.channel, cur.status, cur.status_rank, cur.hop, cur.attempt, agg.provider, agg.provider_message_id,"
    " cur.error_code, cur.error_message, cur.reason, cur.occurred_at, agg.created_at, agg.accepted_at,"
    " agg.routed_at, agg.deferred_at, agg.sending_at, agg.sent_at, agg.delivered_at, agg.read_at,"
    " agg.opened_at, agg.clicked_at, agg.failed_at, agg.suppressed_at, agg.rejected_at, agg.dead_at, now(),"
    " cur.event_id"
    " FROM cur JOIN agg USING (communication_id)"
    " ON CONFLICT (communication_id) DO UPDATE SET "
    FIRST_SEEN("client_id") ", " FIRST_SEEN("request_id") ", " FIRST_SEEN("message_type") ", "
    HOP_SCOPED("channel") ", " HOP_SCOPED("provider") ", " HOP_SCOPED("provider_message_id") ", "
    TAKE_IF_ADV("status") ", " TAKE_IF_ADV("attempt") ", " TAKE_IF_ADV("error_code") ", "
    TAKE_IF_ADV("error_message") ", " TAKE_IF_ADV("reason") ", "
    /* The key columns last, for readability only: every SET expression sees
     * the row as it was before this update. */
    TAKE_IF_ADV("hop") ", " TAKE_IF_ADV("status_rank") ", " TAKE_IF_ADV("status_at") ", "
    TAKE_IF_ADV("last_event_id") ", " EARLIEST("created_at") ", " EARLIEST("accepted_at") ", "
    EARLIEST("routed_at") ", " EARLIEST("deferred_at") ", " EARLIEST("sending_at") ", " EARLIEST("sent_at") ", "
    EARLIEST("delivered_at") ", " EARLIEST("read_at") ", " EARLIEST("opened_at") ", " EARLIEST("clicked_at") ", "
    EARLIEST("failed_at") ", " EARLIEST("suppressed_at") ", " EARLIEST("rejected_at") ", " EARLIEST("dead_at") ", "
    "updated_at = now()"
    " RETURNING 1"
    ")"
    " SELECT (SELECT count(*) FROM ins) AS events, (SELECT count(*) FROM up) AS communications";

const char PROJECTOR_OFFSETS_UPSERT_SQL[] =
    "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at)"
    " SELECT $1, t.topic, t.partition, t.next_offset, now()"
    " FROM unnest($2::text[], $3::int[], $4::bigint[]) AS t(topic, partition, next_offset)"
    " ON CONFLICT (group_id, topic, partition) DO UPDATE"
    " SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()";

const char PROJECTOR_OFFSETS_SELECT_SQL[] =
    "SELECT t.i, o.next_offset"
    " FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS t(topic, partition, i)"
    " JOIN consumer_offsets AS o ON o.group_id = $1 AND o.topic = t.topic AND o.partition = t.partition";

/* --------------------------------------------------------------- helpers */

int projector_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (s == NULL)
        return 1;
    while (*p != '\0') {
        unsigned c = *p;
        size_t need;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0; /* continuation byte first, overlong lead (C0/C1) or F5..FF */
        }
        for (size_t i = 1; i <= need; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0; /* also stops at the NUL of a truncated sequence */
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += need + 1;
    }
    return 1;
}

int projector_pg_array_append_text(cmn_buf_t *b, const char *s)
{
    if (s == NULL)
        return cmn_buf_puts(b, "NULL");
    int rc = cmn_buf_putc(b, '"');
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

/* Starts the next element of an array literal: '{' for the first, ',' after. */
static int pg_array_next(cmn_buf_t *b)
{
    return cmn_buf_putc(b, b->len == 0 ? '{' : ',');
}

static int pg_array_text(cmn_buf_t *b, const char *s)
{
    int rc = pg_array_next(b);
    return rc == 0 ? projector_pg_array_append_text(b, s) : rc;
}

static int pg_array_int(cmn_buf_t *b, int64_t v)
{
    int rc = pg_array_next(b);
    return rc == 0 ? cmn_buf_printf(b, "%" PRId64, v) : rc;
}

/* Closes an array literal; an empty one is "{}". */
static int pg_array_close(cmn_buf_t *b)
{
    return b->len == 0 ? cmn_buf_puts(b, "{}") : cmn_buf_putc(b, '}');
}

int projector_pg_array_text(cmn_buf_t *b, const char *s)
{
    return pg_array_text(b, s);
}

int projector_pg_array_int(cmn_buf_t *b, int64_t v)
{
    return pg_array_int(b, v);
}

int projector_pg_array_close(cmn_buf_t *b)
{
    return pg_array_close(b);
}

static void seterr(char *errstr, size_t errlen, const char *field, const char *reason)
{
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s: %s", field, reason);
}

/* ---------------------------------------------------------- status batch */

void projector_status_batch_init(projector_status_batch_t *b)
{
    memset(b, 0, sizeof *b);
}

void projector_status_batch_reset(projector_status_batch_t *b)
{
    for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++)
        cmn_buf_reset(&b->cols[i]);
    b->n = 0;
    b->sealed = 0;
}

void projector_status_batch_free(projector_status_batch_t *b)
{
    for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++)
        cmn_buf_free(&b->cols[i]);
    b->n = 0;
    b->sealed = 0;
}

/* Years 1..9999: what RFC 3339 can express and PostgreSQL stores. */
#define PROJECTOR_MIN_TIME_MS (-62135596800000LL)
#define PROJECTOR_MAX_TIME_MS (253402300799999LL)

int projector_status_check(const cmn_status_event_t *ev, int need_communication_id, char *errstr, size_t errlen)
{
    if (!cmn_uuid_is_valid(ev->event_id)) {
        seterr(errstr, errlen, "event_id", "is not a UUID");
        return CMN_ERR_INVALID;
    }
    if (need_communication_id && !cmn_uuid_is_valid(ev->communication_id)) {
        seterr(errstr, errlen, "communication_id", "is not a UUID");
        return CMN_ERR_INVALID;
    }
    if (cmn_status_rank(ev->status) < 0) {
        seterr(errstr, errlen, "status", "has no rank");
        return CMN_ERR_INVALID;
    }
    if (ev->attempt < 0 || ev->hop < 0) {
        seterr(errstr, errlen, ev->attempt < 0 ? "attempt" : "hop", "must not be negative");
        return CMN_ERR_INVALID;
    }
    if (ev->occurred_at_ms < PROJECTOR_MIN_TIME_MS || ev->occurred_at_ms > PROJECTOR_MAX_TIME_MS) {
        seterr(errstr, errlen, "occurred_at", "is outside the years 1 to 9999");
        return CMN_ERR_INVALID;
    }
    /* A PostgreSQL UTF8 database rejects invalid byte sequences, which would
     * fail the whole batch over and over; catch them here so only the one
     * record goes to the DLQ. */
    const struct {
        const char *name, *value;
    } texts[] = {
        {"tenant_id", ev->tenant_id},       {"client_id", ev->client_id},
        {"request_id", ev->request_id},     {"message_type", ev->message_type},
        {"provider", ev->provider},         {"provider_message_id", ev->provider_message_id},
        {"error_code", ev->error_code},     {"error_message", ev->error_message},
        {"reason", ev->reason},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (!projector_utf8_valid(texts[i].value)) {
            seterr(errstr, errlen, texts[i].name, "is not valid UTF-8");
            return CMN_ERR_INVALID;
        }
    }
    return 0;
}

/* An empty optional string means "not given": stored as NULL. */
static const char *opt(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

int projector_status_batch_add(projector_status_batch_t *b, const cmn_status_event_t *ev, int32_t partition,
                               int64_t offset, char *errstr, size_t errlen)
{
    size_t saved[PROJECTOR_STATUS_NCOLS];
    int rc = 0;

    if (b == NULL || ev == NULL) {
        seterr(errstr, errlen, "event", "missing");
        return CMN_ERR_INVALID;
    }
    rc = projector_status_check(ev, 1, errstr, errlen);
    if (rc != 0)
        return rc;
    if (b->sealed) {
        /* params() closed every literal; reopen them to append. */
        for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++) {
            cmn_buf_t *col = &b->cols[i];
            col->len = b->n == 0 ? 0 : col->len - 1;
            if (col->data != NULL)
                col->data[col->len] = '\0';
        }
        b->sealed = 0;
    }
    for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++)
        saved[i] = b->cols[i].len;

    const char *tenant = opt(ev->tenant_id) != NULL ? ev->tenant_id : "default";
    const char *channel = ev->channel == CMN_CHANNEL_NONE ? NULL : cmn_channel_name(ev->channel);
    cmn_buf_t *c = b->cols;
    rc = pg_array_text(&c[PROJECTOR_COL_EVENT_ID], ev->event_id);
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_COMMUNICATION_ID], ev->communication_id);
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_TENANT_ID], tenant);
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_CLIENT_ID], opt(ev->client_id));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_REQUEST_ID], opt(ev->request_id));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_MESSAGE_TYPE], opt(ev->message_type));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_CHANNEL], opt(channel));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_STATUS], cmn_status_name(ev->status));
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_STATUS_RANK], cmn_status_rank(ev->status));
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_ATTEMPT], ev->attempt);
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_HOP], ev->hop);
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_PROVIDER], opt(ev->provider));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_PROVIDER_MESSAGE_ID], opt(ev->provider_message_id));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_ERROR_CODE], opt(ev->error_code));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_ERROR_MESSAGE], opt(ev->error_message));
    if (rc == 0)
        rc = pg_array_text(&c[PROJECTOR_COL_REASON], opt(ev->reason));
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_OCCURRED_MS], ev->occurred_at_ms);
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_KAFKA_PARTITION], partition);
    if (rc == 0)
        rc = pg_array_int(&c[PROJECTOR_COL_KAFKA_OFFSET], offset);
    if (rc != 0) {
        /* Out of memory halfway: cut every column back to where it was so
         * the literals stay aligned. */
        for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++) {
            c[i].len = saved[i];
            if (c[i].data != NULL)
                c[i].data[c[i].len] = '\0';
        }
        seterr(errstr, errlen, "event", "out of memory");
        return CMN_ERR_NOMEM;
    }
    b->n++;
    return 0;
}

int projector_status_batch_params(projector_status_batch_t *b, const char *values[PROJECTOR_STATUS_NCOLS])
{
    if (!b->sealed) {
        for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++) {
            int rc = pg_array_close(&b->cols[i]);
            if (rc != 0) {
                /* Undo the closes already done so the batch stays open. */
                for (size_t j = 0; j < i; j++) {
                    cmn_buf_t *col = &b->cols[j];
                    col->len = b->n == 0 ? 0 : col->len - 1;
                    col->data[col->len] = '\0';
                }
                return rc;
            }
        }
        b->sealed = 1;
    }
    for (size_t i = 0; i < PROJECTOR_STATUS_NCOLS; i++)
        values[i] = b->cols[i].data;
    return 0;
}

int projector_json_parse(const char *value, size_t len, const char *what, json_object **obj, char *errstr,
                         size_t errlen)
{
    int rc = 0;
    json_tokener *tok = NULL;
    json_object *root = NULL;

    *obj = NULL;
    if (value == NULL || len == 0) {
        if (errstr != NULL && errlen > 0)
            snprintf(errstr, errlen, "value: is empty (a %s JSON object is expected)", what);
        return CMN_ERR_PARSE;
    }
    if (len > INT32_MAX) {
        seterr(errstr, errlen, "value", "is too large");
        return CMN_ERR_PARSE;
    }
    tok = json_tokener_new();
    if (tok == NULL) {
        seterr(errstr, errlen, "value", "out of memory");
        return CMN_ERR_NOMEM;
    }
    root = json_tokener_parse_ex(tok, value, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (root == NULL || jerr != json_tokener_success) {
        if (errstr != NULL && errlen > 0)
            snprintf(errstr, errlen, "value: not JSON (%s)",
                     jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr));
        rc = CMN_ERR_PARSE;
        goto cleanup;
    }
    /* Anything after the object other than white space means the record is
     * not one JSON document. */
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
        if (value[i] != ' ' && value[i] != '\t' && value[i] != '\r' && value[i] != '\n') {
            seterr(errstr, errlen, "value", "has trailing data after the JSON object");
            rc = CMN_ERR_PARSE;
            goto cleanup;
        }
    }
    *obj = root;
    root = NULL;
cleanup:
    json_object_put(root);
    json_tokener_free(tok);
    return rc;
}

int projector_status_parse(const char *value, size_t len, json_object **obj, cmn_status_event_t *ev,
                           char *errstr, size_t errlen)
{
    json_object *root = NULL;
    int rc = projector_json_parse(value, len, "StatusEvent", &root, errstr, errlen);
    *obj = NULL;
    if (rc != 0)
        return rc;
    if (cmn_status_event_from_json(root, ev, errstr, errlen) != 0) {
        json_object_put(root);
        return CMN_ERR_INVALID;
    }
    *obj = root;
    return 0;
}

/* --------------------------------------------------------------- offsets */

int projector_offsets_note(projector_offsets_t *o, const char *topic, int32_t partition, int64_t offset)
{
    if (o == NULL || topic == NULL || strlen(topic) >= sizeof o->items[0].topic || offset < 0 || partition < 0)
        return CMN_ERR_INVALID;
    for (size_t i = 0; i < o->n; i++) {
        projector_offset_t *it = &o->items[i];
        if (it->partition == partition && strcmp(it->topic, topic) == 0) {
            if (offset + 1 > it->next_offset)
                it->next_offset = offset + 1;
            return 0;
        }
    }
    if (o->n == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 16;
        projector_offset_t *items = realloc(o->items, ncap * sizeof *items);
        if (items == NULL)
            return CMN_ERR_NOMEM;
        o->items = items;
        o->cap = ncap;
    }
    projector_offset_t *it = &o->items[o->n++];
    snprintf(it->topic, sizeof it->topic, "%s", topic);
    it->partition = partition;
    it->next_offset = offset + 1;
    return 0;
}

void projector_offsets_reset(projector_offsets_t *o)
{
    o->n = 0;
}

void projector_offsets_free(projector_offsets_t *o)
{
    free(o->items);
    o->items = NULL;
    o->n = o->cap = 0;
}

int projector_offsets_params(const projector_offsets_t *o, cmn_buf_t *topics, cmn_buf_t *partitions,
                             cmn_buf_t *offsets)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < o->n; i++) {
        rc = pg_array_text(topics, o->items[i].topic);
        if (rc == 0)
            rc = pg_array_int(partitions, o->items[i].partition);
        if (rc == 0)
            rc = pg_array_int(offsets, o->items[i].next_offset);
    }
    if (rc == 0)
        rc = pg_array_close(topics);
    if (rc == 0)
        rc = pg_array_close(partitions);
    if (rc == 0)
        rc = pg_array_close(offsets);
    return rc;
}

int projector_partitions_params(const char *const *topics, const int32_t *partitions, size_t n,
                                cmn_buf_t *topics_out, cmn_buf_t *partitions_out)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = pg_array_text(topics_out, topics[i]);
        if (rc == 0)
            rc = pg_array_int(partitions_out, partitions[i]);
    }
    if (rc == 0)
        rc = pg_array_close(topics_out);
    if (rc == 0)
        rc = pg_array_close(partitions_out);
    return rc;
}
