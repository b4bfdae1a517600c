/* pg.h - PostgreSQL helpers on libpq: connecting with retries, running
 * commands, and the numbered-migration runner behind `crmctl migrate`. */
#ifndef CRM_PG_H
#define CRM_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "crm/log.h"

/* Connects to url, retrying until timeout_ms has passed (PostgreSQL may be
 * starting). Returns a connection the caller PQfinish()es, or NULL. */
PGconn *cmn_pg_connect(const char *url, int timeout_ms, char *errstr, size_t errlen);

/* Runs a command that returns no rows. Returns 0 or CMN_ERR_DB with the
 * server's message in errstr. */
int cmn_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errlen);

/* Makes sure *conn is usable, reconnecting (once, up to timeout_ms) when the
 * server restarted. Returns 0 or CMN_ERR_DB. */
int cmn_pg_ensure(PGconn **conn, const char *url, int timeout_ms, char *errstr, size_t errlen);

/* Applies, in order and each in its own transaction, every dir/NNNN_name.sql
 * whose number is not yet in schema_migrations. Takes an advisory lock so
 * concurrent runners wait for each other. *applied counts new ones. */
int cmn_pg_migrate(PGconn *conn, const char *dir, const cmn_log_t *log, int *applied, char *errstr,
                   size_t errlen);

#endif
