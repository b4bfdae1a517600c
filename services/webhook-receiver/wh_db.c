/* wh_db.c - PostgreSQL pool and queries of the webhook receiver. */
#include "wh_db.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/pg.h"

struct wh_db {
    pthread_mutex_t mu;
    pthread_cond_t freed; /* signalled whenever a slot is given back */
    char *url;            /* owned */
    size_t size;
    int timeout_ms;
    PGconn **conns;       /* owned; NULL until first used */
    unsigned char *busy;  /* 1 while lent out */
};

wh_db_t *wh_db_new(const char *url, size_t size, int timeout_ms, char *errstr, size_t errlen)
{
    wh_db_t *db = NULL;
    pthread_condattr_t ca;
    if (url == NULL || url[0] == '\0' || size == 0) {
        snprintf(errstr, errlen, "a PostgreSQL URL and at least one connection are required");
        return NULL;
    }
    db = calloc(1, sizeof *db);
    if (db == NULL)
        goto nomem;
    db->url = strdup(url);
    db->conns = calloc(size, sizeof *db->conns);
    db->busy = calloc(size, 1);
    if (db->url == NULL || db->conns == NULL || db->busy == NULL)
        goto nomem;
    db->size = size;
    db->timeout_ms = timeout_ms;
    /* Timed waits on the monotonic clock: a wall-clock step must not
     * stretch a webhook's wait. */
    if (pthread_condattr_init(&ca) != 0)
        goto nomem;
    int bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&db->freed, &ca) != 0;
    pthread_condattr_destroy(&ca);
    if (bad)
        goto nomem;
    if (pthread_mutex_init(&db->mu, NULL) != 0) {
        pthread_cond_destroy(&db->freed);
        goto nomem;
    }
    return db;
nomem:
    if (db != NULL) {
        free(db->url);
        free(db->conns);
        free(db->busy);
        free(db);
    }
    snprintf(errstr, errlen, "out of memory");
    return NULL;
}

void wh_db_destroy(wh_db_t *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->size; i++) {
        if (db->conns[i] != NULL)
            PQfinish(db->conns[i]);
    }
    pthread_cond_destroy(&db->freed);
    pthread_mutex_destroy(&db->mu);
    free(db->url);
    free(db->conns);
    free(db->busy);
    free(db);
}

static void release(wh_db_t *db, size_t slot)
{
    pthread_mutex_lock(&db->mu);
    db->busy[slot] = 0;
    pthread_cond_signal(&db->freed);
    pthread_mutex_unlock(&db->mu);
}

/* Borrows a connected slot into *slot. */
static int acquire(wh_db_t *db, size_t *slot, char *errstr, size_t errlen)
{
    struct timespec deadline;
    int found = 0;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += db->timeout_ms / 1000;
    deadline.tv_nsec += (long)(db->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&db->mu);
    for (;;) {
        /* A slot already connected first: opening one costs a round trip. */
        for (int pass = 0; pass < 2 && !found; pass++) {
            for (size_t i = 0; i < db->size && !found; i++) {
                if (!db->busy[i] && (pass == 1 || db->conns[i] != NULL)) {
                    *slot = i;
                    found = 1;
                }
            }
        }
        if (found || pthread_cond_timedwait(&db->freed, &db->mu, &deadline) == ETIMEDOUT)
            break;
    }
    if (found)
        db->busy[*slot] = 1;
    pthread_mutex_unlock(&db->mu);
    if (!found) {
        snprintf(errstr, errlen, "every PostgreSQL connection stayed busy");
        return CMN_ERR_TIMEOUT;
    }
    /* The slot is ours alone, so the slow connect happens unlocked. */
    int rc = cmn_pg_ensure(&db->conns[*slot], db->url, db->timeout_ms, errstr, errlen);
    if (rc != 0)
        release(db, *slot);
    return rc;
}

/* Runs one parameterised statement on a borrowed connection. Parameters
 * are text except those with a length in lens (binary, for bytea). */
static PGresult *run(wh_db_t *db, const char *sql, int n, const char *const *values, const int *lens,
                     const int *formats, ExecStatusType want, char *errstr, size_t errlen, int *rc)
{
    size_t slot = 0;
    *rc = acquire(db, &slot, errstr, errlen);
    if (*rc != 0)
        return NULL;
    PGresult *res = PQexecParams(db->conns[slot], sql, n, NULL, values, lens, formats, 0);
    if (PQresultStatus(res) != want) {
        snprintf(errstr, errlen, "%s", PQresultErrorMessage(res));
        PQclear(res);
        res = NULL;
        *rc = CMN_ERR_DB;
    }
    release(db, slot);
    return res;
}

void wh_db_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; ids != NULL && i < n; i++)
        free(ids[i]);
    free(ids);
}

#define CLIENTS_SQL                                                                                                \
    "SELECT DISTINCT client_id FROM client_contacts WHERE tenant_id = $1 AND channel = ANY($2::text[])"          \
    " AND address_hash = $3 ORDER BY client_id LIMIT 100"

