/* pg.c - PostgreSQL helpers on libpq: connecting with retries, running
 * commands, reconnecting after a server restart, and the numbered-migration
 * runner behind `crmctl migrate` and the test harness. */
#include "crm/pg.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/time.h"

/* Backoff between connection attempts: short at first because the usual
 * reason for a refused connection is a server that is still starting. */
#define PG_RETRY_FIRST_MS 100
#define PG_RETRY_MAX_MS 2000

/* Every runner takes this session-level advisory lock before touching
 * schema_migrations, so concurrent `crmctl migrate` (several replicas
 * starting at once) apply each migration exactly once. */
#define PG_MIGRATION_LOCK_SQL "SELECT pg_advisory_lock(hashtext('crm_migrations'))"
#define PG_MIGRATION_UNLOCK_SQL "SELECT pg_advisory_unlock(hashtext('crm_migrations'))"

#define PG_MIGRATIONS_TABLE_SQL                                                                    \
    "CREATE TABLE IF NOT EXISTS schema_migrations ("                                               \
    " version int PRIMARY KEY,"                                                                    \
    " name text NOT NULL,"                                                                         \
    " applied_at timestamptz NOT NULL DEFAULT now())"

static void pg_seterr(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pg_seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
    /* libpq messages end with a newline; one-line errors read better in logs. */
    size_t n = strlen(errstr);
    while (n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == '\r'))
        errstr[--n] = '\0';
}

/* Server NOTICEs ("relation already exists, skipping", "drop cascades to
 * ...") would otherwise be printed raw on stderr by libpq and break the
 * services' JSON-lines logs; none of them needs action, so they are dropped. */
static void pg_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void pg_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* Keep sleeping the remainder: a signal (SIGTERM) is handled by the
         * caller's loop once we return, and the total wait stays bounded. */
    }
}

PGconn *cmn_pg_connect(const char *url, int timeout_ms, char *errstr, size_t errlen)
{
    if (url == NULL || url[0] == '\0') {
        pg_seterr(errstr, errlen, "database url is empty");
        return NULL;
    }
    int64_t deadline = cmn_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int delay = PG_RETRY_FIRST_MS;
    for (;;) {
        /* libpq waits forever for a TCP handshake by default; bound each
         * attempt so the overall timeout holds. connect_timeout comes first
         * so a value inside the URL overrides ours (later keywords win). */
        int64_t left = deadline - cmn_monotonic_ms();
        long attempt_s = left > 2000 ? (long)(left / 1000) : 2;
        char timeout_str[32];
        snprintf(timeout_str, sizeof timeout_str, "%ld", attempt_s);
        const char *const keys[] = {"connect_timeout", "dbname", NULL};
        const char *const vals[] = {timeout_str, url, NULL};
        PGconn *conn = PQconnectdbParams(keys, vals, 1);
        if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
            PQsetNoticeProcessor(conn, pg_ignore_notice, NULL);
            return conn;
        }
        pg_seterr(errstr, errlen, "cannot connect to PostgreSQL: %s",
                  conn != NULL ? PQerrorMessage(conn) : "out of memory");
        PQfinish(conn);
        left = deadline - cmn_monotonic_ms();
        if (left <= 0)
            return NULL;
        pg_sleep_ms(delay < left ? delay : (int)left);
        delay = delay * 2 > PG_RETRY_MAX_MS ? PG_RETRY_MAX_MS : delay * 2;
    }
}

int cmn_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errlen)
{
    if (conn == NULL || sql == NULL) {
        pg_seterr(errstr, errlen, "cmn_pg_exec: no connection or statement");
        return CMN_ERR_INVALID;
    }
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    /* Statements like "SELECT pg_advisory_lock(...)" return a row nobody
     * needs, and a script of only comments is an empty query: neither is a
     * failure. */
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) ? 0 : CMN_ERR_DB;
    if (rc != 0)
        pg_seterr(errstr, errlen, "%s", res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

int cmn_pg_ensure(PGconn **conn, const char *url, int timeout_ms, char *errstr, size_t errlen)
{
    if (conn == NULL) {
        pg_seterr(errstr, errlen, "cmn_pg_ensure: no connection pointer");
        return CMN_ERR_INVALID;
    }
    if (*conn != NULL && PQstatus(*conn) == CONNECTION_OK) {
        PGTransactionStatusType ts = PQtransactionStatus(*conn);
        if (ts == PQTRANS_IDLE)
            return 0;
        /* A transaction left open by a failed batch would make every later
         * statement fail; roll it back and keep the connection. */
        if ((ts == PQTRANS_INERROR || ts == PQTRANS_INTRANS) &&
            cmn_pg_exec(*conn, "ROLLBACK", errstr, errlen) == 0)
            return 0;
        /* PQTRANS_ACTIVE/UNKNOWN, or ROLLBACK failed: the session is not
         * trustworthy any more, so fall through and reset it. */
    }
    if (*conn != NULL) {
        PQreset(*conn);
        if (PQstatus(*conn) == CONNECTION_OK)
            return 0;
        PQfinish(*conn);
        *conn = NULL;
    }
    *conn = cmn_pg_connect(url, timeout_ms, errstr, errlen);
    return *conn != NULL ? 0 : CMN_ERR_DB;
}

/* ------------------------------------------------------------- migrations */

typedef struct pg_migration {
    int version;
    char *file;  /* "0001_core.sql", owned */
    char *path;  /* dir + "/" + file, owned */
} pg_migration_t;

typedef struct pg_migration_list {
    pg_migration_t *items;
    size_t n, cap;
} pg_migration_list_t;

static void pg_migration_list_free(pg_migration_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].file);
        free(l->items[i].path);
    }
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

