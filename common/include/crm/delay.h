/* delay.h - delay tiers: how a message waits in Kafka without blocking others.
 *
 * Kafka has no per-message delay, so a message that must wait (a retry after
 * backoff, a request deferred past quiet hours or until send_after) is
 * produced to a *tier* topic with a fixed holding time, and the tier's
 * consumer hands it on when it is due:
 *   retries:   crm.retry.<channel>.{5s,30s,5m,30m}  -> back to crm.send.<channel>
 *   deferrals: crm.defer.{1m,10m,1h}                -> back to crm.requests
 *   watches:   crm.defer.{1m,10m,1h}                -> crm.send.<channel>, only
 *              through a guard (receipt-driven fallback, crm/receipt.h)
 * Every record in a tier carries two headers: x-crm-due-at (the instant it is
 * due, epoch ms as a decimal string) and x-crm-target (the topic it goes back
 * to). Pure functions: no I/O, the caller passes the clock.
 *
 * Why a tier never blocks on a later message. A record enters tier T at its
 * Kafka timestamp `entered` and is *released* at min(due_at, entered + T).
 * Records are only placed in a tier no longer than their wait (plus a small
 * slack, below), so release is entered + T for nearly all of them, and since
 * entered grows along a partition so does release: the head of a partition is
 * always the record released first. The consumer pauses a partition until its
 * head's release (no busy polling) and never holds a record past it.
 *
 * Tier choice. For a wait W = due_at - now > 0 the tier is the largest tier T
 * with T <= W + CMN_DELAY_SLACK_MS; if W is shorter than the smallest tier
 * (minus the slack), the smallest tier (the record is then released at its
 * due time, and may sit behind an earlier record for at most that tier's
 * length). A wait W <= 0 needs no tier: the message goes straight to its
 * target.
 *
 * Cycling. When a released record is not yet due (its wait was longer than
 * its tier), the consumer *re-delays* it: it produces it again, headers
 * unchanged, to the tier chosen for the remaining wait, which may be the same
 * tier again. A 3 h deferral therefore cycles three times through
 * crm.defer.1h; a 3 h retry wait cycles six times through crm.retry.<ch>.30m;
 * 1 h 25 min goes 1h, 10m, 10m, 1m x5. The slack exists for cycling: the
 * consumer re-delays a few milliseconds after the release, and without the
 * slack a remaining wait of "1 h minus 5 ms" would drop to the 10m tier and
 * take nine hops instead of one. The price is that a record chosen with the
 * slack is released up to CMN_DELAY_SLACK_MS early relative to its tier
 * neighbours, i.e. it may wait behind an earlier record by at most that much.
 *
 * Timestamps. `entered` is the record's Kafka timestamp. Tier topics should
 * be created with message.timestamp.type=LogAppendTime so that it is the
 * broker's clock and grows monotonically along a partition; with CreateTime
 * the producers' clocks must be in sync (any skew shows up as head-of-line
 * delay, never as a message released late past its tier).
 */
#ifndef CRM_DELAY_H
#define CRM_DELAY_H

#include <stddef.h>
#include <stdint.h>

#include "crm/channel.h"

#define CMN_DELAY_HDR_DUE_AT "x-crm-due-at"
#define CMN_DELAY_HDR_TARGET "x-crm-target"

/* Sizes of the string buffers below, NUL included. */
#define CMN_DELAY_TOPIC_MAX 48  /* longest is "crm.retry.whatsapp.30s" */
#define CMN_DELAY_DUE_AT_MAX 21 /* int64 in decimal */

/* How much shorter than a tier a wait may be and still be given that tier
 * (see "Cycling" above). */
#define CMN_DELAY_SLACK_MS 1000

/* The largest x-crm-due-at accepted: 9999-12-31T23:59:59.999Z. Anything
 * beyond is garbage, not a plan. */
#define CMN_DELAY_MAX_DUE_AT_MS INT64_C(253402300799999)

typedef enum cmn_delay_kind {
    CMN_DELAY_RETRY = 0, /* crm.retry.<channel>.<tier>, target crm.send.<channel> */
    CMN_DELAY_DEFER = 1  /* crm.defer.<tier>, target crm.requests */
} cmn_delay_kind_t;

typedef struct cmn_delay_tier {
    const char *name; /* "5s", "30s", ...: the topic suffix */
    int64_t ms;
} cmn_delay_tier_t;