int wh_db_clients(wh_db_t *db, const char *tenant_id, const char *const *channels,
                  const unsigned char hash[CMN_ADDRESS_HASH_LEN], char ***ids, size_t *n, char *errstr,
                  size_t errlen)
{
    cmn_buf_t arr = CMN_BUF_INIT;
    int rc = 0;
    *ids = NULL;
    *n = 0;
    if (db == NULL || channels == NULL || channels[0] == NULL)
        return CMN_ERR_INVALID;
    /* Channel names are fixed words, so the array literal needs no quoting. */
    rc = cmn_buf_putc(&arr, '{');
    for (size_t i = 0; rc == 0 && channels[i] != NULL; i++)
        rc = cmn_buf_printf(&arr, "%s%s", i > 0 ? "," : "", channels[i]);
    if (rc == 0)
        rc = cmn_buf_putc(&arr, '}');
    if (rc != 0) {
        cmn_buf_free(&arr);
        return rc;
    }
    const char *values[3] = {tenant_id, arr.data, (const char *)hash};
    const int lens[3] = {0, 0, CMN_ADDRESS_HASH_LEN};
    const int formats[3] = {0, 0, 1};
    PGresult *res = run(db, CLIENTS_SQL, 3, values, lens, formats, PGRES_TUPLES_OK, errstr, errlen, &rc);
    cmn_buf_free(&arr);
    if (res == NULL)
        return rc;
    int rows = PQntuples(res);
    if (rows > 0) {
        *ids = calloc((size_t)rows, sizeof **ids);
        if (*ids == NULL)
            rc = CMN_ERR_NOMEM;
    }
    for (int i = 0; rc == 0 && i < rows; i++) {
        (*ids)[i] = strdup(PQgetvalue(res, i, 0));
        if ((*ids)[i] == NULL)
            rc = CMN_ERR_NOMEM;
        else
            (*n)++;
    }
    PQclear(res);
    if (rc != 0) {
        wh_db_ids_free(*ids, *n);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

#define SNAPSHOT_SQL "SELECT snapshot::text FROM client_preferences WHERE tenant_id = $1 AND client_id = $2"

int wh_db_snapshot(wh_db_t *db, const char *tenant_id, const char *client_id, cmn_buf_t *out, char *errstr,
                   size_t errlen)
{
    int rc = 0;
    const char *values[2] = {tenant_id, client_id};
    PGresult *res = run(db, SNAPSHOT_SQL, 2, values, NULL, NULL, PGRES_TUPLES_OK, errstr, errlen, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        rc = 1;
    else
        rc = cmn_buf_puts(out, PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* greatest() ignores NULLs, so a row that never had an inbound takes the
 * new time, and an older (retried or reordered) webhook never moves the
 * window back. */
#define WINDOW_SQL                                                                                                 \
    "INSERT INTO conversations (tenant_id, channel, phone_hash, last_inbound_at, window_expires_at, updated_at)" \
    " VALUES ($1, 'whatsapp', $2, to_timestamp($3::double precision / 1000),"                                     \
    "         to_timestamp($3::double precision / 1000) + interval '24 hours', now())"                            \
    " ON CONFLICT (tenant_id, channel, phone_hash) DO UPDATE SET"                                                  \
    "   last_inbound_at = greatest(conversations.last_inbound_at, excluded.last_inbound_at),"                      \
    "   window_expires_at = greatest(conversations.window_expires_at, excluded.window_expires_at),"                \
    "   updated_at = now()"

int wh_db_open_window(wh_db_t *db, const char *tenant_id, const unsigned char hash[CMN_ADDRESS_HASH_LEN],
                      int64_t received_ms, char *errstr, size_t errlen)
{
    char ms[32];
    int rc = 0;
    snprintf(ms, sizeof ms, "%lld", (long long)received_ms);
    const char *values[3] = {tenant_id, (const char *)hash, ms};
    const int lens[3] = {0, CMN_ADDRESS_HASH_LEN, 0};
    const int formats[3] = {0, 1, 0};
    PGresult *res = run(db, WINDOW_SQL, 3, values, lens, formats, PGRES_COMMAND_OK, errstr, errlen, &rc);
    PQclear(res);
    return rc;
}

#define FIND_SQL                                                                                                   \
    "SELECT communication_id::text, hop, attempt FROM communications WHERE provider_message_id = $1"              \
    " ORDER BY hop DESC LIMIT 1"

int wh_db_find_message(wh_db_t *db, const char *pmid, char id[CMN_UUID_STR_LEN + 1], int *hop, int *attempt,
                       char *errstr, size_t errlen)
{
    int rc = 0;
    const char *values[1] = {pmid};
    PGresult *res = run(db, FIND_SQL, 1, values, NULL, NULL, PGRES_TUPLES_OK, errstr, errlen, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0) {
        rc = 1;
    } else {
        snprintf(id, CMN_UUID_STR_LEN + 1, "%s", PQgetvalue(res, 0, 0));
        *hop = atoi(PQgetvalue(res, 0, 1));
        *attempt = atoi(PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return rc;
}
