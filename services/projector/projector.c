/* projector.c - the projector's I/O: Kafka in, PostgreSQL out (see projector.h).
 *
 * Threads: the run loop owns the consumer, the producer's batches and the
 * PostgreSQL connection; on_assign runs inside the consumer's poll, on the
 * same thread, so the connection needs no lock. HTTP threads only read the
 * atomic readiness flag and the metrics. */
#include "projector.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/http.h"
#include "crm/kafka.h"
#include "crm/metrics.h"
#include "crm/pg.h"
#include "crm/signal.h"
#include "crm/time.h"
#include "crm/crypto.h"
#include "projector_batch.h"
#include "projector_inbound.h"
#include "projector_prefs.h"
#include "projector_receipts.h"

#define PROJECTOR_SERVICE "projector"
#define PROJECTOR_POLL_MS 500
/* Short connection attempts inside the loop keep the consumer polling (and
 * so in its group) while PostgreSQL is away. */
#define PROJECTOR_PG_RETRY_TIMEOUT_MS 2000
#define PROJECTOR_PG_START_TIMEOUT_MS 10000
/* How often an idle projector checks that PostgreSQL still answers, so
 * /readyz turns false even when no records arrive. */
#define PROJECTOR_PG_IDLE_CHECK_MS 5000
#define PROJECTOR_BACKOFF_FIRST_MS 200
#define PROJECTOR_BACKOFF_MAX_MS 5000
#define PROJECTOR_DLQ_TIMEOUT_MS 30000

/* ------------------------------------------------------------ configuration */

static const cmn_cfg_entry_t projector_cfg_table[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, offsetof(projector_config_t, kafka_brokers),
     "Kafka bootstrap servers (host:port, comma separated).", 0, 0},
    {"DATABASE_URL", CMN_CFG_STRING, NULL, 1, offsetof(projector_config_t, database_url),
     "PostgreSQL connection URL of the projections (postgresql://user:password@host:port/db).", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, offsetof(projector_config_t, http_bind),
     "Address of the metrics and health endpoints.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "9103", 0, offsetof(projector_config_t, http_port),
     "Port of the metrics and health endpoints (0 picks a free one).", 0, 65535},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, offsetof(projector_config_t, log_level),
     "debug, info, warn or error.", 0, 0},
    {"PROJECTOR_BATCH_SIZE", CMN_CFG_INT, "1000", 0, offsetof(projector_config_t, batch_size),
     "Most records applied in one PostgreSQL transaction.", 1, 100000},
    {"PROJECTOR_GROUP_ID", CMN_CFG_STRING, "crm-projector", 0, offsetof(projector_config_t, group_id),
     "Kafka consumer group, also the key of the offsets stored in PostgreSQL.", 0, 0},
    {"KAFKA_SESSION_TIMEOUT_MS", CMN_CFG_INT, "45000", 0, offsetof(projector_config_t, session_timeout_ms),
     "Kafka consumer session timeout: how soon partitions of a crashed replica move to the others.", 3000,
     3600000},
    {"CRM_DATA_KEY", CMN_CFG_STRING, "", 1, offsetof(projector_config_t, data_key),
     "Key (32+ characters) hashing phone numbers and sealing inbound messages; empty: crm.inbound is not consumed.",
     0, 0},
};

const cmn_cfg_entry_t *projector_config_table(size_t *n)
{
    *n = sizeof projector_cfg_table / sizeof projector_cfg_table[0];
    return projector_cfg_table;
}

int projector_config_check(const projector_config_t *cfg, char *errstr, size_t errlen)
{
    /* A malformed URL would otherwise look like an unreachable database
     * forever; say so at start. libpq's message may quote the URL, which can
     * hold a password, so it is not repeated. */
    PQconninfoOption *opts = PQconninfoParse(cfg->database_url != NULL ? cfg->database_url : "", NULL);
    if (opts == NULL || cfg->database_url == NULL || cfg->database_url[0] == '\0') {
        PQconninfoFree(opts);
        snprintf(errstr, errlen, "DATABASE_URL: not a valid PostgreSQL connection URL");
        return CMN_ERR_CONFIG;
    }
    PQconninfoFree(opts);
    if (cfg->group_id == NULL || cfg->group_id[0] == '\0') {
        snprintf(errstr, errlen, "PROJECTOR_GROUP_ID: must not be empty");
        return CMN_ERR_CONFIG;
    }
    if (cfg->data_key != NULL && cfg->data_key[0] != '\0' && strlen(cfg->data_key) < CMN_DATA_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_DATA_KEY: must be at least %d characters (e.g. openssl rand -hex 32)",
                 CMN_DATA_KEY_MIN);
        return CMN_ERR_CONFIG;
    }
    return 0;
}