/* The tiers of kind, shortest first, in static storage (never freed), with
 * their count in *n. NULL (and *n = 0) for an unknown kind. Retries: 5s, 30s,
 * 5m, 30m. Deferrals: 1m, 10m, 1h. */
const cmn_delay_tier_t *cmn_delay_tiers(cmn_delay_kind_t kind, size_t *n);

/* The tier index for a wait of wait_ms (rule above; a wait <= 0 gets the
 * smallest tier, although cmn_delay_plan_hop() sends such a message straight
 * to its target instead). Returns 0, or CMN_ERR_INVALID for an unknown kind
 * or NULL tier. */
int cmn_delay_choose_tier(cmn_delay_kind_t kind, int64_t wait_ms, size_t *tier);

/* Writes the tier topic ("crm.retry.sms.5m", "crm.defer.1h") into out.
 * channel is ignored for deferrals and must be a real channel for retries.
 * Returns 0, CMN_ERR_INVALID, or CMN_ERR_OVERFLOW when outlen is too small. */
int cmn_delay_topic_name(cmn_delay_kind_t kind, cmn_channel_t channel, size_t tier, char *out, size_t outlen);

/* Writes the topic a delayed message goes back to ("crm.send.sms",
 * "crm.requests"). Same arguments and returns as cmn_delay_topic_name(). */
int cmn_delay_target_name(cmn_delay_kind_t kind, cmn_channel_t channel, char *out, size_t outlen);

/* A tier topic's name taken apart, for a consumer that learns its topic from
 * the record. */
typedef struct cmn_delay_topic {
    cmn_delay_kind_t kind;
    cmn_channel_t channel; /* CMN_CHANNEL_NONE for deferrals */
    size_t tier;
    int64_t tier_ms;
} cmn_delay_topic_t;

/* Parses a tier topic name (exact spelling only). Returns 0 or
 * CMN_ERR_INVALID. topic is borrowed. */
int cmn_delay_topic_parse(const char *topic, cmn_delay_topic_t *out);

/* Where to produce a message that must wait until due_at_ms, and the headers
 * to give it. Everything is copied into the struct; no pointers. */
typedef struct cmn_delay_hop {
    int direct;                       /* 1: already due, topic == target: no tier needed */
    size_t tier;                      /* the tier's index (meaningless when direct) */
    char topic[CMN_DELAY_TOPIC_MAX];  /* the topic to produce to */
    char target[CMN_DELAY_TOPIC_MAX]; /* value of x-crm-target */
    char due_at[CMN_DELAY_DUE_AT_MAX];/* value of x-crm-due-at */
} cmn_delay_hop_t;

/* Plans the hop for a message of kind (and channel, for retries) due at
 * due_at_ms, at now_ms. Returns 0, or CMN_ERR_INVALID for an unknown kind, a
 * retry without a real channel, or a due_at outside 1..CMN_DELAY_MAX_DUE_AT_MS
 * (*out is zeroed on error). */
int cmn_delay_plan_hop(cmn_delay_kind_t kind, cmn_channel_t channel, int64_t now_ms, int64_t due_at_ms,
                       cmn_delay_hop_t *out);

/* Plans the tier hop of a receipt watch (crm/receipt.h): a crm.defer.*
 * record due at due_at_ms whose x-crm-target is crm.send.<target>. Unlike
 * cmn_delay_plan_hop() it is never direct: a watch must reach the defer
 * consumer's guard, so one already due takes the smallest tier (and is
 * delivered, through the guard, as soon as it is read). Returns 0, or
 * CMN_ERR_INVALID for a target that is not a real channel or a due_at
 * outside 1..CMN_DELAY_MAX_DUE_AT_MS (*out zeroed). */
int cmn_delay_plan_watch(int64_t now_ms, int64_t due_at_ms, cmn_channel_t target, cmn_delay_hop_t *out);

/* The two headers of a record read from a tier, validated. */
typedef struct cmn_delay_headers {
    int64_t due_at_ms;
    char target[CMN_DELAY_TOPIC_MAX];
    /* 1 when target is not the family's default target: a crm.defer.*
     * record bound for crm.send.<channel> (a receipt watch). The consumer
     * delivers such a record only through its guard (crm/delayq.h). */
    int alternate;
} cmn_delay_headers_t;

