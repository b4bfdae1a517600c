/* test_pg_migrate.c - the migration runner against a real PostgreSQL:
 * idempotence, concurrent runners, failing and malformed migration sets. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crm/err.h"
#include "crm/pg.h"
#include "th_pg.h"

/* Number of NNNN_*.sql files shipped in migrations/. */
static int count_shipped_migrations(void)
{
    int n = 0;
    DIR *d = opendir(CRM_SOURCE_DIR "/migrations");
    cr_assert_not_null(d);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len > 5 && e->d_name[0] >= '0' && e->d_name[0] <= '9' && strcmp(e->d_name + len - 4, ".sql") == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* A scratch migrations directory under the build tree; returns its path. */
static void make_dir(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/test-migrations-%d-%s", CRM_BINARY_DIR, (int)getpid(), name);
    mkdir(out, 0755);
}

/* Removes a scratch directory made by make_dir (flat: files only). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        char path[1024];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(content, f);
    fclose(f);
}

static PGconn *connect_or_fail(const char *url)
{
    char err[512];
    PGconn *conn = cmn_pg_connect(url, 10000, err, sizeof err);
    cr_assert_not_null(conn, "connect: %s", err);
    return conn;
}

/* Drops everything the shipped migrations created so a test can start from
 * an empty database. */
static void reset_schema(PGconn *conn)
{
    char err[512];
    cr_assert_eq(cmn_pg_exec(conn, "DROP SCHEMA public CASCADE; CREATE SCHEMA public", err, sizeof err), 0, "%s",
                 err);
}

static void query(const char *url, const char *sql, char *out, size_t outlen)
{
    cr_assert_eq(th_pg_query_value(url, sql, out, outlen), 0, "query failed: %s", sql);
}

Test(pg_migrate, applies_everything_once_and_is_idempotent)
{
    char url[256], val[64], err[512];
    cr_assert_eq(th_pg_database("pgm_twice", url, sizeof url), 0);
    int shipped = count_shipped_migrations();
    cr_assert_gt(shipped, 0);

    query(url, "SELECT count(*) FROM schema_migrations", val, sizeof val);
    cr_assert_eq(atoi(val), shipped, "schema_migrations has %s rows, %d files", val, shipped);

    /* The harness already migrated; a second run must find nothing to do. */
    PGconn *conn = connect_or_fail(url);
    int applied = -1;
    cr_assert_eq(cmn_pg_migrate(conn, CRM_SOURCE_DIR "/migrations", NULL, &applied, err, sizeof err), 0, "%s", err);
    cr_assert_eq(applied, 0);
    PQfinish(conn);

    query(url, "SELECT count(*) FROM schema_migrations", val, sizeof val);
    cr_assert_eq(atoi(val), shipped);
    query(url, "SELECT name FROM schema_migrations WHERE version = 1", val, sizeof val);
    cr_assert_str_eq(val, "0001_core.sql");

    /* The tables other services rely on exist. */
    const char *relations[] = {"communications", "communication_events", "consumer_offsets", "request_claims",
                               "v_delivery_rates", "communications_daily", "v_send_latency"};
    for (size_t i = 0; i < sizeof relations / sizeof relations[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT to_regclass('%s') IS NOT NULL", relations[i]);
        query(url, sql, val, sizeof val);
        cr_assert_str_eq(val, "t", "%s is missing", relations[i]);
    }
    /* request_claims only accepts the two documented states. */
    cr_assert_neq(th_pg_query_value(url,
                                    "INSERT INTO request_claims (tenant_id, request_id, communication_id, state) "
                                    "VALUES ('t', 'r', gen_random_uuid(), 'bogus')",
                                    val, sizeof val),
                  0);
}

typedef struct runner {
    const char *url;
    const char *dir;
    int rc;
    int applied;
    char err[512];
} runner_t;

static void *run_migrate(void *arg)
{
    runner_t *r = arg;
    char err[512];
    PGconn *conn = cmn_pg_connect(r->url, 10000, err, sizeof err);
    if (conn == NULL) {
        r->rc = CMN_ERR_DB;
        snprintf(r->err, sizeof r->err, "%s", err);
        return NULL;
    }
    r->rc = cmn_pg_migrate(conn, r->dir, NULL, &r->applied, r->err, sizeof r->err);
    PQfinish(conn);
    return NULL;
}

Test(pg_migrate, concurrent_runners_apply_each_migration_once)
{
    char url[256], dir[512], val[64];
    cr_assert_eq(th_pg_database("pgm_concurrent", url, sizeof url), 0);
    PGconn *conn = connect_or_fail(url);
    reset_schema(conn);
    PQfinish(conn);

    /* The sleep holds the first runner inside migration 1, so without the
     * advisory lock the others would run CREATE TABLE t1 too and fail. */
    make_dir(dir, sizeof dir, "concurrent");
    write_file(dir, "0001_first.sql", "CREATE TABLE t1 (id int); SELECT pg_sleep(0.3);");
    write_file(dir, "0002_second.sql", "CREATE TABLE t2 (id int);");
    write_file(dir, "0010_tenth.sql", "CREATE TABLE t10 (id int);");
    write_file(dir, "README.md", "not a migration");

    enum { N = 4 };
    runner_t runners[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        runners[i] = (runner_t){.url = url, .dir = dir};
        cr_assert_eq(pthread_create(&threads[i], NULL, run_migrate, &runners[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(runners[i].rc, 0, "runner %d: %s", i, runners[i].err);
        total += runners[i].applied;
    }
    cr_assert_eq(total, 3, "the runners applied %d migrations in all", total);
    query(url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations", val, sizeof val);
    cr_assert_str_eq(val, "1,2,10");
    remove_dir(dir);
}

Test(pg_migrate, failing_migration_names_the_file_and_rolls_back)
{
    char url[256], dir[512], val[64], err[512];
    cr_assert_eq(th_pg_database("pgm_bad", url, sizeof url), 0);
    PGconn *conn = connect_or_fail(url);
    reset_schema(conn);

    make_dir(dir, sizeof dir, "bad");
    write_file(dir, "0001_ok.sql", "CREATE TABLE ok1 (id int);");
    write_file(dir, "0002_broken.sql", "CREATE TABLE half (id int);\nCREATE TABLE broken (;\n");
    write_file(dir, "0003_later.sql", "CREATE TABLE later (id int);");

    int applied = -1;
    int rc = cmn_pg_migrate(conn, dir, NULL, &applied, err, sizeof err);
    cr_assert_eq(rc, CMN_ERR_DB);
    cr_assert_not_null(strstr(err, "0002_broken.sql"), "error does not name the file: %s", err);
    cr_assert_not_null(strstr(err, "syntax error"), "error lacks the server's reason: %s", err);
    cr_assert_eq(applied, 1);
    /* The connection is still usable after the failure. */
    cr_assert_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    PQfinish(conn);

    query(url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations", val, sizeof val);
    cr_assert_str_eq(val, "1");
    /* The first statement of the failed file was rolled back with it, and
     * nothing after it ran. */
    query(url, "SELECT to_regclass('half') IS NULL AND to_regclass('later') IS NULL", val, sizeof val);
    cr_assert_str_eq(val, "t");
    remove_dir(dir);
}

Test(pg_migrate, duplicate_numbers_are_rejected_before_anything_runs)
{
    char url[256], dir[512], val[64], err[512];
    cr_assert_eq(th_pg_database("pgm_dup", url, sizeof url), 0);
    PGconn *conn = connect_or_fail(url);
    reset_schema(conn);

    make_dir(dir, sizeof dir, "dup");
    write_file(dir, "0001_a.sql", "CREATE TABLE a (id int);");
    write_file(dir, "0002_b.sql", "CREATE TABLE b (id int);");
    write_file(dir, "2_c.sql", "CREATE TABLE c (id int);");

    int applied = -1;
    int rc = cmn_pg_migrate(conn, dir, NULL, &applied, err, sizeof err);
    cr_assert_eq(rc, CMN_ERR_INVALID);
    cr_assert_not_null(strstr(err, "0002_b.sql"), "%s", err);
    cr_assert_not_null(strstr(err, "2_c.sql"), "%s", err);
    cr_assert_eq(applied, 0);
    PQfinish(conn);
    query(url, "SELECT to_regclass('a') IS NULL AND to_regclass('schema_migrations') IS NULL", val, sizeof val);
    cr_assert_str_eq(val, "t");
    remove_dir(dir);
}

Test(pg_migrate, missing_directory_is_an_io_error)
{
    char url[256], err[512];
    cr_assert_eq(th_pg_database("pgm_nodir", url, sizeof url), 0);
    PGconn *conn = connect_or_fail(url);
    int applied = -1;
    cr_assert_eq(cmn_pg_migrate(conn, CRM_BINARY_DIR "/no-such-migrations", NULL, &applied, err, sizeof err),
                 CMN_ERR_IO);
    cr_assert_not_null(strstr(err, "no-such-migrations"), "%s", err);
    PQfinish(conn);
}

Test(pg_migrate, ensure_reconnects_after_the_session_is_killed)
{
    char url[256], err[512], val[64];
    cr_assert_eq(th_pg_database("pgm_ensure", url, sizeof url), 0);
    PGconn *conn = connect_or_fail(url);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(conn));
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
    query(url, sql, val, sizeof val);
    cr_assert_str_eq(val, "t");
    /* The first statement on the dead session fails... */
    cr_assert_neq(cmn_pg_exec(conn, "SELECT 1", err, sizeof err), 0);
    /* ...and ensure brings it back. */
    cr_assert_eq(cmn_pg_ensure(&conn, url, 10000, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cmn_pg_exec(conn, "SELECT 1", err, sizeof err), 0, "%s", err);
    PQfinish(conn);
}
