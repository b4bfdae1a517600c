/* router_prefs_feed.h - keeps the preferences cache current from
 * crm.preferences.
 *
 * A thread of its own reads every partition of crm.preferences without a
 * consumer group (partitions assigned by hand, nothing committed), starting
 * at the end offsets taken when it starts: the cache only needs the changes
 * made from now on, the rest is in client_preferences. Each record replaces
 * its client's entry in the cache (router_prefs_cache_apply: newest
 * updated_at wins), each tombstone leaves a "none" entry; a record that does
 * not validate is skipped with a warning (the projector sends it to the DLQ).
 * Every replica reads every partition: each has its own cache.
 *
 * This is what makes a preference change take effect within the feed's own
 * latency (milliseconds) instead of the projector's lag plus the cache TTL.
 * Until the thread has taken its starting offsets, router_prefs_feed_ready()
 * is 0, and /readyz with it. */
#ifndef ROUTER_PREFS_FEED_H
#define ROUTER_PREFS_FEED_H

#include <stddef.h>

#include "crm/log.h"
#include "crm/metrics.h"
#include "router_prefs.h"

typedef struct router_prefs_feed router_prefs_feed_t;

/* Creates the Kafka handle and starts the thread. brokers, cache, log and
 * metrics (may be NULL) are borrowed and must outlive the feed; extra is a
 * NULL-terminated list of "key=value" librdkafka properties or NULL (copied).
 * NULL with the reason in errstr. */
router_prefs_feed_t *router_prefs_feed_start(const char *brokers, const char *const *extra,
                                             router_prefs_cache_t *cache, const cmn_log_t *log,
                                             cmn_metrics_t *metrics, char *errstr, size_t errlen);

/* 1 once the thread reads crm.preferences from its starting offsets and
 * while it runs. Any thread. */
int router_prefs_feed_ready(const router_prefs_feed_t *f);

/* Stops the thread and frees everything. NULL is fine. */
void router_prefs_feed_stop(router_prefs_feed_t *f);

#endif
