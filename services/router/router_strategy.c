/* router_strategy.c - the routing decision (see router_strategy.h). */
#include "router_strategy.h"

#include <string.h>

#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/phone.h"

/* A filter looks at one candidate channel and returns ROUTER_REASON_NONE to
 * keep it or the reason to drop it. Filters only read the input, so their
 * order changes the recorded reasons but never which channels survive. */
typedef router_reason_t (*router_filter_fn)(const router_input_t *in, cmn_channel_t c);

/* A channel is usable only with an address for it. cmn_recipient_address()
 * is the same lookup the workers use to fill `to`, so the router never plans
 * a channel a worker could not address. */
static router_reason_t filter_address(const router_input_t *in, cmn_channel_t c)
{
    const char *addr = cmn_recipient_address(&in->request->recipient, c);
    return (addr == NULL || addr[0] == '\0') ? ROUTER_REASON_NO_ADDRESS : ROUTER_REASON_NONE;
}

/* A client who opted out of a channel is never messaged on it, whoever asks:
 * an explicit `channels` list does not override an opt-out. */
static router_reason_t filter_opted_out(const router_input_t *in, cmn_channel_t c)
{
    return cmn_preferences_opted_out(in->prefs, c) ? ROUTER_REASON_OPTED_OUT : ROUTER_REASON_NONE;
}

/* WhatsApp Business policy: a business may only message a user who opted in.
 * No snapshot means no recorded opt-in, so WhatsApp is dropped unless the
 * deployment says consent is collected elsewhere. */
static router_reason_t filter_consent(const router_input_t *in, cmn_channel_t c)
{
    if (c != CMN_CHANNEL_WHATSAPP || in->whatsapp_consent_optional) {
        return ROUTER_REASON_NONE;
    }
    return cmn_preferences_whatsapp_consented(in->prefs) ? ROUTER_REASON_NONE : ROUTER_REASON_NO_CONSENT;
}

/* SMS and WhatsApp only reach numbers that can take them; the policy is the
 * SMS worker's own (cmn_phone_is_messageable), checked here so the plan
 * falls to the next channel before anything is sent. */
static router_reason_t filter_mobile(const router_input_t *in, cmn_channel_t c)
{
    cmn_phone_info_t info;
    if (c != CMN_CHANNEL_SMS && c != CMN_CHANNEL_WHATSAPP) {
        return ROUTER_REASON_NONE;
    }
    const char *addr = cmn_recipient_address(&in->request->recipient, c);
    if (cmn_phone_check(addr, &info) != CMN_OK || !cmn_phone_is_messageable(info.type)) {
        return ROUTER_REASON_NOT_MOBILE;
    }
    return ROUTER_REASON_NONE;
}

/* A channel without a configured provider would only pile up on a topic that
 * no worker consumes. */
static router_reason_t filter_provider(const router_input_t *in, cmn_channel_t c)
{
    return (in->enabled & ROUTER_CHANNEL_BIT(c)) ? ROUTER_REASON_NONE : ROUTER_REASON_NO_CHANNEL;
}

/* Applied in this order; the first filter that objects names the reason. The
 * address filter comes first so that an unaddressed channel counts as
 * unaddressed whatever else is true of it, and the client's own choices come
 * before the number check and the deployment's channels. */
static const router_filter_fn router_filters[] = {
    filter_address, filter_opted_out, filter_consent, filter_mobile, filter_provider,
};

/* Which reason names a request whose every candidate was dropped (higher
 * wins). A client's refusal is the fact a sender must hear about first (it
 * will not change by resending), consent next; then an address that exists
 * but cannot be used; then the deployment's missing channels; no_address only
 * when nothing else was wrong. */
static int reason_precedence(router_reason_t r)
{
    switch (r) {
    case ROUTER_REASON_OPTED_OUT:
        return 5;
    case ROUTER_REASON_NO_CONSENT:
        return 4;
    case ROUTER_REASON_NOT_MOBILE:
        return 3;
    case ROUTER_REASON_NO_CHANNEL:
        return 2;
    case ROUTER_REASON_NO_ADDRESS:
        return 1;
    case ROUTER_REASON_NONE:
    case ROUTER_REASON_EXPIRED:
    case ROUTER_REASON_QUIET_HOURS_EXPIRED:
        break;
    }
    return 0;
}