static int pg_migration_cmp(const void *a, const void *b)
{
    const pg_migration_t *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->file, y->file);
}

/* Returns the version of a file named NNNN_name.sql, or -1 when the name does
 * not follow the pattern (editor backups, READMEs) and the file is ignored. */
static int pg_migration_version(const char *name)
{
    size_t len = strlen(name);
    size_t digits = strspn(name, "0123456789");
    if (digits == 0 || digits > 9 || name[digits] != '_' || len < digits + 1 + 1 + 4)
        return -1;
    if (strcmp(name + len - 4, ".sql") != 0)
        return -1;
    char num[10];
    memcpy(num, name, digits);
    num[digits] = '\0';
    return (int)strtol(num, NULL, 10);
}

/* Lists and sorts the migrations of dir; rejects two files with one number,
 * because which of them "version N" means would depend on directory order. */
static int pg_migration_scan(const char *dir, pg_migration_list_t *out, char *errstr, size_t errlen)
{
    int rc = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        pg_seterr(errstr, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return CMN_ERR_IO;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL)
            break;
        int version = pg_migration_version(e->d_name);
        if (version < 0)
            continue;
        if (out->n == out->cap) {
            size_t ncap = out->cap ? out->cap * 2 : 16;
            pg_migration_t *items = realloc(out->items, ncap * sizeof *items);
            if (items == NULL) {
                rc = CMN_ERR_NOMEM;
                goto cleanup;
            }
            out->items = items;
            out->cap = ncap;
        }
        pg_migration_t *m = &out->items[out->n];
        size_t plen = strlen(dir) + 1 + strlen(e->d_name) + 1;
        m->version = version;
        m->file = strdup(e->d_name);
        m->path = malloc(plen);
        if (m->file == NULL || m->path == NULL) {
            free(m->file);
            free(m->path);
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        snprintf(m->path, plen, "%s/%s", dir, e->d_name);
        out->n++;
    }
    if (errno != 0) {
        pg_seterr(errstr, errlen, "cannot read migrations directory: %s", strerror(errno));
        rc = CMN_ERR_IO;
        goto cleanup;
    }
    if (out->n > 0)
        qsort(out->items, out->n, sizeof *out->items, pg_migration_cmp);
    for (size_t i = 1; i < out->n; i++) {
        if (out->items[i].version == out->items[i - 1].version) {
            pg_seterr(errstr, errlen, "duplicate migration number %d: %s and %s", out->items[i].version,
                      out->items[i - 1].file, out->items[i].file);
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
    }
cleanup:
    closedir(d);
    if (rc == CMN_ERR_NOMEM)
        pg_seterr(errstr, errlen, "out of memory while listing migrations");
    return rc;
}

/* Reads a whole file into a NUL-terminated heap string the caller frees. */
static char *pg_read_file(const char *path, char *errstr, size_t errlen)
{
    char *data = NULL;
    size_t len = 0, cap = 0;
    int ok = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        goto cleanup;
    for (;;) {
        if (cap - len < 4096) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nd = realloc(data, ncap);
            if (nd == NULL)
                goto cleanup;
            data = nd;
            cap = ncap;
        }
        size_t got = fread(data + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto cleanup;
    data[len] = '\0';
    ok = 1;
cleanup:
    if (!ok) {
        pg_seterr(errstr, errlen, "cannot read %s: %s", path, strerror(errno));
        free(data);
        data = NULL;
    }
    if (f != NULL)
        fclose(f);
    return data;
}

/* Loads the applied versions into a sorted heap array the caller frees. */
static int pg_applied_versions(PGconn *conn, int **versions, size_t *n, char *errstr, size_t errlen)
{
    int rc = 0;
    *versions = NULL;
    *n = 0;
    PGresult *res = PQexec(conn, "SELECT version FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_seterr(errstr, errlen, "cannot read schema_migrations: %s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    int rows = PQntuples(res);
    if (rows > 0) {
        *versions = malloc((size_t)rows * sizeof **versions);
        if (*versions == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        for (int i = 0; i < rows; i++)
            (*versions)[i] = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
    }
    *n = (size_t)rows;
cleanup:
    PQclear(res);
    return rc;
}

static int pg_version_applied(const int *versions, size_t n, int version)
{
    for (size_t i = 0; i < n; i++) {
        if (versions[i] == version)
            return 1;
    }
    return 0;
}

/* Applies one migration in its own transaction together with its row in
 * schema_migrations, so a failure leaves neither the schema change nor the
 * bookkeeping behind. The file must not contain its own BEGIN/COMMIT (or
 * statements like CREATE INDEX CONCURRENTLY that refuse transactions). */
static int pg_apply_one(PGconn *conn, const pg_migration_t *m, char *errstr, size_t errlen)
{
    int rc = 0;
    char dberr[1024] = "";
    char version_str[16];
    char *sql = pg_read_file(m->path, errstr, errlen);
    if (sql == NULL)
        return CMN_ERR_IO;
    rc = cmn_pg_exec(conn, "BEGIN", dberr, sizeof dberr);
    if (rc != 0)
        goto cleanup;
    rc = cmn_pg_exec(conn, sql, dberr, sizeof dberr);
    if (rc != 0)
        goto cleanup;
    snprintf(version_str, sizeof version_str, "%d", m->version);
    const char *params[2] = {version_str, m->file};
    PGresult *res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_seterr(dberr, sizeof dberr, "%s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
    }
    PQclear(res);
    if (rc != 0)
        goto cleanup;
    rc = cmn_pg_exec(conn, "COMMIT", dberr, sizeof dberr);
cleanup:
    if (rc != 0) {
        char ignored[256];
        if (PQtransactionStatus(conn) != PQTRANS_IDLE)
            cmn_pg_exec(conn, "ROLLBACK", ignored, sizeof ignored);
        if (dberr[0] != '\0')
            pg_seterr(errstr, errlen, "migration %s failed: %s", m->file, dberr);
    }
    free(sql);
    return rc;
}

int cmn_pg_migrate(PGconn *conn, const char *dir, const cmn_log_t *log, int *applied, char *errstr,
                   size_t errlen)
{
    int rc = 0;
    int locked = 0;
    int *versions = NULL;
    size_t nversions = 0;
    pg_migration_list_t list = {NULL, 0, 0};
    char dberr[1024] = "";

    if (applied != NULL)
        *applied = 0;
    if (conn == NULL || dir == NULL || dir[0] == '\0') {
        pg_seterr(errstr, errlen, "cmn_pg_migrate: connection and directory are required");
        return CMN_ERR_INVALID;
    }
    /* Scan before locking: a broken directory is reported without waiting
     * for another runner. */
    rc = pg_migration_scan(dir, &list, errstr, errlen);
    if (rc != 0)
        goto cleanup;

    rc = cmn_pg_exec(conn, PG_MIGRATION_LOCK_SQL, dberr, sizeof dberr);
    if (rc != 0) {
        pg_seterr(errstr, errlen, "cannot take the migration lock: %s", dberr);
        goto cleanup;
    }
    locked = 1;
    rc = cmn_pg_exec(conn, PG_MIGRATIONS_TABLE_SQL, dberr, sizeof dberr);
    if (rc != 0) {
        pg_seterr(errstr, errlen, "cannot create schema_migrations: %s", dberr);
        goto cleanup;
    }
    rc = pg_applied_versions(conn, &versions, &nversions, errstr, errlen);
    if (rc != 0)
        goto cleanup;

    for (size_t i = 0; i < list.n; i++) {
        const pg_migration_t *m = &list.items[i];
        if (pg_version_applied(versions, nversions, m->version))
            continue;
        rc = pg_apply_one(conn, m, errstr, errlen);
        if (rc != 0) {
            if (log != NULL)
                cmn_logkv(log, CMN_LOG_ERROR, NULL, (const char *[]){"migration", m->file, NULL},
                          "migration failed");
            goto cleanup;
        }
        if (applied != NULL)
            (*applied)++;
        if (log != NULL)
            cmn_logkv(log, CMN_LOG_INFO, NULL, (const char *[]){"migration", m->file, NULL},
                      "migration applied");
    }
    /* A database ahead of this checkout (a newer release migrated it) is not
     * an error, but worth a line: this binary may not know the newest tables. */
    for (size_t i = 0; i < nversions && log != NULL; i++) {
        int known = 0;
        for (size_t j = 0; j < list.n && !known; j++)
            known = list.items[j].version == versions[i];
        if (!known)
            cmn_logf(log, CMN_LOG_WARN, NULL, "schema_migrations has version %d with no file in %s",
                     versions[i], dir);
    }
cleanup:
    if (locked) {
        char ignored[256];
        if (PQtransactionStatus(conn) != PQTRANS_IDLE)
            cmn_pg_exec(conn, "ROLLBACK", ignored, sizeof ignored);
        /* If unlocking fails the session is broken; the server drops
         * session locks when the connection closes, so nothing is leaked. */
        cmn_pg_exec(conn, PG_MIGRATION_UNLOCK_SQL, ignored, sizeof ignored);
    }
    free(versions);
    pg_migration_list_free(&list);
    return rc;
}
