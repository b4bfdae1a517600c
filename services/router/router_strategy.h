/* router_strategy.h - which channel a request goes out on (pure: no I/O, no
 * clock; the caller passes "now").
 *
 * The decision, in order:
 *  1. Expired: a request whose expires_at is at or before now is suppressed
 *     with reason "expired", whatever its channels and addresses.
 *  2. Candidates: the request's explicit `channels`, else the recipient's
 *     preferred channels, else the message type's order from the routing
 *     file, else the file's "default" order. Duplicates are dropped (the first
 *     occurrence keeps its place).
 *  3. Urgency, only when the order did NOT come from explicit `channels`:
 *     critical and high move the instant channels (WhatsApp, SMS) ahead of
 *     email, low moves email ahead of the instant channels; both moves are
 *     stable (channels keep their relative order otherwise); normal keeps the
 *     order. An explicit `channels` list is the sender's deliberate choice
 *     and is respected exactly as given: an upstream service that says
 *     ["email","sms"] for a critical message wants email first.
 *     (critical differs from high once quiet hours exist: it ignores them.)
 *  4. Filters, applied in order to every candidate; each either keeps the
 *     channel or drops it with a reason:
 *       address   - the recipient has no address for the channel
 *       provider  - the channel is not enabled (no configured provider)
 *     Later filters (opt-outs, consent, quiet hours, mobile-number checks)
 *     slot into this list; see router_strategy.c.
 *  5. The first remaining channel gets the Dispatch, the rest are its
 *     fallback plan. Nothing left: suppressed with
 *       no_address - every candidate was dropped for lacking an address;
 *       no_channel - otherwise (nothing enabled, or mixed reasons): the
 *                    recipient is reachable on some channel but not on one
 *                    this deployment can send on.
 *     The "address" filter runs first so that a channel that is both disabled
 *     and unaddressed counts as unaddressed, which is what makes "every
 *     candidate lacked an address" read directly off the drop reasons.
 */
#ifndef ROUTER_STRATEGY_H
#define ROUTER_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include "crm/channel.h"
#include "crm/request.h"
#include "router_config.h"

/* Where the candidate order came from. */
typedef enum router_source {
    ROUTER_SOURCE_EXPLICIT = 0, /* request.channels */
    ROUTER_SOURCE_PREFERRED,    /* recipient.preferred_channels */
    ROUTER_SOURCE_MESSAGE_TYPE, /* routing file, message_types.<type> */
    ROUTER_SOURCE_DEFAULT       /* routing file, default */
} router_source_t;

/* Why a request (or one candidate channel) was not used. The names are the
 * `reason` of `suppressed` status events. */
typedef enum router_reason {
    ROUTER_REASON_NONE = 0,
    ROUTER_REASON_EXPIRED,
    ROUTER_REASON_NO_ADDRESS,
    ROUTER_REASON_NO_CHANNEL
} router_reason_t;

/* "expired", "no_address", "no_channel"; "" for NONE. */
const char *router_reason_name(router_reason_t r);
/* "explicit", "preferred", "message_type", "default". */
const char *router_source_name(router_source_t s);

/* Everything the decision depends on. All pointers are borrowed. */
typedef struct router_input {
    const cmn_request_t *request;   /* validated */
    const router_config_t *config;
    unsigned enabled;               /* ROUTER_CHANNEL_BIT()s of channels with a provider */
    int64_t now_ms;                 /* wall clock, epoch ms */
} router_input_t;

typedef struct router_decision {
    int suppressed;                 /* 1: nothing to send, see reason */
    router_reason_t reason;         /* NONE unless suppressed */
    router_source_t source;
    /* The plan (when not suppressed). */
    cmn_channel_t channel;          /* CMN_CHANNEL_NONE when suppressed */
    const char *address;            /* borrowed from request->recipient; NULL when suppressed */
    cmn_channel_t fallback[CMN_CHANNEL__COUNT];
    size_t n_fallback;
    /* Candidates after de-duplication and urgency ordering, before filtering. */
    cmn_channel_t candidates[CMN_CHANNEL__COUNT];
    size_t n_candidates;
    /* What the filters dropped and why, in candidate order (for logs). */
    cmn_channel_t dropped[CMN_CHANNEL__COUNT];
    router_reason_t dropped_reason[CMN_CHANNEL__COUNT];
    size_t n_dropped;
} router_decision_t;

/* Decides for in->request. Fills *out completely. Returns 0, or
 * CMN_ERR_INVALID when an input pointer is NULL. */
int router_decide(const router_input_t *in, router_decision_t *out);

#endif
