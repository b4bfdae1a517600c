/* th_pg.h - a private PostgreSQL server for the tests.
 *
 * The first call initialises a cluster under CRM_BINARY_DIR/test-pg (initdb,
 * running as the postgres user when the tests run as root), starts it on a
 * free port with its socket in that directory, and leaves it running for the
 * rest of the test process (it is stopped by th_pg_stop or at exit).
 * Each test gets its own fresh database with all migrations applied. */
#ifndef TH_PG_H
#define TH_PG_H

#include <stddef.h>

/* Makes sure the server runs; creates database `name` (dropping an old one),
 * applies CRM_SOURCE_DIR/migrations, and writes its URL into url.
 * Returns 0 or -1 (with the reason on stderr). */
int th_pg_database(const char *name, char *url, size_t urllen);

/* Runs a query and returns the first column of the first row as a string in
 * out ("" for no rows). Returns 0 or -1. */
int th_pg_query_value(const char *url, const char *sql, char *out, size_t outlen);

/* Stops the server this process started (pg_ctl stop -m fast). */
void th_pg_stop(void);

#endif