/* ------------------------------------------------------------------ context */

struct projector {
    const projector_config_t *cfg; /* borrowed */
    const cmn_log_t *log;          /* borrowed */
    cmn_metrics_t *metrics;
    cmn_counter_t *events_applied, *records, *batches, *dlq;
    cmn_histogram_t *batch_seconds;
    cmn_gauge_t *pg_up;
    cmn_http_server_t *http;
    cmn_kafka_producer_t *producer;
    cmn_kafka_consumer_t *consumer;
    PGconn *pg;                 /* NULL while PostgreSQL is unreachable */
    atomic_int pg_ready;        /* what /readyz answers */
    int64_t last_pg_ok_ms;      /* monotonic time of the last successful statement */
    char session_prop[64], heartbeat_prop[64];
    const char *kafka_extra[3];
    /* Handler state, one per consumed topic. */
    projector_status_batch_t status;
    projector_status_batch_t matched;  /* receipts tied to their communication during the flush */
    projector_receipts_t receipts;
    projector_inbound_batch_t inbound;
    projector_prefs_batch_t prefs;
    projector_offsets_t offsets;
};

/* A consumed topic: stage() validates one record and stages it, or returns
 * CMN_ERR_INVALID / CMN_ERR_PARSE with the reason (the record goes to the
 * DLQ); flush() writes what was staged inside the batch's transaction and
 * adds the number of rows that were new to *applied; reset() empties it. */
typedef struct projector_handler {
    const char *topic;
    int needs_data_key; /* 1: only consumed when CRM_DATA_KEY is set */
    int (*stage)(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen);
    int (*flush)(projector_t *p, uint64_t *applied, char *errstr, size_t errlen);
    void (*reset)(projector_t *p);
} projector_handler_t;

static int status_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen);
static int status_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen);
static void status_reset(projector_t *p);
static int prefs_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen);
static int prefs_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen);
static void prefs_reset(projector_t *p);
static int inbound_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen);
static int inbound_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen);
static void inbound_reset(projector_t *p);

/* Flushed in this order inside the batch's transaction. */
static const projector_handler_t projector_handlers[] = {
    {CMN_TOPIC_STATUS, 0, status_stage, status_flush, status_reset},
    {CMN_TOPIC_INBOUND, 1, inbound_stage, inbound_flush, inbound_reset},
    {CMN_TOPIC_PREFERENCES, 0, prefs_stage, prefs_flush, prefs_reset},
};
#define PROJECTOR_NHANDLERS (sizeof projector_handlers / sizeof projector_handlers[0])

static const projector_handler_t *projector_handler_for(const char *topic)
{
    for (size_t i = 0; i < PROJECTOR_NHANDLERS; i++) {
        if (topic != NULL && strcmp(projector_handlers[i].topic, topic) == 0)
            return &projector_handlers[i];
    }
    return NULL;
}

/* ------------------------------------------------------------- PostgreSQL */

/* libpq messages span lines ("server closed the connection
 * unexpectedly\n\tThis probably means..."); one line reads better in a log. */
static void projector_one_line(char *s)
{
    size_t w = 0;
    for (size_t r = 0; s[r] != '\0'; r++) {
        int space = s[r] == '\n' || s[r] == '\t' || s[r] == '\r' || s[r] == ' ';
        if (space && (w == 0 || s[w - 1] == ' '))
            continue;
        s[w++] = space ? ' ' : s[r];
    }
    while (w > 0 && s[w - 1] == ' ')
        w--;
    s[w] = '\0';
}

static void projector_set_pg_ready(projector_t *p, int ready)
{
    int was = atomic_exchange(&p->pg_ready, ready);
    cmn_gauge_set(p->pg_up, ready ? 1.0 : 0.0);
    if (ready)
        p->last_pg_ok_ms = cmn_monotonic_ms();
    if (was != ready) {
        if (ready)
            cmn_log_info(p->log, NULL, "PostgreSQL reachable");
        else
            cmn_log_warn(p->log, NULL, "PostgreSQL unreachable; not ready until it is back");
    }
}

/* Makes the connection usable (reconnecting if needed). */
static int projector_pg_ensure(projector_t *p, int timeout_ms)
{
    char err[512];
    int rc = cmn_pg_ensure(&p->pg, p->cfg->database_url, timeout_ms, err, sizeof err);
    if (rc != 0) {
        projector_set_pg_ready(p, 0);
        projector_one_line(err);
        cmn_logkv(p->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL}, "PostgreSQL connection failed");
    }
    return rc;
}

static int projector_ready(void *ctx)
{
    projector_t *p = ctx;
    return atomic_load(&p->pg_ready);
}

/* -------------------------------------------------------- crm.status handler */

