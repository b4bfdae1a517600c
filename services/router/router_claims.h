/* router_claims.h - request claims in PostgreSQL: the router's duplicate
 * filter.
 *
 * Every valid request is claimed by (tenant_id, request_id) in
 * request_claims before anything is produced for it, one statement per
 * Kafka batch. A claim is 'claimed' while its outputs are being produced and
 * 'done' once they are acknowledged by Kafka. The claim also records the
 * Kafka record that made it (source topic, partition, offset) and an output
 * fence (see router_readback.h), which is what makes crash recovery exact:
 *
 *  - The router commits a record's offset only after marking its claim
 *    'done'. So a claim that is still 'claimed' belongs to a record whose
 *    offset is not committed: that very record will be delivered again.
 *  - When it is, the claim's source matches the record: RESUME. Its outputs
 *    may already be partly in Kafka, so the service looks for them above the
 *    fence before producing again (router_readback.h).
 *  - Any other record with the same key is a duplicate submission: OWNED
 *    when the claim is still 'claimed' (its own record will finish it), DONE
 *    when it is 'done'. Both are skipped.
 *  - Within one batch, the second occurrence of a key is a duplicate
 *    (BATCH_DUP), found in memory before any SQL runs.
 *
 * docs/routing.md walks through every crash point. */
#ifndef ROUTER_CLAIMS_H
#define ROUTER_CLAIMS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"

typedef enum router_claim_state {
    ROUTER_CLAIM_UNKNOWN = 0, /* not decided (a claim that vanished between statements stays here) */
    ROUTER_CLAIM_NEW,         /* claimed now: first sight of this request */
    ROUTER_CLAIM_RESUME,      /* claimed earlier by this same record, never finished */
    ROUTER_CLAIM_DONE,        /* finished earlier: duplicate */
    ROUTER_CLAIM_OWNED,       /* claimed by another record that has not finished: duplicate */
    ROUTER_CLAIM_BATCH_DUP,   /* an earlier record of this batch has the same key: duplicate */
    ROUTER_CLAIM_FOUND,       /* lookup only: a claim exists (any state) */
    ROUTER_CLAIM_ABSENT       /* lookup only: no claim */
} router_claim_state_t;

const char *router_claim_state_name(router_claim_state_t s);

/* One key of a batch. The inputs are borrowed and must stay valid until the
 * last router_claims_* call on the array. */
typedef struct router_claim {
    const char *tenant_id;
    const char *request_id;
    const char *communication_id; /* canonical UUID string */
    const char *source_topic;
    int32_t source_partition;
    int64_t source_offset;
    /* 1: only find out whether a claim exists; never insert. Used for
     * invalid records that carry ids, so a broken copy of an accepted
     * request cannot mark it rejected. */
    int lookup_only;
    /* Outputs. */
    router_claim_state_t state;
    char *fence; /* RESUME only: the fence stored with the claim (owned; router_claims_release frees) or NULL */
} router_claim_t;

/* Marks the second and later occurrences of each (tenant_id, request_id)
 * among the non-lookup keys as BATCH_DUP; the earliest (lowest index) stays
 * UNKNOWN. Pure; O(n log n). Returns 0 or CMN_ERR_NOMEM. */
int router_claims_mark_batch_duplicates(router_claim_t *keys, size_t n);

/* Claims every UNKNOWN non-lookup key (one INSERT ... ON CONFLICT DO NOTHING
 * RETURNING), then reads the state of the keys that conflicted and of the
 * lookup keys (one SELECT), and sets each key's state. Calls
 * router_claims_mark_batch_duplicates() first. fence_json (borrowed, may be
 * NULL) is stored with the new claims. conn is borrowed.
 * Returns 0, CMN_ERR_UNAVAILABLE when the connection is broken, CMN_ERR_DB
 * for other server errors (message in errstr), or CMN_ERR_NOMEM. */
int router_claims_acquire(PGconn *conn, router_claim_t *keys, size_t n, const char *fence_json,
                          char *errstr, size_t errlen);

/* Marks every NEW and RESUME key 'done' in one UPDATE. Call only after all
 * their outputs are acknowledged by Kafka. Returns 0, CMN_ERR_UNAVAILABLE,
 * CMN_ERR_DB or CMN_ERR_NOMEM. */
int router_claims_finish(PGconn *conn, const router_claim_t *keys, size_t n, char *errstr, size_t errlen);

/* Frees what acquire stored in the keys (fences) and resets their states. */
void router_claims_release(router_claim_t *keys, size_t n);

/* Appends a PostgreSQL array literal of the n strings ({"a","b"}, quotes and
 * backslashes escaped) to out. Pure. Returns 0 or CMN_ERR_NOMEM. */
int router_pg_text_array(cmn_buf_t *out, const char *const *items, size_t n);

#endif
