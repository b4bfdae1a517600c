/* router_strategy.h - which channel a request goes out on, and whether it
 * goes now (pure: no I/O, no clock; the caller passes "now" and the client's
 * preferences snapshot).
 *
 * The decision, in order:
 *  1. Candidates: the request's explicit `channels`, else the client's
 *     preferred channels from its preferences snapshot, else the recipient's
 *     preferred channels in the request, else the message type's order from
 *     the routing file, else the file's "default" order. Duplicates are
 *     dropped (the first occurrence keeps its place).
 *  2. Expired: a request whose expires_at is at or before now is suppressed
 *     with reason "expired", whatever its channels and addresses.
 *  3. Urgency, only when the order did NOT come from explicit `channels`:
 *     critical and high move the instant channels (WhatsApp, SMS) ahead of
 *     email, low moves email ahead of the instant channels; both moves are
 *     stable; normal keeps the order. An explicit `channels` list is the
 *     sender's deliberate choice and is respected exactly as given.
 *  4. Filters, applied in order to every candidate; each either keeps the
 *     channel or drops it with a reason:
 *       address    - the recipient has no address for the channel
 *       opted_out  - the client opted out of the channel (preferences)
 *       no_consent - WhatsApp without a granted opt-in (preferences); with
 *                    no preferences at all there is no consent, unless
 *                    in->whatsapp_consent_optional is set
 *       not_mobile - SMS or WhatsApp to a number that cannot receive them
 *                    (crm/phone.h: invalid, landline, VoIP, ...)
 *       provider   - the channel is not enabled (no configured provider)
 *  5. Nothing left: suppressed with the reason of highest precedence among
 *     the drops: opted_out > no_consent > not_mobile > no_channel >
 *     no_address (so a request whose candidates all failed for one reason
 *     gets that reason; see docs/routing.md for why this order).
 *  6. send_after in the future: deferred until send_after (reason
 *     send_after), or suppressed "expired" when expires_at comes first.
 *  7. Quiet hours: when the first remaining channel is held back by the
 *     quiet-hours policy for the request's urgency (critical never is) and
 *     now is inside the client's quiet hours (window from the preferences,
 *     zone from the preferences, else recipient.timezone; no window or no
 *     zone: no quiet hours), deferred until the window ends (reason
 *     quiet_hours), or suppressed "quiet_hours_expired" when expires_at
 *     comes at or before that end. A later channel that quiet hours do not
 *     hold back (email) does not go instead: the order is the client's or
 *     the sender's, and quiet hours only shift it in time.
 *  8. Otherwise the first remaining channel gets the Dispatch, the rest are
 *     its fallback plan.
 * A deferred decision still carries the plan it would have used (channel,
 * fallback), for logs; the request is decided again when it comes back.
 */
#ifndef ROUTER_STRATEGY_H
#define ROUTER_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include "crm/channel.h"
#include "crm/preferences.h"
#include "crm/quiet_hours.h"
#include "crm/request.h"
#include "router_config.h"

/* Where the candidate order came from. */
typedef enum router_source {
    ROUTER_SOURCE_EXPLICIT = 0, /* request.channels */
    ROUTER_SOURCE_PREFERRED,    /* recipient.preferred_channels */
    ROUTER_SOURCE_PREFERENCES,  /* the client's preferences snapshot */
    ROUTER_SOURCE_MESSAGE_TYPE, /* routing file, message_types.<type> */
    ROUTER_SOURCE_DEFAULT       /* routing file, default */
} router_source_t;

/* Why a request (or one candidate channel) was not used. The names are the
 * `reason` of `suppressed` status events. */
typedef enum router_reason {
    ROUTER_REASON_NONE = 0,
    ROUTER_REASON_EXPIRED,
    ROUTER_REASON_NO_ADDRESS,
    ROUTER_REASON_NO_CHANNEL,
    ROUTER_REASON_OPTED_OUT,
    ROUTER_REASON_NO_CONSENT,
    ROUTER_REASON_NOT_MOBILE,
    ROUTER_REASON_QUIET_HOURS_EXPIRED
} router_reason_t;

/* Why a request was deferred. The names are the `reason` of `deferred`
 * status events. */
typedef enum router_defer {
    ROUTER_DEFER_NONE = 0,
    ROUTER_DEFER_QUIET_HOURS,
    ROUTER_DEFER_SEND_AFTER
} router_defer_t;

/* "expired", "no_address", "no_channel", "opted_out", "no_consent",
 * "not_mobile", "quiet_hours_expired"; "" for NONE. */
const char *router_reason_name(router_reason_t r);
/* "explicit", "preferred", "preferences", "message_type", "default". */
const char *router_source_name(router_source_t s);
/* "quiet_hours", "send_after"; "" for NONE. */
const char *router_defer_name(router_defer_t d);

/* Everything the decision depends on. All pointers are borrowed. */
typedef struct router_input {
    const cmn_request_t *request;   /* validated */
    const router_config_t *config;
    unsigned enabled;               /* ROUTER_CHANNEL_BIT()s of channels with a provider */
    int64_t now_ms;                 /* wall clock, epoch ms */
    const cmn_preferences_t *prefs; /* the client's snapshot, or NULL when none is known */
    const cmn_quiet_policy_t *quiet;/* channels quiet hours hold back; NULL: none */
    int whatsapp_consent_optional;  /* 1: WhatsApp does not need a consent record
                                       (ROUTER_WHATSAPP_REQUIRE_CONSENT=false) */
} router_input_t;

typedef struct router_decision {
    int suppressed;                 /* 1: nothing to send, see reason */
    router_reason_t reason;         /* NONE unless suppressed */
    int deferred;                   /* 1: not now; decide again at defer_until_ms */
    router_defer_t defer_reason;    /* NONE unless deferred */
    int64_t defer_until_ms;         /* epoch ms, > now; 0 unless deferred */
    int quiet_zone_invalid;         /* 1: the zone was unknown to ICU, quiet hours were skipped (log it) */
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

/* Decides for in->request. Fills *out completely. Returns 0,
 * CMN_ERR_INVALID when an input pointer is NULL, or CMN_ERR_UNAVAILABLE when
 * ICU cannot evaluate quiet hours (missing data, out of memory): the caller
 * retries rather than guess. */
int router_decide(const router_input_t *in, router_decision_t *out);

#endif
