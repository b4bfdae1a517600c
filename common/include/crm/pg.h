/* pg.h - PostgreSQL helpers on libpq: connecting with retries, running
 * commands, and the numbered-migration runner behind `crmctl migrate`. */
#ifndef CRM_PG_H
#define CRM_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "crm/log.h"

/* Connects to url, retrying with backoff until timeout_ms has passed
 * (PostgreSQL may be starting). url is borrowed. Server NOTICEs are dropped
 * on the returned connection so they never break JSON-lines logs. Returns a
 * connection the caller PQfinish()es, or NULL with the reason in errstr
 * (libpq's message; it never contains the password). */
PGconn *cmn_pg_connect(const char *url, int timeout_ms, char *errstr, size_t errlen);

/* Runs a command (or a script of several) whose rows nobody needs. conn and
 * sql are borrowed. Returns 0 or CMN_ERR_DB with the server's message in errstr. */
int cmn_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errlen);

/* Makes sure *conn is usable, reconnecting (once, up to timeout_ms) when the
 * server restarted. A transaction left open or failed is rolled back. *conn
 * may be NULL (then it connects) and may be replaced: the caller owns the
 * connection in *conn afterwards, NULL on failure. Returns 0 or CMN_ERR_DB. */
int cmn_pg_ensure(PGconn **conn, const char *url, int timeout_ms, char *errstr, size_t errlen);

/* Applies, in order and each in its own transaction, every dir/NNNN_name.sql
 * whose number is not yet in schema_migrations. Takes an advisory lock so
 * concurrent runners wait for each other. *applied counts new ones.
 * Files must not contain BEGIN/COMMIT (or statements that refuse a
 * transaction). Two files with one number are CMN_ERR_INVALID before
 * anything runs; a missing directory is CMN_ERR_IO; a failing file is
 * CMN_ERR_DB with "migration <file> failed: <server message>" in errstr and
 * leaves no trace. Everything is borrowed; log may be NULL (no logging). */
int cmn_pg_migrate(PGconn *conn, const char *dir, const cmn_log_t *log, int *applied, char *errstr,
                   size_t errlen);

#endif
