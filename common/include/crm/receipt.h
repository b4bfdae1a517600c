/* receipt.h - receipt-driven fallback: the pure rules.
 *
 * A provider's `sent` only means the provider took the message. Whether it
 * reached the person comes later, as a delivery receipt through the webhook
 * receiver. Two things should move a communication to the next channel of
 * its plan after `sent`:
 *   - a failed or undelivered receipt for that hop;
 *   - no delivery receipt within the urgency's receipt deadline (for
 *     example critical and not delivered within 120 s).
 *
 * How it works (docs/webhooks.md, "Receipt-driven fallback"): when a worker
 * reports `sent` on a channel that gives receipts (SMS, WhatsApp) and the
 * Dispatch still has a fallback plan, it also produces a *watch*: the
 * next hop's Dispatch, ready to go, parked in the crm.defer.* tiers with the
 * target crm.send.<next channel> and the header
 *     x-crm-guard: r1:<communication_id>:<hop>:<sent_at_ms>:<deadline_at_ms>
 * The router consumes the defer tiers; when a watch comes due it reads what
 * PostgreSQL knows of that hop and cmn_receipt_decide() says:
 *   DROP     - delivered/read/opened/clicked at that hop, or the
 *              communication already moved to a later hop, or it has been
 *              watched for max_wait without any receipt (it stays `sent`);
 *   DELIVER  - a failed receipt at that hop, or the deadline passed without
 *              a delivery: the parked Dispatch goes to crm.send.<next> and
 *              a `fallback` status names both channels;
 *   RECHECK  - nothing known yet: look again at recheck_at_ms.
 * The watch therefore checks every check_interval until the deadline (or
 * max_wait), so a failed receipt moves the message on within one interval
 * (plus the defer tier's head-of-line bound), and a delivered one stops
 * the watch at its next check.
 *
 * Everything here is pure: no clock (callers pass now), no I/O. */
#ifndef CRM_RECEIPT_H
#define CRM_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "crm/channel.h"
#include "crm/uuid.h"

#define CMN_RECEIPT_GUARD_MAX 96

typedef struct cmn_receipt_policy {
    /* Deadline for a delivery receipt after `sent`, per urgency (index
     * cmn_urgency_t); 0 = none (only a failed receipt triggers the
     * fallback). */
    int64_t deadline_ms[4];
    int64_t check_interval_ms; /* how often a watch looks for a receipt, > 0 */
    int64_t max_wait_ms;       /* stop watching after this long without a deadline, > 0 */
} cmn_receipt_policy_t;

/* The defaults: critical 120 s, high 10 min, normal and low none; checks
 * every 15 s; watches end after 24 h. */
void cmn_receipt_policy_default(cmn_receipt_policy_t *p);

/* 1 when channel c reports delivery receipts (SMS, WhatsApp), so watching
 * it makes sense. Email has none (opens are not receipts). */
int cmn_receipt_channel_has_receipts(cmn_channel_t c);

typedef struct cmn_receipt_guard {
    char communication_id[CMN_UUID_STR_LEN + 1];
    int hop;                /* the hop whose receipt is awaited */
    int64_t sent_at_ms;     /* when the worker saw `sent` */
    int64_t deadline_at_ms; /* sent_at + deadline, 0 when none */
} cmn_receipt_guard_t;

/* The watch for a hop sent at sent_at_ms with urgency u: fills *guard and
 * the first time to check (*first_check_at_ms). Returns 0, or
 * CMN_ERR_INVALID for a bad argument (invalid id, negative hop, bad
 * policy). */
int cmn_receipt_watch(const cmn_receipt_policy_t *p, const char *communication_id, int hop, cmn_urgency_t u,
                      int64_t sent_at_ms, cmn_receipt_guard_t *guard, int64_t *first_check_at_ms);

/* "r1:<id>:<hop>:<sent_at_ms>:<deadline_at_ms>" into out. Returns 0, or
 * CMN_ERR_OVERFLOW / CMN_ERR_INVALID. */
int cmn_receipt_guard_format(const cmn_receipt_guard_t *g, char *out, size_t outlen);

/* Parses a guard header value (bytes, not NUL-terminated). Strict: exactly
 * the format above, decimal digits without sign or leading zeros, a valid
 * UUID. Returns 0 or CMN_ERR_INVALID. */
int cmn_receipt_guard_parse(const void *value, size_t len, cmn_receipt_guard_t *out);

/* What PostgreSQL knows of the watched communication. */
typedef struct cmn_receipt_facts {
    int found;          /* the communication has a row */
    int current_hop;    /* its current hop (communications.hop) */
    int delivered;      /* delivered, read, opened or clicked recorded at the watched hop */
    int failed;         /* failed recorded at the watched hop (after sent: a receipt) */
} cmn_receipt_facts_t;

typedef enum cmn_receipt_action {
    CMN_RECEIPT_DROP = 0,
    CMN_RECEIPT_DELIVER = 1,
    CMN_RECEIPT_RECHECK = 2
} cmn_receipt_action_t;

typedef enum cmn_receipt_why {
    CMN_RECEIPT_WHY_NONE = 0,
    CMN_RECEIPT_WHY_DELIVERED,     /* DROP: the hop was delivered */
    CMN_RECEIPT_WHY_MOVED_ON,      /* DROP: a later hop exists already */
    CMN_RECEIPT_WHY_GAVE_UP,       /* DROP: max_wait passed without a receipt */
    CMN_RECEIPT_WHY_FAILED,        /* DELIVER: failed/undelivered receipt */
    CMN_RECEIPT_WHY_DEADLINE,      /* DELIVER: no delivery before the deadline */
    CMN_RECEIPT_WHY_WAITING        /* RECHECK */
} cmn_receipt_why_t;

/* "delivered", "moved_on", "gave_up", "receipt_failed", "receipt_deadline",
 * "waiting"; "" for NONE. The DELIVER names are the `fallback` status's
 * reason. */
const char *cmn_receipt_why_name(cmn_receipt_why_t w);

typedef struct cmn_receipt_decision {
    cmn_receipt_action_t action;
    cmn_receipt_why_t why;
    int64_t recheck_at_ms; /* RECHECK: when to look again (> now) */
} cmn_receipt_decision_t;

/* Decides for a due watch at now_ms. facts NULL = the database could not be
 * asked (the caller retries; this is not a decision). Order: moved on,
 * delivered, failed, deadline, gave up, else recheck at the earliest of
 * now + interval, the deadline and sent_at + max_wait. A communication not
 * found yet (the projector lags) is rechecked. Returns 0 or
 * CMN_ERR_INVALID. */
int cmn_receipt_decide(const cmn_receipt_policy_t *p, const cmn_receipt_guard_t *g, const cmn_receipt_facts_t *facts,
                       int64_t now_ms, cmn_receipt_decision_t *out);

#endif