const char *router_reason_name(router_reason_t r)
{
    switch (r) {
    case ROUTER_REASON_EXPIRED:
        return "expired";
    case ROUTER_REASON_NO_ADDRESS:
        return "no_address";
    case ROUTER_REASON_NO_CHANNEL:
        return "no_channel";
    case ROUTER_REASON_OPTED_OUT:
        return "opted_out";
    case ROUTER_REASON_NO_CONSENT:
        return "no_consent";
    case ROUTER_REASON_NOT_MOBILE:
        return "not_mobile";
    case ROUTER_REASON_QUIET_HOURS_EXPIRED:
        return "quiet_hours_expired";
    case ROUTER_REASON_NONE:
        break;
    }
    return "";
}

const char *router_defer_name(router_defer_t d)
{
    switch (d) {
    case ROUTER_DEFER_QUIET_HOURS:
        return "quiet_hours";
    case ROUTER_DEFER_SEND_AFTER:
        return "send_after";
    case ROUTER_DEFER_NONE:
        break;
    }
    return "";
}

const char *router_source_name(router_source_t s)
{
    switch (s) {
    case ROUTER_SOURCE_EXPLICIT:
        return "explicit";
    case ROUTER_SOURCE_PREFERRED:
        return "preferred";
    case ROUTER_SOURCE_PREFERENCES:
        return "preferences";
    case ROUTER_SOURCE_MESSAGE_TYPE:
        return "message_type";
    case ROUTER_SOURCE_DEFAULT:
        return "default";
    }
    return "";
}

static int is_instant(cmn_channel_t c)
{
    return c == CMN_CHANNEL_SMS || c == CMN_CHANNEL_WHATSAPP;
}

/* Appends the channels of src that are not in out yet, skipping values that
 * are not channels (defensive: the request was validated, but a bad enum
 * must not index past the arrays). */
static void add_distinct(cmn_channel_t *out, size_t *n, const cmn_channel_t *src, size_t nsrc)
{
    for (size_t i = 0; i < nsrc; i++) {
        cmn_channel_t c = src[i];
        int seen = 0;
        if ((int)c < 0 || (int)c >= CMN_CHANNEL__COUNT) {
            continue;
        }
        for (size_t j = 0; j < *n; j++) {
            if (out[j] == c) {
                seen = 1;
                break;
            }
        }
        if (!seen) {
            out[(*n)++] = c;
        }
    }
}

/* Stable partition: the channels whose instant-ness equals want_instant move
 * to the front; both groups keep their relative order. */
static void stable_front(cmn_channel_t *ch, size_t n, int want_instant)
{
    cmn_channel_t tmp[CMN_CHANNEL__COUNT];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_instant(ch[i]) == want_instant) {
            tmp[k++] = ch[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (is_instant(ch[i]) != want_instant) {
            tmp[k++] = ch[i];
        }
    }
    memcpy(ch, tmp, n * sizeof *ch);
}

static void apply_urgency(cmn_urgency_t u, cmn_channel_t *ch, size_t n)
{
    switch (u) {
    case CMN_URGENCY_CRITICAL:
    case CMN_URGENCY_HIGH:
        stable_front(ch, n, 1);
        break;
    case CMN_URGENCY_LOW:
        stable_front(ch, n, 0);
        break;
    case CMN_URGENCY_NORMAL:
        break;
    }
}

static void pick_candidates(const router_input_t *in, router_decision_t *out)
{
    const cmn_request_t *r = in->request;
    const router_order_t *order = NULL;

    if (r->n_channels > 0) {
        out->source = ROUTER_SOURCE_EXPLICIT;
        add_distinct(out->candidates, &out->n_candidates, r->channels, r->n_channels);
        return;
    }
    /* The client's stored preferences describe the person; a request's
     * recipient.preferred_channels is only what the sender knew of them. */
    if (in->prefs != NULL && in->prefs->n_preferred > 0) {
        out->source = ROUTER_SOURCE_PREFERENCES;
        add_distinct(out->candidates, &out->n_candidates, in->prefs->preferred, in->prefs->n_preferred);
        return;
    }
    if (r->recipient.n_preferred > 0) {
        out->source = ROUTER_SOURCE_PREFERRED;
        add_distinct(out->candidates, &out->n_candidates, r->recipient.preferred, r->recipient.n_preferred);
        return;
    }
    order = router_config_type_order(in->config, r->message_type);
    if (order != NULL) {
        out->source = ROUTER_SOURCE_MESSAGE_TYPE;
    } else {
        out->source = ROUTER_SOURCE_DEFAULT;
        order = router_config_default_order(in->config);
    }
    add_distinct(out->candidates, &out->n_candidates, order->ch, order->n);
}

/* Turns a plan into a suppression, keeping the plan out of the answer. */
static void suppress(router_decision_t *out, router_reason_t reason)
{
    out->suppressed = 1;
    out->reason = reason;
    out->channel = CMN_CHANNEL_NONE;
    out->address = NULL;
    out->n_fallback = 0;
}

