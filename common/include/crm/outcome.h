/* outcome.h - what a sending worker does after one attempt: the pure planner
 * of retries, fallback and dead letters.
 *
 * The worker core (crm/worker.h) classifies every attempt as sent, retryable
 * or permanent; cmn_outcome_plan() turns that class, the Dispatch and the
 * retry policy into exactly one action:
 *
 *   SENT      the provider took the message.
 *   RETRY     retryable, attempts left and the next attempt due no later
 *             than the deadline: the Dispatch goes again, attempt + 1, through
 *             the retry tier chosen for its due time (crm/delay.h).
 *   FALLBACK  permanent, or retryable with no attempt left on this channel
 *             (max_attempts reached, or the next attempt would be due after
 *             the deadline), and the fallback plan names a channel the
 *             recipient has an address for: a new Dispatch for that channel,
 *             hop + 1, attempt 1, with the rest of the plan.
 *   FAILED    permanent and nothing to fall back to.
 *   DEAD      retryable, no attempt left, and nothing to fall back to: the
 *             message is given up and a copy goes to crm.dlq.
 *
 * Decisions (docs/channels.md, "Retries, fallback and dead letters"):
 * - Retries exhausted on a channel with a plan left is a FALLBACK, not DEAD:
 *   the communication is not lost while another channel can carry it, and
 *   only a communication that ends nowhere is a dead letter.
 * - The schedule is crm/backoff.h: full jitter in [0, min(cap, base *
 *   2^(attempt-1))], never shorter than the provider's Retry-After, and no
 *   retry at max_attempts or when the next attempt would be due after the
 *   deadline. A Retry-After longer than the cap is still honoured (the
 *   provider knows when it will take the message again); only the deadline
 *   can veto it.
 * - Once the deadline (the request's expires_at) has passed, nothing more is
 *   sent: no retry and no fallback either. Sending a stale message on
 *   another channel is worse than not sending it; the outcome is FAILED
 *   (permanent) or DEAD (retryable).
 * - A fallback channel without an address in dispatch.recipient is skipped
 *   and dropped from the plan (it could never be used later either).
 *
 * Pure: no clock (now_ms is passed), no randomness of its own (rnd is
 * passed), no I/O, no allocation. */
#ifndef CRM_OUTCOME_H
#define CRM_OUTCOME_H

#include <stddef.h>
#include <stdint.h>

#include "crm/backoff.h"
#include "crm/channel.h"
#include "crm/delay.h"
#include "crm/dispatch.h"
#include "crm/worker.h"

typedef enum cmn_outcome_action {
    CMN_OUTCOME_SENT = 0,
    CMN_OUTCOME_RETRY = 1,
    CMN_OUTCOME_FALLBACK = 2,
    CMN_OUTCOME_FAILED = 3,
    CMN_OUTCOME_DEAD = 4
} cmn_outcome_action_t;

/* Why the channel got no further attempt (FALLBACK, FAILED, DEAD). */
typedef enum cmn_outcome_why {
    CMN_OUTCOME_WHY_NONE = 0,      /* SENT and RETRY */
    CMN_OUTCOME_WHY_PERMANENT = 1, /* the failure was permanent */
    CMN_OUTCOME_WHY_ATTEMPTS = 2,  /* max_attempts reached */
    CMN_OUTCOME_WHY_DEADLINE = 3   /* the next attempt would be due after the deadline, or it passed */
} cmn_outcome_why_t;

/* "sent", "retry", "fallback", "failed", "dead"; "unknown" otherwise. */
const char *cmn_outcome_action_name(cmn_outcome_action_t a);
/* "", "permanent", "attempts_exhausted", "deadline_exceeded": the status
 * events' reason token. */
const char *cmn_outcome_why_name(cmn_outcome_why_t w);

/* The retry settings of a worker, checked by cmn_outcome_policy_check(). */
#define CMN_OUTCOME_MAX_ATTEMPTS_MIN 1
#define CMN_OUTCOME_MAX_ATTEMPTS_MAX 50
#define CMN_OUTCOME_DEFAULT_MAX_ATTEMPTS 5
#define CMN_OUTCOME_DEFAULT_BASE_MS 5000
#define CMN_OUTCOME_DEFAULT_CAP_MS 1800000

/* Fills *p with the defaults: 5 attempts, base 5 s, cap 30 min. */
void cmn_outcome_policy_default(cmn_backoff_t *p);

/* 0 when max_attempts is in 1..50, base_ms > 0 and cap_ms >= base_ms; else
 * CMN_ERR_INVALID with the reason in errstr (may be NULL). */
int cmn_outcome_policy_check(const cmn_backoff_t *p, char *errstr, size_t errlen);

/* Room for a reason line: crm.dlq's x-crm-dlq-reason and the log. */
#define CMN_OUTCOME_REASON_MAX 768

/* The plan. Everything is copied in, except next_to (below). */
typedef struct cmn_outcome {
    cmn_outcome_action_t action;
    cmn_outcome_why_t why;

    /* RETRY */
    int next_attempt;       /* d->attempt + 1 */
    int64_t delay_ms;       /* due_at - now, >= 0 */
    int64_t due_at_ms;      /* when the next attempt is due (epoch ms) */
    int64_t retry_after_ms; /* the provider's hint that was honoured; 0 when none */
    cmn_delay_hop_t hop;    /* topic (a retry tier, or crm.send.<ch> when already due) and headers */

    /* FALLBACK */
    cmn_channel_t next_channel;
    int next_hop;                          /* d->hop + 1 */
    const char *next_to;                   /* the next channel's address; borrowed from d->recipient */
    cmn_channel_t plan[CMN_CHANNEL__COUNT]; /* the plan left after next_channel, in order */
    size_t n_plan;
    cmn_channel_t skipped[CMN_CHANNEL__COUNT]; /* plan channels passed over for want of an address */
    size_t n_skipped;

    /* FALLBACK, FAILED, DEAD: one line saying what happened, for logs (no
     * personal data beyond what the channel put in its error message) and
     * for crm.dlq. E.g. "retries exhausted: 5 attempts, last error 20500:
     * Internal Server Error". */
    char reason[CMN_OUTCOME_REASON_MAX];
} cmn_outcome_t;

/* The first channel of d's fallback plan that d->recipient has an address
 * for. Returns 1 and fills *next, *to (borrowed from d->recipient), rest
 * and *n_rest (the plan after it; rest has room for CMN_CHANNEL__COUNT), and
 * skipped and *n_skipped (both may be NULL: the channels passed over); 0
 * when there is none (the out-parameters are then NONE, NULL and 0). Also usable by anything
 * else that moves a communication to its next channel. */
int cmn_outcome_next_channel(const cmn_dispatch_t *d, cmn_channel_t *next, const char **to, cmn_channel_t *rest,
                             size_t *n_rest, cmn_channel_t *skipped, size_t *n_skipped);

/* Plans what follows attempt d->attempt of d, which ended as res, at now_ms
 * under policy, with rnd a uniformly random 64-bit value for the jitter (the
 * caller's generator; fixed in tests). d, res and policy are borrowed;
 * out->next_to points into d and lives as long as d. Returns 0, or
 * CMN_ERR_INVALID for a NULL argument, an invalid policy, an attempt below
 * 1, a channel that is not a real one, or a now_ms outside
 * 1..CMN_DELAY_MAX_DUE_AT_MS (*out is then zeroed). */
int cmn_outcome_plan(const cmn_dispatch_t *d, const cmn_worker_result_t *res, const cmn_backoff_t *policy,
                     int64_t now_ms, uint64_t rnd, cmn_outcome_t *out);

#endif