static int status_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen)
{
    json_object *obj = NULL;
    cmn_status_event_t ev;
    int rc = projector_status_parse(m->value, m->value_len, &obj, &ev, reason, reasonlen);
    if (rc == 0 && ev.communication_id[0] == '\0') {
        /* A provider receipt that names only the provider's message id. */
        rc = projector_receipts_add(&p->receipts, &ev, m->partition, m->offset, reason, reasonlen);
    } else if (rc == 0) {
        rc = projector_status_batch_add(&p->status, &ev, m->partition, m->offset, reason, reasonlen);
        /* Receipts parked earlier for this message may now be matched. */
        if (rc == 0 && ev.status == CMN_STATUS_SENT)
            rc = projector_receipts_note_pmid(&p->receipts, ev.provider_message_id);
    }
    /* The batches copied every value, so the parsed document can go now. */
    json_object_put(obj);
    return rc;
}

/* Applies a staged status batch with the one statement. */
static int status_apply(projector_t *p, projector_status_batch_t *b, uint64_t *applied, char *errstr,
                        size_t errlen)
{
    const char *values[PROJECTOR_STATUS_NCOLS];
    int rc = 0;
    PGresult *res = NULL;

    if (b->n == 0)
        return 0;
    rc = projector_status_batch_params(b, values);
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory building the status batch");
        return rc;
    }
    res = PQexecParams(p->pg, PROJECTOR_STATUS_APPLY_SQL, PROJECTOR_STATUS_NCOLS, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(errstr, errlen, "applying status events: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    *applied += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    cmn_logf(p->log, CMN_LOG_DEBUG, NULL, "status batch: %zu staged, %s new events, %s communications", b->n,
             PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
cleanup:
    PQclear(res);
    return rc;
}

/* Turns the match statement's rows into status events in p->matched and
 * their event ids into the array literal ids. */
static int receipts_stage_matches(projector_t *p, PGresult *res, cmn_buf_t *ids, char *errstr, size_t errlen)
{
    int rc = 0;
    projector_status_batch_reset(&p->matched);
    for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
        const char *vals[PROJECTOR_RESOLVED_NCOLS];
        cmn_status_event_t ev;
        char why[256] = "";
        for (int c = 0; c < PROJECTOR_RESOLVED_NCOLS; c++)
            vals[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
        const char *part = vals[PROJECTOR_MCOL_KAFKA_PARTITION], *off = vals[PROJECTOR_MCOL_KAFKA_OFFSET];
        rc = projector_receipts_event(vals, &ev);
        if (rc == 0)
            rc = projector_status_batch_add(&p->matched, &ev, part != NULL ? (int32_t)strtol(part, NULL, 10) : 0,
                                            off != NULL ? strtoll(off, NULL, 10) : 0, why, sizeof why);
        if (rc == 0)
            rc = projector_pg_array_text(ids, ev.event_id);
        /* Every parked row passed the same checks when it was parked, so a
         * failure here is memory or a hand-edited row. */
        if (rc != 0)
            snprintf(errstr, errlen, "applying a matched receipt: %s %s", cmn_strerror(rc), why);
    }
    if (rc == 0)
        rc = projector_pg_array_close(ids);
    return rc;
}

/* Parks the batch's receipts, then applies every parked receipt whose
 * `sent` event is now stored, and forgets those (projector_receipts.h). */
static int receipts_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen)
{
    const char *values[PROJECTOR_RECEIPT_NCOLS];
    const char *pmids = NULL, *ids = NULL;
    cmn_buf_t matched_ids = CMN_BUF_INIT;
    PGresult *res = NULL;
    int rc = 0;

    if (p->receipts.npmids == 0)
        return 0;
    rc = projector_receipts_params(&p->receipts, values, &pmids);
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory building the receipts batch");
        return rc;
    }
    if (p->receipts.n > 0) {
        res = PQexecParams(p->pg, PROJECTOR_RECEIPTS_PARK_SQL, PROJECTOR_RECEIPT_NCOLS, NULL, values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(errstr, errlen, "parking receipts: %s", PQresultErrorMessage(res));
            rc = CMN_ERR_DB;
            goto cleanup;
        }
        PQclear(res);
    }
    res = PQexecParams(p->pg, PROJECTOR_RECEIPTS_MATCH_SQL, 1, NULL, &pmids, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != PROJECTOR_RESOLVED_NCOLS) {
        snprintf(errstr, errlen, "matching receipts: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    rc = receipts_stage_matches(p, res, &matched_ids, errstr, errlen);
    if (rc != 0 || p->matched.n == 0)
        goto cleanup;
    rc = status_apply(p, &p->matched, applied, errstr, errlen);
    if (rc != 0)
        goto cleanup;
    PQclear(res);
    ids = matched_ids.data;
    res = PQexecParams(p->pg, PROJECTOR_RECEIPTS_DELETE_SQL, 1, NULL, &ids, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errlen, "deleting matched receipts: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    cmn_logf(p->log, CMN_LOG_DEBUG, NULL, "receipts: %zu parked, %zu matched", p->receipts.n, p->matched.n);
cleanup:
    PQclear(res);
    cmn_buf_free(&matched_ids);
    return rc;
}

static int status_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen)
{
    /* Ordinary events first, so a `sent` of this batch is stored before the
     * receipts waiting for it are matched. */
    int rc = status_apply(p, &p->status, applied, errstr, errlen);
    if (rc == 0)
        rc = receipts_flush(p, applied, errstr, errlen);
    return rc;
}

static void status_reset(projector_t *p)
{
    projector_status_batch_reset(&p->status);
    projector_status_batch_reset(&p->matched);
    projector_receipts_reset(&p->receipts);
}

/* ------------------------------------------------------- crm.inbound handler */

static int inbound_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen)
{
    return projector_inbound_add(&p->inbound, p->cfg->data_key, m->value, m->value_len, m->partition, m->offset,
                                 reason, reasonlen);
}

