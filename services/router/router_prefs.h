/* router_prefs.h - client preferences for the router: a bounded, shared
 * cache of ClientPreferences snapshots, and the batched PostgreSQL lookup
 * that fills it.
 *
 * Where a snapshot comes from:
 *  - the projection client_preferences (migration 0005), read once per batch
 *    for every client of the batch the cache does not hold (one statement);
 *  - crm.preferences itself, through router_prefs_feed.h, which applies each
 *    new record (or tombstone) to the cache as soon as it is produced, ahead
 *    of the projector.
 * A client without a row is cached too ("known to have none"), so a batch of
 * clients without preferences costs one query, not one per batch.
 *
 * Newest wins, whatever the source: an entry is only replaced by a snapshot
 * with a later-or-equal updated_at. A lookup that raced with the feed cannot
 * undo it either: the cache counts modifications (an epoch), a lookup takes
 * the epoch before it queries, and its answer for a key the feed touched
 * after that is dropped in favour of the feed's. A tombstone leaves a "none"
 * entry behind for the same reason, rather than a hole a stale row could
 * fill. Entries live ROUTER_PREFS_CACHE_TTL_MS and are then read again; the
 * least recently used entry goes when the cache is full.
 *
 * Snapshots are shared, reference-counted and immutable: a batch keeps the
 * ones it uses (router_prefs_ref_t) while the feed replaces entries. Every
 * function is thread-safe (one mutex; the work under it is a hash lookup). */
#ifndef ROUTER_PREFS_H
#define ROUTER_PREFS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/preferences.h"

/* A shared snapshot. Read p freely while holding a reference. */
typedef struct router_prefs_ref router_prefs_ref_t;

/* The snapshot of a reference (never NULL for a non-NULL ref). */
const cmn_preferences_t *router_prefs_get(const router_prefs_ref_t *ref);

/* Takes over p (its contents; p is zeroed) into a new reference with a count
 * of 1. NULL on allocation failure (p is cleared then too). */
router_prefs_ref_t *router_prefs_ref_new(cmn_preferences_t *p);

/* Adds a reference. NULL is fine (returns NULL). */
router_prefs_ref_t *router_prefs_ref_keep(router_prefs_ref_t *ref);

/* Drops a reference; the last one frees the snapshot. NULL is fine. */
void router_prefs_ref_release(router_prefs_ref_t *ref);

typedef struct router_prefs_cache router_prefs_cache_t;

/* capacity: most entries (>= 1); ttl_ms: how long an entry is trusted (>= 1).
 * Returns the cache (destroy it) or NULL when out of memory. */
router_prefs_cache_t *router_prefs_cache_new(size_t capacity, int64_t ttl_ms);
void router_prefs_cache_destroy(router_prefs_cache_t *c);

/* Looks up (tenant, client) at now_ms (monotonic clock). Returns 1 when a
 * live entry exists: *out receives a new reference to its snapshot (the
 * caller releases it), or NULL when the client is known to have none.
 * Returns 0 when absent or expired (*out = NULL), or CMN_ERR_NOMEM. */
int router_prefs_cache_get(router_prefs_cache_t *c, const char *tenant, const char *client, int64_t now_ms,
                           router_prefs_ref_t **out);

/* The modification epoch: take it before querying PostgreSQL and pass it to
 * router_prefs_cache_put_loaded(). */
uint64_t router_prefs_cache_epoch(router_prefs_cache_t *c);

/* Stores what PostgreSQL answered for (tenant, client): ref (borrowed; the
 * cache keeps its own reference) or NULL for "no row", loaded by a query that
 * started at epoch since. An entry the feed modified after since, or one with
 * a newer updated_at, wins and is kept. *winner (may be NULL) receives a new
 * reference to whichever snapshot the cache holds afterwards (NULL for none).
 * Returns 0 or CMN_ERR_NOMEM. */
int router_prefs_cache_put_loaded(router_prefs_cache_t *c, const char *tenant, const char *client,
                                  router_prefs_ref_t *ref, uint64_t since, int64_t now_ms,
                                  router_prefs_ref_t **winner);

/* Applies a record of crm.preferences: ref (borrowed) replaces the entry of
 * its (tenant_id, client_id) unless the entry's updated_at is newer; ref NULL
 * is a tombstone of (tenant, client), which leaves a "none" entry. Either way
 * the entry counts as modified now. Returns 1 when the entry changed, 0 when
 * an older record was ignored, or CMN_ERR_NOMEM. tenant/client are read from
 * ref when it is not NULL. */
int router_prefs_cache_apply(router_prefs_cache_t *c, const char *tenant, const char *client,
                             router_prefs_ref_t *ref, int64_t now_ms);

/* Number of entries (for metrics and tests). */
size_t router_prefs_cache_size(router_prefs_cache_t *c);

/* One client of a batch lookup. tenant and client are borrowed; the lookup
 * fills ref (a new reference, or NULL when the client has no row) and sets
 * found. */
typedef struct router_prefs_key {
    const char *tenant;
    const char *client;
    router_prefs_ref_t *ref;
    int found;
} router_prefs_key_t;

/* Reads the snapshots of the n keys from client_preferences in one
 * statement. A row whose snapshot does not validate (a newer schema, a hand
 * edit) is logged by the caller through *n_unreadable and yields a snapshot
 * opted out of every channel: the router never sends against preferences it
 * cannot read. Returns 0, CMN_ERR_UNAVAILABLE (connection broken), CMN_ERR_DB
 * (message in errstr) or CMN_ERR_NOMEM. */
int router_prefs_load(PGconn *conn, router_prefs_key_t *keys, size_t n, size_t *n_unreadable, char *errstr,
                      size_t errlen);

/* Parses one stored or produced snapshot (len bytes of JSON) into a new
 * reference. Returns 0, CMN_ERR_INVALID (not a valid snapshot) or
 * CMN_ERR_NOMEM. Pure. */
int router_prefs_parse(const char *json, size_t len, router_prefs_ref_t **out);

/* A snapshot refusing every channel for (tenant, client): what an unreadable
 * row stands for. NULL when out of memory. */
router_prefs_ref_t *router_prefs_refuse_all(const char *tenant, const char *client);

#endif