/* Whether the plan goes now: send_after first (an instruction of the
 * sender), then quiet hours on the first channel. */
static int decide_timing(const router_input_t *in, router_decision_t *out)
{
    const cmn_request_t *r = in->request;
    int64_t expires = r->expires_at_ms;

    if (r->send_after_ms > in->now_ms) {
        if (expires != 0 && expires <= r->send_after_ms) {
            suppress(out, ROUTER_REASON_EXPIRED);
            return CMN_OK;
        }
        out->deferred = 1;
        out->defer_reason = ROUTER_DEFER_SEND_AFTER;
        out->defer_until_ms = r->send_after_ms;
        return CMN_OK;
    }

    if (in->prefs == NULL || !in->prefs->has_quiet_hours || cmn_quiet_window_is_empty(&in->prefs->quiet_hours) ||
        !cmn_quiet_policy_applies(in->quiet, out->channel, r->urgency)) {
        return CMN_OK;
    }
    const char *tz = in->prefs->timezone != NULL ? in->prefs->timezone : r->recipient.timezone;
    if (tz == NULL || tz[0] == '\0') {
        return CMN_OK;
    }
    cmn_quiet_eval_t q;
    int rc = cmn_quiet_hours_eval(in->now_ms, tz, &in->prefs->quiet_hours, &q);
    if (rc == CMN_ERR_INVALID) {
        /* Both validators check zones against ICU, so this is a zone ICU
         * stopped knowing (data changed under a running process). Skipping
         * quiet hours is reported by the caller; refusing would block the
         * partition on one record. */
        out->quiet_zone_invalid = 1;
        return CMN_OK;
    }
    if (rc != CMN_OK) {
        return CMN_ERR_UNAVAILABLE;
    }
    if (!q.inside) {
        return CMN_OK;
    }
    if (expires != 0 && expires <= q.ends_at_ms) {
        suppress(out, ROUTER_REASON_QUIET_HOURS_EXPIRED);
        return CMN_OK;
    }
    out->deferred = 1;
    out->defer_reason = ROUTER_DEFER_QUIET_HOURS;
    out->defer_until_ms = q.ends_at_ms;
    return CMN_OK;
}

int router_decide(const router_input_t *in, router_decision_t *out)
{
    if (in == NULL || out == NULL || in->request == NULL || in->config == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    out->channel = CMN_CHANNEL_NONE;

    pick_candidates(in, out);

    /* Expiry is checked after the candidates are known only so the decision
     * records where the order came from; an expired request is suppressed
     * whatever its channels. */
    if (in->request->expires_at_ms != 0 && in->request->expires_at_ms <= in->now_ms) {
        out->suppressed = 1;
        out->reason = ROUTER_REASON_EXPIRED;
        return CMN_OK;
    }

    if (out->source != ROUTER_SOURCE_EXPLICIT) {
        apply_urgency(in->request->urgency, out->candidates, out->n_candidates);
    }

    cmn_channel_t kept[CMN_CHANNEL__COUNT];
    size_t n_kept = 0;
    for (size_t i = 0; i < out->n_candidates; i++) {
        cmn_channel_t c = out->candidates[i];
        router_reason_t why = ROUTER_REASON_NONE;
        for (size_t f = 0; f < sizeof router_filters / sizeof router_filters[0]; f++) {
            why = router_filters[f](in, c);
            if (why != ROUTER_REASON_NONE) {
                break;
            }
        }
        if (why == ROUTER_REASON_NONE) {
            kept[n_kept++] = c;
        } else {
            out->dropped[out->n_dropped] = c;
            out->dropped_reason[out->n_dropped] = why;
            out->n_dropped++;
        }
    }

    if (n_kept == 0) {
        /* One reason for the whole request: the drop reason of highest
         * precedence (see reason_precedence). An empty candidate list cannot
         * happen with a valid configuration, and is reported as no_channel. */
        router_reason_t reason = ROUTER_REASON_NO_CHANNEL;
        int best = 0;
        for (size_t i = 0; i < out->n_dropped; i++) {
            int p = reason_precedence(out->dropped_reason[i]);
            if (p > best) {
                best = p;
                reason = out->dropped_reason[i];
            }
        }
        out->suppressed = 1;
        out->reason = reason;
        return CMN_OK;
    }

    out->channel = kept[0];
    out->address = cmn_recipient_address(&in->request->recipient, kept[0]);
    for (size_t i = 1; i < n_kept; i++) {
        out->fallback[out->n_fallback++] = kept[i];
    }
    return decide_timing(in, out);
}
