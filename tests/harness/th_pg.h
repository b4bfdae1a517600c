/* th_pg.h - a private PostgreSQL server for the tests.
 *
 * The first call initialises a cluster under CRM_BINARY_DIR/test-pg-<pid>
 * (initdb with trust auth and fsync off, running as the postgres user when
 * the tests run as root), starts it on a free 127.0.0.1 port with its socket
 * in that directory, and leaves it running for the rest of the test binary's
 * run. <pid> is the test binary's process: Criterion runs each test in a
 * forked worker, and every worker of one run shares the one server. It is
 * stopped (and its directory removed) by th_pg_stop, or when the test binary
 * exits, by a detached watchdog.
 * Each test gets its own fresh database with all migrations applied: a
 * copy of a template database the server's creator migrated once.
 * CRM_PG_BINDIR overrides where initdb and pg_ctl are found
 * (default: the newest /usr/lib/postgresql/<major>/bin, else PATH). */
#ifndef TH_PG_H
#define TH_PG_H

#include <stddef.h>

/* Makes sure the server runs; creates database `name` (dropping an old one)
 * with CRM_SOURCE_DIR/migrations applied (copied from the server's migrated
 * template, "th_pg_template", which is not a valid name here), and writes its
 * URL into url.
 * Returns 0 or -1 (with the reason on stderr). */
int th_pg_database(const char *name, char *url, size_t urllen);

/* Runs a query and returns the first column of the first row as a string in
 * out ("" for no rows). Returns 0 or -1. */
int th_pg_query_value(const char *url, const char *sql, char *out, size_t outlen);

/* Stops the server this process started (pg_ctl stop -m fast). */
void th_pg_stop(void);

#endif
