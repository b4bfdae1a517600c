/* projector.h - the projector service: consumes crm.status, crm.inbound and
 * crm.preferences and keeps the PostgreSQL projections (communications,
 * communication_events, receipts_unmatched, inbound_messages, conversations,
 * contacts, client_preferences) and its own consumer offsets, each batch in
 * one transaction.
 *
 * Exactly-once effect on the projections comes from two things together:
 *   - the batch and the next offsets of its partitions are committed in one
 *     PostgreSQL transaction, and on partition assignment the consumer seeks
 *     to the offsets stored there, so a crash between the database commit and
 *     the Kafka commit does not replay the batch;
 *   - every event has a deterministic event_id and is inserted with ON
 *     CONFLICT DO NOTHING, and only newly inserted events move the
 *     communication rows, so whatever is replayed anyway (a rebalance, a
 *     fallback to Kafka's committed offset when PostgreSQL was unreachable at
 *     assignment time) changes nothing.
 *
 * Each consumed topic has a handler (stage a record, write what was staged)
 * in projector.c's handler table; crm.preferences is applied by
 * "newest updated_at wins" instead of by event id (projector_prefs.h). */
#ifndef PROJECTOR_H
#define PROJECTOR_H

#include <stddef.h>

#include "crm/config.h"
#include "crm/log.h"

/* Settings from the environment (see projector_config_table). */
typedef struct projector_config {
    char *kafka_brokers;
    char *database_url;
    char *http_bind;
    long http_port;
    char *log_level;
    long batch_size;
    char *group_id;
    long session_timeout_ms;
    char *data_key; /* CRM_DATA_KEY; "" leaves crm.inbound unconsumed */
} projector_config_t;

/* The configuration table main() hands to cmn_config_main(); n gets its length. */
const cmn_cfg_entry_t *projector_config_table(size_t *n);

/* Checks what the table cannot: DATABASE_URL parses as a libpq connection
 * string, the group id is not empty and CRM_DATA_KEY, when set, is long
 * enough. Returns 0, or CMN_ERR_CONFIG with one
 * line naming the variable in errstr (never the URL, which may hold a password). */
int projector_config_check(const projector_config_t *cfg, char *errstr, size_t errlen);

typedef struct projector projector_t;

/* Creates the service: HTTP server (metrics, health), DLQ producer, consumer
 * group member, and a first PostgreSQL connection attempt (the service starts
 * unready rather than failing when PostgreSQL is still coming up). cfg and log
 * are borrowed and must outlive the projector. Returns NULL with the reason
 * in errstr. */
projector_t *projector_new(const projector_config_t *cfg, const cmn_log_t *log, char *errstr, size_t errlen);

/* Consumes and applies batches until cmn_stop_requested is set; the batch in
 * hand when the stop is requested is finished first. Returns 0, or a negative
 * cmn_err_t when the consumer failed for good. */
int projector_run(projector_t *p);

/* Leaves the consumer group, stops the HTTP server, flushes the producer and
 * closes the database connection. NULL is ignored. */
void projector_destroy(projector_t *p);

#endif
