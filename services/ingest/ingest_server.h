/* ingest_server.h - the ingest service's context: configuration, the HTTP
 * server, the Kafka producer and the PostgreSQL pool of the read API, and the
 * adapter between them.
 *
 * The HTTP handler runs on the server's worker threads; everything it
 * touches in the context is either read-only after ingest_ctx_new() or
 * thread-safe by itself (metrics, producer, pool, atomics). */
#ifndef INGEST_SERVER_H
#define INGEST_SERVER_H

#include <stddef.h>

#include "crm/config.h"

/* Filled from the environment by cmn_config_load() through ingest_config_table(). */
typedef struct ingest_config {
    char *kafka_brokers;     /* KAFKA_BROKERS */
    char *http_bind;         /* HTTP_BIND */
    long http_port;          /* HTTP_PORT */
    long http_threads;       /* HTTP_THREADS */
    char *log_level;         /* LOG_LEVEL */
    long max_batch;          /* INGEST_MAX_BATCH */
    long max_body_bytes;     /* INGEST_MAX_BODY_BYTES */
    long kafka_timeout_ms;   /* INGEST_KAFKA_TIMEOUT_MS */
    char *database_url;      /* DATABASE_URL; "" disables the read API (GET answers 503) */
    long db_pool_size;       /* INGEST_DB_POOL_SIZE */
    long db_timeout_ms;      /* INGEST_DB_TIMEOUT_MS */
} ingest_config_t;

/* The service's configuration table (static storage) and its length in *n. */
const cmn_cfg_entry_t *ingest_config_table(size_t *n);

/* Checks what the table cannot express (LOG_LEVEL's values, DATABASE_URL's
 * syntax when set; never quoting the URL, which may hold a password). Returns 0 or
 * CMN_ERR_CONFIG with one "NAME: reason" line in errstr. */
int ingest_config_check(const ingest_config_t *cfg, char *errstr, size_t errlen);

typedef struct ingest_ctx ingest_ctx_t;

/* Creates the logger, metrics, Kafka producer and HTTP server, in that order,
 * and starts serving. cfg is borrowed and must outlive the context. Returns
 * NULL with the reason in errstr. */
ingest_ctx_t *ingest_ctx_new(const ingest_config_t *cfg, char *errstr, size_t errlen);

/* The port the HTTP server listens on (useful with HTTP_PORT=0). */
int ingest_ctx_port(const ingest_ctx_t *ctx);

/* Blocks until cmn_stop_requested is set. Returns 0. */
int ingest_run(ingest_ctx_t *ctx);

/* Stops HTTP intake first (requests in flight finish, including their wait
 * for Kafka), then flushes and closes the producer, then frees everything.
 * NULL is a no-op. */
void ingest_ctx_destroy(ingest_ctx_t *ctx);

#endif