static int inbound_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen)
{
    const char *values[PROJECTOR_INBOUND_NCOLS];
    PGresult *res = NULL;
    int rc = 0;

    if (p->inbound.n == 0)
        return 0;
    rc = projector_inbound_params(&p->inbound, values);
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory building the inbound batch");
        return rc;
    }
    res = PQexecParams(p->pg, PROJECTOR_INBOUND_APPLY_SQL, PROJECTOR_INBOUND_NCOLS, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(errstr, errlen, "applying inbound messages: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    *applied += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    cmn_logf(p->log, CMN_LOG_DEBUG, NULL,
             "inbound batch: %zu staged, %s new messages, %s conversations, %s new contacts", p->inbound.n,
             PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
cleanup:
    PQclear(res);
    return rc;
}

static void inbound_reset(projector_t *p)
{
    projector_inbound_reset(&p->inbound);
}

/* --------------------------------------------------- crm.preferences handler */

static int prefs_stage(projector_t *p, const cmn_kafka_message_t *m, char *reason, size_t reasonlen)
{
    return projector_prefs_stage(&p->prefs, m->key, m->key_len, m->value, m->value_len, m->partition, m->offset,
                                 reason, reasonlen);
}

/* Runs one of the preferences statements and adds its affected rows. */
static int prefs_exec(projector_t *p, const char *sql, int nparams, const char *const *values, uint64_t *applied,
                      char *errstr, size_t errlen)
{
    PGresult *res = PQexecParams(p->pg, sql, nparams, NULL, values, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errlen, "applying preferences: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
    } else {
        *applied += strtoull(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return rc;
}

static int prefs_flush(projector_t *p, uint64_t *applied, char *errstr, size_t errlen)
{
    cmn_buf_t del[2] = {CMN_BUF_INIT, CMN_BUF_INIT};
    cmn_buf_t up[6] = {CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT, CMN_BUF_INIT};
    size_t ndel = 0, nup = 0;
    int rc = 0;

    if (p->prefs.n == 0)
        return 0;
    rc = projector_prefs_delete_params(&p->prefs, &del[0], &del[1], &ndel);
    if (rc == 0)
        rc = projector_prefs_upsert_params(&p->prefs, up, &nup);
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory building the preferences batch");
        goto cleanup;
    }
    /* Deletes first: a snapshot that follows a tombstone in the batch must
     * land after the erase, not be erased by it. */
    if (ndel > 0) {
        const char *values[2] = {del[0].data, del[1].data};
        rc = prefs_exec(p, PROJECTOR_PREFS_DELETE_SQL, 2, values, applied, errstr, errlen);
    }
    if (rc == 0 && nup > 0) {
        const char *values[6] = {up[0].data, up[1].data, up[2].data, up[3].data, up[4].data, up[5].data};
        rc = prefs_exec(p, PROJECTOR_PREFS_UPSERT_SQL, 6, values, applied, errstr, errlen);
    }
    if (rc == 0)
        cmn_logf(p->log, CMN_LOG_DEBUG, NULL, "preferences batch: %zu records, %zu erased, %zu snapshots",
                 p->prefs.records, ndel, nup);
cleanup:
    for (size_t i = 0; i < 2; i++)
        cmn_buf_free(&del[i]);
    for (size_t i = 0; i < 6; i++)
        cmn_buf_free(&up[i]);
    return rc;
}

static void prefs_reset(projector_t *p)
{
    projector_prefs_reset(&p->prefs);
}

/* ------------------------------------------------------------ consumer side */

/* Fills offsets[] from consumer_offsets for the given partitions and counts
 * the ones found. Returns 0 or a negative code (offsets then untouched or
 * partly filled with valid stored values). */
static int projector_read_offsets(projector_t *p, const char *const *topics, const int32_t *partitions,
                                  int64_t *offsets, size_t n, int *found)
{
    int rc = 0;
    cmn_buf_t tbuf = CMN_BUF_INIT, pbuf = CMN_BUF_INIT;
    PGresult *res = NULL;

    rc = projector_pg_ensure(p, PROJECTOR_PG_RETRY_TIMEOUT_MS);
    if (rc != 0)
        goto cleanup;
    rc = projector_partitions_params(topics, partitions, n, &tbuf, &pbuf);
    if (rc != 0)
        goto cleanup;
    const char *values[3] = {p->cfg->group_id, tbuf.data, pbuf.data};
    res = PQexecParams(p->pg, PROJECTOR_OFFSETS_SELECT_SQL, 3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char err[512];
        snprintf(err, sizeof err, "%s", PQresultErrorMessage(res));
        projector_one_line(err);
        cmn_logkv(p->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL}, "cannot read stored offsets");
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        long idx = strtol(PQgetvalue(res, r, 0), NULL, 10);
        if (idx < 1 || (size_t)idx > n)
            continue;
        offsets[idx - 1] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        (*found)++;
        char part[16], off[24];
        snprintf(part, sizeof part, "%" PRId32, partitions[idx - 1]);
        snprintf(off, sizeof off, "%" PRId64, offsets[idx - 1]);
        cmn_logkv(p->log, CMN_LOG_DEBUG, NULL,
                  (const char *[]){"topic", topics[idx - 1], "partition", part, "offset", off, NULL},
                  "seeking to the offset stored in PostgreSQL");
    }
cleanup:
    PQclear(res);
    cmn_buf_free(&tbuf);
    cmn_buf_free(&pbuf);
    return rc;
}

/* Seeks newly assigned partitions to the offsets stored with the projections.
 * When PostgreSQL cannot be asked, the partitions start from Kafka's
 * committed offsets instead: never later than the stored ones (Kafka is
 * committed after PostgreSQL), and replayed events are deduplicated by id,
 * so this only costs re-reading. Never fails the consumer for that reason. */
static int projector_on_assign(void *ctx, const char *const *topics, const int32_t *partitions, int64_t *offsets,
                               size_t n)
{
    projector_t *p = ctx;
    int found = 0;
    if (projector_read_offsets(p, topics, partitions, offsets, n, &found) != 0) {
        for (size_t i = 0; i < n; i++)
            offsets[i] = -1;
        cmn_logf(p->log, CMN_LOG_WARN, NULL,
                 "assigned %zu partitions without stored offsets: starting from Kafka's committed offsets", n);
        return 0;
    }
    projector_set_pg_ready(p, 1);
    cmn_logf(p->log, CMN_LOG_INFO, NULL, "assigned %zu partitions, %d with offsets stored in PostgreSQL", n, found);
    return 0;
}

/* Writes the staged records and the batch's offsets in one transaction. */
static int projector_write(projector_t *p, uint64_t *applied, char *errstr, size_t errlen)
{
    int rc = 0;
    cmn_buf_t topics = CMN_BUF_INIT, parts = CMN_BUF_INIT, offs = CMN_BUF_INIT;
    PGresult *res = NULL;

    rc = cmn_pg_exec(p->pg, "BEGIN", errstr, errlen);
    if (rc != 0)
        goto cleanup;
    for (size_t i = 0; i < PROJECTOR_NHANDLERS; i++) {
        rc = projector_handlers[i].flush(p, applied, errstr, errlen);
        if (rc != 0)
            goto cleanup;
    }
    rc = projector_offsets_params(&p->offsets, &topics, &parts, &offs);
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory building offsets");
        goto cleanup;
    }
    const char *values[4] = {p->cfg->group_id, topics.data, parts.data, offs.data};
    res = PQexecParams(p->pg, PROJECTOR_OFFSETS_UPSERT_SQL, 4, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errlen, "storing offsets: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    rc = cmn_pg_exec(p->pg, "COMMIT", errstr, errlen);
cleanup:
    if (rc != 0 && PQstatus(p->pg) == CONNECTION_OK && PQtransactionStatus(p->pg) != PQTRANS_IDLE) {
        char ignored[256];
        cmn_pg_exec(p->pg, "ROLLBACK", ignored, sizeof ignored);
    }
    PQclear(res);
    cmn_buf_free(&topics);
    cmn_buf_free(&parts);
    cmn_buf_free(&offs);
    return rc;
}

/* Applies one polled batch. Returns 0 when it is durable in PostgreSQL (the
 * Kafka commit after that is best effort), or a negative code when nothing
 * of it may be considered done and it must be rewound. */
static int projector_apply_batch(projector_t *p, cmn_kafka_message_t *msgs, int n)
{
    int rc = 0;
    int ndlq = 0;
    uint64_t applied = 0;
    char err[1024] = "";
    cmn_kafka_batch_t dlq;
    int dlq_open = 0;
    int64_t started = cmn_monotonic_ms();

    for (size_t i = 0; i < PROJECTOR_NHANDLERS; i++)
        projector_handlers[i].reset(p);
    projector_offsets_reset(&p->offsets);
    /* Reach PostgreSQL before producing anything to the DLQ: while it is
     * down the batch is retried, and each retry would copy the bad records
     * again. */
    rc = projector_pg_ensure(p, PROJECTOR_PG_RETRY_TIMEOUT_MS);
    if (rc != 0) {
        snprintf(err, sizeof err, "PostgreSQL unreachable");
        goto cleanup;
    }
    rc = cmn_kafka_batch_init(&dlq);
    if (rc != 0)
        goto cleanup;
    dlq_open = 1;

    for (int i = 0; i < n; i++) {
        const cmn_kafka_message_t *m = &msgs[i];
        char reason[512] = "";
        rc = projector_offsets_note(&p->offsets, m->topic, m->partition, m->offset);
        if (rc != 0)
            goto cleanup;
        const projector_handler_t *h = projector_handler_for(m->topic);
        int src = h != NULL ? h->stage(p, m, reason, sizeof reason) : CMN_ERR_INVALID;
        if (h == NULL)
            snprintf(reason, sizeof reason, "topic: the projector has no handler for %s", m->topic);
        if (src == CMN_ERR_NOMEM) {
            rc = src;
            goto cleanup;
        }
        if (src == 0)
            continue;
        /* A record that can never be applied must not hold up its partition:
         * it goes to the DLQ with the reason and is skipped. */
        char part[16], off[24];
        snprintf(part, sizeof part, "%" PRId32, m->partition);
        snprintf(off, sizeof off, "%" PRId64, m->offset);
        cmn_logkv(p->log, CMN_LOG_WARN, NULL,
                  (const char *[]){"topic", m->topic, "partition", part, "offset", off, "reason", reason, NULL},
                  "invalid record sent to the DLQ");
        rc = cmn_kafka_dlq_in_batch(p->producer, &dlq, m, PROJECTOR_SERVICE, reason);
        if (rc != 0) {
            snprintf(err, sizeof err, "cannot queue a DLQ record: %s", cmn_strerror(rc));
            goto cleanup;
        }
        ndlq++;
    }

    if (ndlq > 0) {
        rc = cmn_kafka_batch_wait(&dlq, PROJECTOR_DLQ_TIMEOUT_MS, err, sizeof err);
        if (rc != 0)
            goto cleanup;
    }
    rc = projector_write(p, &applied, err, sizeof err);
    if (rc != 0) {
        if (PQstatus(p->pg) != CONNECTION_OK)
            projector_set_pg_ready(p, 0);
        goto cleanup;
    }
    projector_set_pg_ready(p, 1);
    cmn_counter_add(p->events_applied, applied);
    cmn_counter_add(p->records, (uint64_t)n);
    cmn_counter_add(p->batches, 1);
    cmn_counter_add(p->dlq, (uint64_t)ndlq);
    cmn_histogram_observe(p->batch_seconds, (double)(cmn_monotonic_ms() - started) / 1000.0);

    /* PostgreSQL holds the truth; committing to Kafka too keeps the group's
     * lag visible to operators and autoscalers. A failure here is harmless. */
    int crc = cmn_kafka_consumer_commit_batch(p->consumer);
    if (crc != 0)
        cmn_logkv(p->log, CMN_LOG_WARN, NULL, (const char *[]){"error", cmn_strerror(crc), NULL},
                  "Kafka offset commit failed (offsets are safe in PostgreSQL)");
cleanup:
    if (rc != 0) {
        projector_one_line(err);
        cmn_logkv(p->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err[0] ? err : cmn_strerror(rc), NULL},
                  "batch not applied; it will be retried");
    }
    if (dlq_open) {
        /* Wait for what was queued even on failure so the batch's handle can
         * be released safely; the outcome no longer matters then. */
        if (rc != 0 && ndlq > 0) {
            char ignored[256];
            cmn_kafka_batch_wait(&dlq, PROJECTOR_DLQ_TIMEOUT_MS, ignored, sizeof ignored);
        }
        cmn_kafka_batch_destroy(&dlq);
    }
    return rc;
}

