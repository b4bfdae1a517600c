/* router_receipts.h - the guard of receipt watches (receipt-driven
 * fallback, crm/receipt.h and docs/webhooks.md).
 *
 * A worker that reports `sent` on a channel with receipts parks the next
 * hop's Dispatch on crm.defer.* with x-crm-target crm.send.<next> and
 * x-crm-guard "r1:<id>:<hop>:<sent_at>:<deadline_at>". The router's defer
 * consumer (crm/delayq.h) calls router_receipts_guard() when such a watch
 * comes due. The guard reads what PostgreSQL knows of the watched hop
 * (communications.hop; the events recorded at that hop), lets
 * cmn_receipt_decide() rule, and answers the queue:
 *   DROP     -> DROP     (delivered, moved on, or watched for max_wait);
 *   DELIVER  -> DELIVER  the parked Dispatch to crm.send.<next>, plus one
 *                        `fallback` StatusEvent on crm.status in the same
 *                        batch (hop and channel of the watched hop,
 *                        details {"from","to","why"}, reason = why);
 *   RECHECK  -> RECHECK  at the time the rules give;
 *   database unreachable  -> RETRY (the queue asks again shortly);
 *   malformed guard or Dispatch, or one that does not match its guard
 *                         -> REJECT (crm.dlq with the reason).
 * A `fallback` event already recorded at the watched hop counts as moved
 * on, so a watch re-delivered after a crash (at least once) usually finds
 * the first fallback and drops; the event's id is derived from the watch,
 * so a repeat is stored once.
 *
 * Threading: the guard runs on the defer consumer's thread only, with its
 * own PostgreSQL connection (the router's loop has another). */
#ifndef ROUTER_RECEIPTS_H
#define ROUTER_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/delayq.h"
#include "crm/dispatch.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/receipt.h"

/* What PostgreSQL knows of a watched hop, beyond cmn_receipt_facts_t. */
typedef struct router_receipt_facts {
    cmn_receipt_facts_t facts;
    cmn_channel_t channel; /* the watched hop's channel (from its events); NONE when no event is recorded yet */
    int sent_attempt;      /* the attempt of its `sent` event; 0 when not recorded yet */
} router_receipt_facts_t;

/* The guard's answer, before it is written into the queue's out struct. */
typedef struct router_receipt_answer {
    cmn_delayq_verdict_t verdict;
    cmn_receipt_why_t why;   /* the rule that decided (NONE for RETRY and REJECT) */
    int64_t recheck_at_ms;   /* RECHECK */
    char reason[160];        /* REJECT: the DLQ reason */
} router_receipt_answer_t;

/* Decides for the watch with guard header g_value (g_len bytes) parking the
 * Dispatch next (NULL when its value did not parse; parse_error then says
 * why) at now_ms, from facts (NULL: the database could not be asked).
 * On DELIVER writes the `fallback` StatusEvent's JSON into *fallback_json
 * (reset first). Pure. Returns 0 or CMN_ERR_INVALID for a NULL policy,
 * answer or buffer. */
int router_receipts_decide(const cmn_receipt_policy_t *p, const char *g_value, size_t g_len,
                           const cmn_dispatch_t *next, const char *parse_error, const router_receipt_facts_t *facts,
                           int64_t now_ms, router_receipt_answer_t *ans, cmn_buf_t *fallback_json);

/* The `fallback` StatusEvent for watch g moving on to next: channel and
 * attempt of the watched hop (attempt 0 is written as 1), reason and
 * details.why = why's name, event_id from the watch (discriminator
 * "receipt"), occurred_at now_ms. Pure. Returns 0 or a negative code. */
int router_receipts_fallback_event(const cmn_receipt_guard_t *g, const cmn_dispatch_t *next, cmn_channel_t from,
                                   int attempt, cmn_receipt_why_t why, int64_t now_ms, cmn_buf_t *out);

/* The facts query: $1 communication id, $2 hop. One row (current hop,
 * delivered, failed, fallback at the hop, sent attempt, channel) or none
 * when the communication is unknown. Exposed for the tests. */
extern const char ROUTER_RECEIPTS_FACTS_SQL[];

typedef struct router_receipts router_receipts_t;

/* Creates the guard's context: the policy (check interval and max wait
 * matter; deadlines travel in the guard), the database URL (borrowed, must
 * outlive it), log and metrics (borrowed; metrics may be NULL: registers
 * router_receipt_watches_total{outcome}). Does not connect yet. NULL with
 * the reason in errstr. */
router_receipts_t *router_receipts_new(const cmn_receipt_policy_t *policy, const char *database_url,
                                       const cmn_log_t *log, cmn_metrics_t *metrics, char *errstr, size_t errlen);

/* The cmn_delayq_guard_fn of the router's defer consumer; ctx is a
 * router_receipts_t. */
cmn_delayq_verdict_t router_receipts_guard(void *ctx, const cmn_kafka_message_t *rec, const char *value,
                                           size_t value_len, cmn_delayq_guard_out_t *out);

/* Closes the connection and frees. NULL is a no-op. */
void router_receipts_destroy(router_receipts_t *r);

#endif
