/* ingest_pool.h - a small pool of PostgreSQL connections for the read API.
 *
 * HTTP handlers run on several server threads and a libpq connection must
 * not be used by two of them at once, so each GET borrows one connection
 * for the duration of its query. Connections are opened lazily and
 * re-opened when the server went away (cmn_pg_ensure), so ingest starts and
 * keeps accepting writes while PostgreSQL is down; only reads fail then. */
#ifndef INGEST_POOL_H
#define INGEST_POOL_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct ingest_pool ingest_pool_t;

/* A borrowed connection: use conn, then give the lease back. */
typedef struct ingest_pool_lease {
    PGconn *conn; /* borrowed from the pool until ingest_pool_release() */
    size_t slot;
} ingest_pool_lease_t;

/* A pool of size connections (none opened yet) to url, which is copied.
 * Returns NULL with the reason in errstr (never the URL: it may hold a
 * password). */
ingest_pool_t *ingest_pool_new(const char *url, size_t size, char *errstr, size_t errlen);

/* Waits up to timeout_ms for a free connection, then makes sure it is
 * connected (also within timeout_ms). Returns 0 with lease filled,
 * CMN_ERR_TIMEOUT when every connection stayed busy, or CMN_ERR_DB with
 * libpq's reason in errstr (the slot is given back). Thread-safe. */
int ingest_pool_acquire(ingest_pool_t *pool, int timeout_ms, ingest_pool_lease_t *lease, char *errstr,
                        size_t errlen);

/* Gives a connection back. A connection left inside a transaction or broken
 * is repaired by the next acquire. lease is zeroed. Thread-safe. */
void ingest_pool_release(ingest_pool_t *pool, ingest_pool_lease_t *lease);

/* Closes every connection and frees the pool; no lease may be out. NULL is
 * a no-op. */
void ingest_pool_destroy(ingest_pool_t *pool);

#endif