/* Sleeps up to ms, in slices, returning early when a stop is requested. */
static void projector_sleep(int64_t ms)
{
    while (ms > 0 && !cmn_stop_requested) {
        int64_t slice = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

/* While idle: check now and then that PostgreSQL still answers, and retry
 * the connection when it did not, so readiness follows the database. */
static void projector_idle(projector_t *p)
{
    int64_t now = cmn_monotonic_ms();
    char err[256];
    if (atomic_load(&p->pg_ready) && now - p->last_pg_ok_ms < PROJECTOR_PG_IDLE_CHECK_MS)
        return;
    if (projector_pg_ensure(p, PROJECTOR_PG_RETRY_TIMEOUT_MS) != 0)
        return;
    if (cmn_pg_exec(p->pg, "SELECT 1", err, sizeof err) == 0) {
        projector_set_pg_ready(p, 1);
    } else {
        projector_set_pg_ready(p, 0);
        /* The next ensure notices the broken session and reconnects. */
    }
}

int projector_run(projector_t *p)
{
    int64_t backoff = 0;
    cmn_log_info(p->log, NULL, "projector running");
    while (!cmn_stop_requested) {
        cmn_kafka_message_t *msgs = NULL;
        int n = cmn_kafka_consumer_poll_batch(p->consumer, (int)p->cfg->batch_size, PROJECTOR_POLL_MS, &msgs);
        if (n < 0) {
            if (n != CMN_ERR_NOMEM) {
                cmn_logkv(p->log, CMN_LOG_ERROR, NULL, (const char *[]){"error", cmn_strerror(n), NULL},
                          "the Kafka consumer failed; stopping");
                return n;
            }
            projector_sleep(PROJECTOR_BACKOFF_FIRST_MS);
            continue;
        }
        if (n == 0) {
            projector_idle(p);
            continue;
        }
        if (projector_apply_batch(p, msgs, n) == 0) {
            backoff = 0;
            continue;
        }
        /* Nothing of the batch counts as done: hand it back to the consumer
         * and retry after a pause (PostgreSQL restarting, DLQ unreachable). */
        int rrc = cmn_kafka_consumer_rewind_batch(p->consumer);
        if (rrc != 0)
            cmn_logkv(p->log, CMN_LOG_ERROR, NULL, (const char *[]){"error", cmn_strerror(rrc), NULL},
                      "cannot rewind the batch");
        backoff = backoff == 0 ? PROJECTOR_BACKOFF_FIRST_MS : backoff * 2;
        if (backoff > PROJECTOR_BACKOFF_MAX_MS)
            backoff = PROJECTOR_BACKOFF_MAX_MS;
        projector_sleep(backoff);
    }
    cmn_log_info(p->log, NULL, "stop requested; leaving the consumer group");
    return 0;
}

/* ------------------------------------------------------------- life cycle */

projector_t *projector_new(const projector_config_t *cfg, const cmn_log_t *log, char *errstr, size_t errlen)
{
    projector_t *p = NULL;
    char err[512] = "";
    int ok = 0;

    if (cfg == NULL || log == NULL) {
        snprintf(errstr, errlen, "projector: configuration and log are required");
        return NULL;
    }
    if (projector_config_check(cfg, errstr, errlen) != 0)
        return NULL;

    p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->log = log;
    atomic_init(&p->pg_ready, 0);
    projector_status_batch_init(&p->status);
    projector_status_batch_init(&p->matched);

    p->metrics = cmn_metrics_new();
    if (p->metrics == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    p->events_applied = cmn_metrics_counter(p->metrics, "projector_events_applied_total",
                                            "Events newly written to PostgreSQL (duplicates excluded).", NULL);
    p->records = cmn_metrics_counter(p->metrics, "projector_records_total",
                                     "Records consumed in committed batches, invalid ones included.", NULL);
    p->batches = cmn_metrics_counter(p->metrics, "projector_batches_total",
                                     "Batches committed to PostgreSQL.", NULL);
    p->dlq = cmn_metrics_counter(p->metrics, "projector_dlq_total", "Invalid records sent to crm.dlq.", NULL);
    p->batch_seconds = cmn_metrics_histogram(p->metrics, "projector_batch_seconds",
                                             "Time to apply one batch, from poll to PostgreSQL commit.", NULL,
                                             CMN_METRICS_LATENCY_BUCKETS, CMN_METRICS_LATENCY_BUCKETS_N);
    p->pg_up = cmn_metrics_gauge(p->metrics, "projector_postgres_up", "1 while PostgreSQL answers.", NULL);
    if (p->events_applied == NULL || p->records == NULL || p->batches == NULL || p->dlq == NULL ||
        p->batch_seconds == NULL || p->pg_up == NULL) {
        snprintf(errstr, errlen, "cannot register metrics");
        goto cleanup;
    }

    /* HTTP first, so /healthz answers (and /readyz says no) while the
     * database is still being waited for. */
    cmn_http_config_t hc = {
        .bind_address = cfg->http_bind,
        .port = (int)cfg->http_port,
        .threads = 2,
        .max_body_bytes = 64 * 1024,
        .max_header_bytes = 16 * 1024,
        .timeout_seconds = 30,
        .handler = NULL,
        .ready = projector_ready,
        .ctx = p,
        .metrics = p->metrics,
        .log = log,
    };
    p->http = cmn_http_server_new(&hc, err, sizeof err);
    if (p->http == NULL) {
        snprintf(errstr, errlen, "HTTP server on %s:%ld: %s", cfg->http_bind, cfg->http_port, err);
        goto cleanup;
    }

    p->pg = cmn_pg_connect(cfg->database_url, PROJECTOR_PG_START_TIMEOUT_MS, err, sizeof err);
    if (p->pg != NULL)
        projector_set_pg_ready(p, 1);
    else
        cmn_logkv(log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL},
                  "PostgreSQL not reachable at start; retrying in the background");

    snprintf(p->session_prop, sizeof p->session_prop, "session.timeout.ms=%ld", cfg->session_timeout_ms);
    snprintf(p->heartbeat_prop, sizeof p->heartbeat_prop, "heartbeat.interval.ms=%ld", cfg->session_timeout_ms / 3);
    p->kafka_extra[0] = p->session_prop;
    p->kafka_extra[1] = p->heartbeat_prop;
    p->kafka_extra[2] = NULL;
    cmn_kafka_config_t kc = {
        .brokers = cfg->kafka_brokers,
        .client_id = "crm-projector",
        .group_id = cfg->group_id,
        .extra = p->kafka_extra,
        .log = log,
        .metrics = p->metrics,
    };
    /* The session settings are the consumer's; the producer would warn. */
    cmn_kafka_config_t pc = kc;
    pc.extra = NULL;
    p->producer = cmn_kafka_producer_new(&pc, err, sizeof err);
    if (p->producer == NULL) {
        snprintf(errstr, errlen, "Kafka producer: %s", err);
        goto cleanup;
    }
    const char *topics[PROJECTOR_NHANDLERS + 1];
    size_t ntopics = 0;
    int have_key = cfg->data_key != NULL && cfg->data_key[0] != '\0';
    for (size_t i = 0; i < PROJECTOR_NHANDLERS; i++) {
        /* Without the key inbound messages could only be stored in clear,
         * which they never are: they wait on their topic instead (the
         * group's lag shows it) until the key is configured. */
        if (projector_handlers[i].needs_data_key && !have_key) {
            cmn_logkv(log, CMN_LOG_WARN, NULL, (const char *[]){"topic", projector_handlers[i].topic, NULL},
                      "CRM_DATA_KEY is not set: not consuming this topic");
            continue;
        }
        topics[ntopics++] = projector_handlers[i].topic;
    }
    topics[ntopics] = NULL;
    cmn_kafka_consumer_opts_t co = {
        .topics = topics,
        .auto_offset_reset = "earliest",
        .on_assign = projector_on_assign,
        .on_revoke = NULL,
        .ctx = p,
    };
    p->consumer = cmn_kafka_consumer_new(&kc, &co, err, sizeof err);
    if (p->consumer == NULL) {
        snprintf(errstr, errlen, "Kafka consumer: %s", err);
        goto cleanup;
    }
    cmn_logf(log, CMN_LOG_INFO, NULL, "projector started: group %s, batch size %ld, metrics on port %d",
             cfg->group_id, cfg->batch_size, cmn_http_server_port(p->http));
    ok = 1;
cleanup:
    if (!ok) {
        projector_destroy(p);
        p = NULL;
    }
    return p;
}

void projector_destroy(projector_t *p)
{
    if (p == NULL)
        return;
    /* Consumer first: leaving the group hands the partitions to the other
     * replicas at once. */
    cmn_kafka_consumer_destroy(p->consumer);
    cmn_http_server_destroy(p->http);
    cmn_kafka_producer_destroy(p->producer);
    PQfinish(p->pg);
    projector_status_batch_free(&p->status);
    projector_status_batch_free(&p->matched);
    projector_receipts_free(&p->receipts);
    projector_inbound_free(&p->inbound);
    projector_prefs_free(&p->prefs);
    projector_offsets_free(&p->offsets);
    cmn_metrics_destroy(p->metrics);
    free(p);
}