/* Validates the raw header values of a record read from tier topic source
 * (NULL values mean "header absent"; values are bytes, not NUL-terminated,
 * and borrowed). x-crm-due-at must be a decimal integer in
 * 1..CMN_DELAY_MAX_DUE_AT_MS (digits only, no sign, spaces or leading
 * zeros). x-crm-target must be the target of source's kind: crm.send.<the
 * retry topic's channel> for a retry tier, so a retry can never be steered
 * onto another channel or topic by its headers; for a defer tier
 * crm.requests or, as an alternate target (out->alternate = 1),
 * crm.send.<email|sms|whatsapp> exactly: the receipt watches, which the
 * consumer hands on only when its guard says so. Returns 0,
 * or CMN_ERR_INVALID with "<header>: <reason>" in reason (a DLQ reason; e.g.
 * "x-crm-due-at: is missing"), or for a NULL source/out. */
int cmn_delay_headers_parse(const cmn_delay_topic_t *source, const void *due_at, size_t due_at_len,
                            const void *target, size_t target_len, cmn_delay_headers_t *out, char *reason,
                            size_t reasonlen);

/* What a tier consumer does with the head record of a partition. */
typedef enum cmn_delay_action {
    CMN_DELAY_DELIVER = 0, /* due: produce to the target, then commit */
    CMN_DELAY_REDELAY = 1, /* released but not due: produce to tier `tier`, then commit */
    CMN_DELAY_PAUSE = 2    /* not released yet: pause the partition until resume_at_ms */
} cmn_delay_action_t;

typedef struct cmn_delay_step {
    cmn_delay_action_t action;
    size_t tier;          /* REDELAY: tier index (of source's kind) for the remaining wait */
    int64_t resume_at_ms; /* PAUSE: the release instant, > now */
} cmn_delay_step_t;

/* Decides for a head record of tier source that entered the tier at
 * entered_at_ms (its Kafka timestamp; <= 0 when unknown) and is due at
 * due_at_ms:
 *   now >= due_at                          -> DELIVER
 *   now <  min(due_at, entered + tier)     -> PAUSE until that release instant
 *   otherwise (the remaining wait is longer
 *   than the tier held it)                 -> REDELAY through the tier chosen
 *                                             for due_at - now
 * An unknown timestamp counts as already released: the record is re-delayed
 * at once, and the copy gets a timestamp. Returns 0 or CMN_ERR_INVALID (NULL
 * argument, or a due_at outside 1..CMN_DELAY_MAX_DUE_AT_MS). */
int cmn_delay_next_step(const cmn_delay_topic_t *source, int64_t entered_at_ms, int64_t due_at_ms,
                        int64_t now_ms, cmn_delay_step_t *out);

/* One partition of a tier consumer's assignment, as the pause plan sees it. */
typedef struct cmn_delay_partition {
    int has_head;        /* 0: nothing buffered for this partition (caught up) */
    int64_t ready_at_ms; /* when its head needs handling: the PAUSE step's resume_at_ms */
} cmn_delay_partition_t;

typedef struct cmn_delay_pause_plan {
    size_t n_paused;      /* how many partitions to keep paused */
    int64_t resume_at_ms; /* earliest ready_at of the paused ones; 0 when none */
} cmn_delay_pause_plan_t;

/* Which of n partitions to pause at now_ms: pause[i] = 1 when partition i
 * has a head not ready yet (ready_at > now), else 0 (a ready head is handled
 * now; an empty partition is polled for new records). The consumer pauses
 * the partitions marked, resumes the others, and polls with the timeout from
 * cmn_delay_poll_timeout_ms(), so it sleeps until the earliest head is ready
 * instead of spinning. heads is borrowed; pause has n entries, written by the
 * function. Returns 0 or CMN_ERR_INVALID (NULL with n > 0, or NULL out). */
int cmn_delay_pause_plan(const cmn_delay_partition_t *heads, size_t n, int64_t now_ms, unsigned char *pause,
                         cmn_delay_pause_plan_t *out);

/* The poll timeout after plan at now_ms: the time until plan->resume_at_ms,
 * clamped to [0, max_ms]; max_ms when nothing is paused (so new records on
 * unpaused partitions and a stop request are still noticed). */
int64_t cmn_delay_poll_timeout_ms(const cmn_delay_pause_plan_t *plan, int64_t now_ms, int64_t max_ms);

#endif
