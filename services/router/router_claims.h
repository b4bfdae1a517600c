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
 *  - Within one batch, the second occurrence of a key (with the same
 *    deferral number, below) is a duplicate (BATCH_DUP), found in memory
 *    before any SQL runs.
 *
 * Deferrals. A request the strategy defers (quiet hours, send_after) is
 * finished as 'deferred' instead of 'done', with its deferral sequence
 * number incremented to n, and its record goes to crm.defer.* carrying the
 * header x-crm-deferral: n. When that record comes back on crm.requests, its
 * n equals the claim's sequence while the claim is 'deferred': it RETURNs,
 * i.e. takes the claim back (state 'claimed', its own source and a fresh
 * fence) in one conditional UPDATE, and is routed again. Anything else that
 * meets a 'deferred' claim is a duplicate (DEFERRED): a copy of the original
 * request (no header), a second copy of the deferred record (the claim was
 * already taken back, so it meets 'claimed' or 'done' instead), a copy from
 * an older deferral (n below the sequence). Only one record can ever take a
 * given sequence number back, so a returning request is routed once.
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
    ROUTER_CLAIM_RETURN,      /* a deferred request came back with the claim's sequence: claimed again by this record */
    ROUTER_CLAIM_DEFERRED,    /* the claim is deferred and this record is not its returning copy: duplicate */
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
    /* The record's x-crm-deferral number (router_deferral_parse), 0 when it
     * has none: only a record whose number equals a deferred claim's
     * sequence takes the claim back. */
    int64_t deferral;
    /* Outputs. */
    router_claim_state_t state;
    char *fence; /* RESUME only: the fence stored with the claim (owned; router_claims_release frees) or NULL */
    int64_t seq; /* NEW, RESUME, RETURN: the claim's deferral sequence now (0: never deferred) */
    /* Set by the caller before router_claims_finish(): 1 finishes the claim
     * as 'deferred' with sequence seq + 1 until defer_until_ms (epoch ms),
     * 0 as 'done'. */
    int defer;
    int64_t defer_until_ms;
} router_claim_t;

/* The header a deferred record carries: its deferral number. */
#define ROUTER_HDR_DEFERRAL "x-crm-deferral"
/* Largest deferral number accepted; a request is not deferred that often. */
#define ROUTER_DEFERRAL_MAX 1000000000

/* Parses an x-crm-deferral value (len bytes, not NUL-terminated; NULL means
 * absent): decimal digits, no sign or leading zero, 1..ROUTER_DEFERRAL_MAX.
 * Returns 0 with *n set, or CMN_ERR_INVALID (absent or malformed: *n = 0).
 * Pure. */
int router_deferral_parse(const void *value, size_t len, int64_t *n);

/* Marks the second and later occurrences of each (tenant_id, request_id,
 * deferral) among the non-lookup keys as BATCH_DUP; the earliest (lowest
 * index) stays UNKNOWN. Keys that differ only in their deferral number are
 * all kept: the claim decides which of them (if any) is the returning copy.
 * Pure; O(n log n). Returns 0 or CMN_ERR_NOMEM. */
int router_claims_mark_batch_duplicates(router_claim_t *keys, size_t n);

/* Claims every UNKNOWN non-lookup key (one INSERT ... ON CONFLICT DO NOTHING
 * RETURNING), takes back the deferred claims whose returning copy is in the
 * batch (one conditional UPDATE, only when some key carries a deferral
 * number), then reads the state of the remaining keys and of the lookup keys
 * (one SELECT), and sets each key's state. Calls
 * router_claims_mark_batch_duplicates() first. fence_json (borrowed, may be
 * NULL) is stored with the new and returned claims. conn is borrowed.
 * Returns 0, CMN_ERR_UNAVAILABLE when the connection is broken, CMN_ERR_DB
 * for other server errors (message in errstr), or CMN_ERR_NOMEM. */
int router_claims_acquire(PGconn *conn, router_claim_t *keys, size_t n, const char *fence_json,
                          char *errstr, size_t errlen);

/* Finishes every NEW, RESUME and RETURN key in one UPDATE: 'done', or
 * 'deferred' with sequence seq + 1 for keys with defer set. Call only after
 * all their outputs (the deferred record included) are acknowledged by
 * Kafka. Returns 0, CMN_ERR_UNAVAILABLE, CMN_ERR_DB or CMN_ERR_NOMEM. */
int router_claims_finish(PGconn *conn, const router_claim_t *keys, size_t n, char *errstr, size_t errlen);

/* Frees what acquire stored in the keys (fences) and resets their states. */
void router_claims_release(router_claim_t *keys, size_t n);

/* Appends a PostgreSQL array literal of the n strings ({"a","b"}, quotes and
 * backslashes escaped) to out. Pure. Returns 0 or CMN_ERR_NOMEM. */
int router_pg_text_array(cmn_buf_t *out, const char *const *items, size_t n);

#endif
